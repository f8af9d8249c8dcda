/**
 * The engine boundary: every type that crosses between TypeScript and the native addon.
 *
 * This file is the one typed seam (like node-llama-cpp's AddonTypes.ts). `native/binding.ts`
 * loads the addon and casts it to `NativeAddon`; nothing else in the project touches the raw
 * addon. Shapes and units are given on every field.
 */

/** Model hyper-parameters read from a Hugging Face `config.json`, as the engine understood them. */
export interface ModelInfo {
  /**
   * `model_type` of the text model served: "llama", "mistral", "qwen2", "qwen3", "gemma2",
   * "gemma3_text" or "phi3" (Gemma3ForConditionalGeneration, whose config.json says "gemma3":
   * its text_config's "gemma3_text").
   */
  modelType: string;
  /** `architectures[0]` from config.json (e.g. "Qwen3ForCausalLM", "Gemma3ForConditionalGeneration"). */
  architecture: string;
  /**
   * Module path of the text decoder in the checkpoint, which its PEFT adapters' module names
   * follow: "model" (every ...ForCausalLM: `model.layers.{i}...`), or for
   * Gemma3ForConditionalGeneration "language_model.model" (saved by transformers < 4.52) or
   * "model.language_model" (later). native/src/hf_names.h TextLayout.
   */
  textModelPrefix: string;
  /** Every architecture this engine build serves (config.json `architectures[0]` values). */
  supportedArchitectures: string[];
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  /** config.json max_position_embeddings. */
  maxPositionEmbeddings: number;
  /**
   * Longest sequence (prompt + completion) served, in tokens: vLLM's derived max_model_len
   * (max_position_embeddings, times rope_scaling.factor for linear / dynamic / yarn scaling but
   * on Gemma 3, whose max_position_embeddings already counts it), or EngineOptions.maxModelLen;
   * at most what the KV pool holds (a budget below one full sequence shortens it).
   */
  maxModelLen: number;
  /** The model's own context by vLLM's rule (config.json alone), before maxModelLen and the KV pool shorten it. */
  derivedMaxModelLen: number;
  /** Storage dtype of the weights on disk ("F32" | "F16" | "BF16"). */
  dtype: string;
  /** Compute backend actually in use: "cpu" (or "cuda" once issue 6 lands). */
  backend: string;
  /** Why `backend: "auto"` chose what it chose (e.g. "cuda: no device (code 35)"). */
  backendReason: string;
  /** Adapter slots the engine was created with. */
  maxLoras: number;
  /** Largest LoRA rank a slot can hold. */
  maxLoraRank: number;
  /** Storage of the base model's decoder linear layers: "none" (checkpoint precision), "int8" or "int4" (EngineOptions.quantization). */
  quantization: string;
  /** Element type of the KV cache: "float32" or "bfloat16" (EngineOptions.kvCacheDtype). */
  kvCacheDtype: string;
  /** Input precision of the CPU's BF16-weight products: "float32" or "bfloat16" (EngineOptions.activationDtype). */
  activationDtype: string;
  /** Bytes of the KV pool as resolved (numKvBlocks x bytes per block, for kvCacheDtype's element size). */
  kvCacheBytes: number;
  /** Blocks in the KV pool as resolved (EngineStats.kvBlocksTotal). */
  numKvBlocks: number;
}

/** Options for `loadModel`. */
export interface EngineOptions {
  /** "cpu" | "cuda" | "auto" (default "auto": CUDA only when a device answers). */
  backend?: string;
  /** Compute threads for the CPU backend (default: hardware concurrency). */
  threads?: number;
  /**
   * Nice increment (0..19, default 0) of the engine thread and its CPU compute workers (Linux; per
   * thread, no privilege needed). A positive value lets the JS thread that shares the process
   * preempt engine compute as soon as it has work, which bounds event-loop lag under full load.
   */
  threadNice?: number;
  /** Number of adapter slots (default 16). */
  maxLoras?: number;
  /** Largest rank an adapter may have (default 64). */
  maxLoraRank?: number;
  /** Most sequences decoded in one step (default 64). */
  maxNumSeqs?: number;
  /**
   * Quantization of the base model's weights (default "none": the checkpoint's precision, i.e.
   * BF16 weights stay bfloat16 in memory, exact and half the bytes; F32/F16 become float32).
   * "int8": the seven linear layers of every decoder layer (q/k/v/o/gate/up/down_proj), lm_head
   * and the embedding (one matrix when tied) are stored as int8 with one symmetric float32 scale
   * per output row (scale = max|row| / 127). "int4": the seven linear layers 4-bit in groups of
   * 32 with an fp16 scale each (llama.cpp Q4_0's values: w = d (q - 8), d = extreme / -8),
   * lm_head and the embedding too (int8 per row before 2026-12-07). Both multiply with
   * activations quantized to int8 per 32 values (llama.cpp Q8_0) and int32 dot products
   * (AVX-512 VNNI / AVX2 / portable, same bits);
   * norms, biases, accumulation and LoRA adapters stay float32 (cpu/gemm_quant.h).
   */
  quantization?: 'none' | 'int8' | 'int4';
  /**
   * Element type of the paged KV cache (vLLM `--kv-cache-dtype`; default "float32"). "bfloat16":
   * keys and values are rounded to bfloat16 (round to nearest even) when written and widened
   * exactly to float32 when attention reads them; half the bytes per block, so the same
   * kvCacheBytes holds twice the blocks, and decode (bound by reading the KV cache at batch
   * 16-64) streams half the bytes. On the demo model logits move by up to ~2e-2 (test/native/kv_dtype.test.ts).
   * Anything else is refused with an error naming EngineOptions.kvCacheDtype. The CUDA backend
   * keeps its device KV in bf16 either way; there the option only sizes the pool.
   */
  kvCacheDtype?: 'float32' | 'bfloat16';
  /**
   * Input precision of the CPU backend's products with BF16 weights (the decoder's linear layers
   * and lm_head; vLLM `--dtype` for a BF16 checkpoint). "float32" (default): activations stay
   * float32, logits within 1e-3 of float32 references. "bfloat16": each product's input is rounded
   * to bfloat16 (nearest even) first, as llama.cpp and PyTorch bf16 inference do, and runs on
   * AMX-BF16 tiles or AVX-512 BF16 `vdpbf16ps` where the CPU has them (2x or more the fp32 FMA
   * rate: prefill and batched decode), else on the fp32 kernels; logits move by ~2e-2 on the demo
   * model. LoRA, attention, norms and the residual stream stay float32; quantized weights and the
   * CUDA backend ignore it. Anything else is refused naming EngineOptions.activationDtype.
   */
  activationDtype?: 'float32' | 'bfloat16';
  /**
   * Token budget of one engine step (default 512, and at least maxNumSeqs, which it must be
   * >= when given): decode tokens of the running sequences come first, then prefill chunks fill
   * what is left, so a long prompt is computed over several steps alongside the decodes
   * (chunked prefill, vLLM `max_num_batched_tokens`).
   */
  maxNumBatchedTokens?: number;
  /** Tokens per KV cache block (default 16; 1..1024). The paged KV cache (vLLM PagedAttention) is allocated in these units. */
  blockSize?: number;
  /**
   * Memory budget of the KV cache in bytes (K and V of every layer, kvCacheDtype). Default (0 or
   * absent): kvCacheMemoryFraction of the memory available once the weights are loaded, at most
   * what maxNumSeqs sequences of the context need; a budget below one full-length sequence
   * shortens the context served (maxModelLen) instead. Ignored when numKvBlocks is given.
   */
  kvCacheBytes?: number;
  /**
   * vLLM's max_model_len: the context served (tokens), at most the model's; 0 or absent = the
   * model's, shortened to what the KV pool holds. Given, a KV pool smaller than one sequence of
   * it is refused (invalid_argument naming maxModelLen).
   */
  maxModelLen?: number;
  /**
   * The automatic KV budget's share (0.01..0.95, default 0.5) of the memory available after the
   * weights are loaded: Linux MemAvailable on the CPU backend, the device's free memory on CUDA
   * (vLLM's gpu_memory_utilization, taken of what is left rather than of the whole). Pages of
   * the pool become resident only as blocks are first used.
   */
  kvCacheMemoryFraction?: number;
  /** Size of the KV cache in blocks, overriding kvCacheBytes (default: derived from kvCacheBytes). */
  numKvBlocks?: number;
  /**
   * Share full KV blocks between sequences with the same adapter set (slots, their load
   * generation and weights) and the same token prefix, so a hit skips recomputing them
   * (vLLM automatic prefix caching). Default true.
   */
  enablePrefixCaching?: boolean;
}

/**
 * Engine counters (NativeEngine.stats()). KV block accounting: every block is in use (held by
 * a running sequence), free, or cached (no holder, keeps a prefix for later hits, evicted LRU
 * when needed): with no running sequence, kvBlocksFree + kvBlocksCached === kvBlocksTotal.
 */
export interface EngineStats {
  /** Sequences being computed (including ones mid-prefill). */
  running: number;
  /** Sequences queued, including preempted ones waiting to recompute. */
  waiting: number;
  /** Adapter slots loaded or loading. */
  slotsUsed: number;
  /** Forward steps run so far. */
  steps: number;
  /** Blocks in the KV cache. */
  kvBlocksTotal: number;
  /** Blocks with no holder and no cached prefix. */
  kvBlocksFree: number;
  /** Blocks with no holder that keep a cached prefix (reclaimed LRU when free blocks run out). */
  kvBlocksCached: number;
  /** Tokens whose KV came from the prefix cache instead of being computed (cumulative). */
  prefixHitTokens: number;
  /** Times a running sequence was preempted for lack of KV blocks and requeued to recompute (cumulative). */
  preemptions: number;
  /** Prompts being scored (Engine.promptLogprobs), queued or between chunks: engine work that is no sequence. */
  scoring: number;
  /** Host bytes of the base model's weights as stored (quantized or 16-bit; a tied head counted once). */
  weightBytes: number;
  /** Bytes of the KV pool as sized (its pages become resident as blocks are first used). */
  kvCacheBytes: number;
  /** Bytes of KV blocks held by sequences or keeping a cached prefix. */
  kvUsedBytes: number;
  /** Bytes of the adapters in loaded slots. */
  adapterBytes: number;
}

/** One LoRA pair to load: W' = W + scaling * B A applied unmerged. */
export interface AdapterModuleSpec {
  /** Decoder layer index, 0-based. */
  layer: number;
  /** One of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; for Phi-3 qkv_proj, o_proj, gate_up_proj, down_proj (fused pairs are split by the engine). */
  module: string;
  /** Tensor name of lora_A in the safetensors file; shape [r, in] ([in, r] if fanInFanOut). */
  aName: string;
  /** Tensor name of lora_B; shape [out, r] ([r, out] if fanInFanOut). */
  bName: string;
  /** lora_alpha / r, or lora_alpha / sqrt(r) for rsLoRA (already resolved per module). */
  scaling: number;
  /**
   * Tensors stored transposed (A as [in, r], B as [r, out]). PEFT always saves LoRA weights
   * as [r, in] / [out, r] (it resets fan_in_fan_out for nn.Linear targets), so adapters/
   * passes false for PEFT folders; the engine still accepts the transposed layout.
   */
  fanInFanOut: boolean;
}

/** Request to load one adapter file into a free device slot. */
export interface AdapterLoadSpec {
  /** Path of adapter_model.safetensors. */
  path: string;
  modules: AdapterModuleSpec[];
}

/** One member of a sequence's adapter set: the slot and its weight w_i. */
export interface AdapterRef {
  slot: number;
  weight: number;
}

/** Everything the engine needs to generate for one sequence. */
export interface SequenceParams {
  /** Prompt token ids (Int32 values in [0, vocabSize)). Must be non-empty. */
  promptIds: number[];
  /** Adapter set; empty for the base model. y = W x + sum_i w_i s_i B_i (A_i x). */
  adapters: AdapterRef[];
  /** Generate at most this many tokens (>= 1). */
  maxTokens: number;
  /** 0 = greedy. Otherwise logits / temperature. */
  temperature: number;
  /** Nucleus sampling mass in (0, 1]; 1 disables. */
  topP: number;
  /** Keep the k most likely tokens; 0 or -1 disables. */
  topK: number;
  /** OpenAI presence penalty in [-2, 2] (subtracted once per token already generated). */
  presencePenalty: number;
  /** OpenAI frequency penalty in [-2, 2] (subtracted per occurrence among generated tokens). */
  frequencyPenalty: number;
  /** Added to the logits of the given token ids before sampling: [[tokenId, bias], ...]. */
  logitBias: Array<[number, number]>;
  /** Generation ends (finish "stop") when one of these is sampled; it is reported. */
  stopTokenIds: number[];
  /**
   * vLLM's `min_tokens` (optional, default 0): while fewer than this many tokens were generated,
   * the `stopTokenIds` get logit -inf (after logit_bias and penalties), so the sequence cannot
   * end by a stop id before then (a constrained sequence whose mask allows nothing else still
   * may). It does not stop `maxTokens` from ending the sequence first.
   */
  minTokens?: number;
  /**
   * vLLM's `repetition_penalty` (optional, default 1 = off; > 0): each token of the prompt or
   * generated so far gets logit / r when positive, logit * r otherwise (after logit_bias, before
   * the frequency and presence penalties).
   */
  repetitionPenalty?: number;
  /** vLLM's `min_p` (optional, default 0 = off; [0, 1]): after temperature, tokens below min_p times the largest probability are dropped. */
  minP?: number;
  /** RNG seed; the same seed and inputs give the same tokens. */
  seed: number;
  /** Return this many top logprobs per token (0 = none, the chosen token's logprob only when >= 0; -1 = no logprobs at all). */
  logprobs: number;
  /**
   * Ensemble generation (optional; when set, `adapters` must be empty). Each member runs as
   * its own sequence (own KV cache, same batch as everything else); at each step the
   * next-token distribution is the mixture p = sum_i w_i softmax(l_i / T) with l_i the member's
   * logits after its logit processing (logit_bias, penalties) and T = temperature (T = 1 when
   * temperature is 0, then the argmax of p is taken); top_k / top_p filter p; one token is
   * sampled from p and appended to every member. Weights are normalised to sum to 1.
   * Reported logprobs are log p (the mixture's, at T = 1 before filtering).
   */
  ensemble?: EnsembleMember[];
  /**
   * Constrained decoding (structured output). When true, every token of this sequence is
   * sampled under an allowed-token bitmask for its position: the first one is `tokenMask`
   * (or a `setTokenMask` call), each later one is sent with `setTokenMask(seqId, mask)` after
   * the previous token's event. The sequence never samples without it (its forward still runs;
   * its logits wait for the mask) and other sequences never wait. Disallowed tokens get logit
   * -inf before logit_bias, penalties, temperature, top-k/top-p and greedy; for ensembles the
   * mask applies to the mixture. Reported logprobs stay the model's unmasked ones.
   */
  constrained?: boolean;
  /**
   * The mask of the first generated token (only with `constrained: true`; absent = send it
   * with setTokenMask, e.g. once the grammar has compiled, while the prompt is prefilled).
   * xgrammar's bitmask layout: ceil(vocabSize / 32) words, token i allowed when bit (i & 31)
   * of word (i >> 5) is set; vocabSize is ModelInfo.vocabSize (the logits width; tokens the
   * tokenizer lacks must be 0 bits); at least one allowed token.
   */
  tokenMask?: Int32Array;
}

/** One member of an ensemble: its adapter set and mixture weight (> 0). */
export interface EnsembleMember {
  adapters: AdapterRef[];
  weight: number;
}

/** Log-probability of one token (natural log, from the model's raw distribution). */
export interface TokenLogprob {
  token: number;
  logprob: number;
}

/** One event for one sequence, delivered in per-step batches. */
export interface SequenceEvent {
  seqId: number;
  /** The new token id, or -1 when the event only carries a finish (e.g. cancelled, error). */
  token: number;
  /** Logprob of `token` (present when the sequence asked for logprobs >= 0). */
  logprob?: number;
  /** Top-k alternatives, most likely first (present when logprobs > 0). */
  topLogprobs?: TokenLogprob[];
  /** Set on the last event of a sequence: "stop" | "length" | "cancelled" | "error". */
  finishReason?: string;
  /** Error text when finishReason is "error". */
  error?: string;
  /** Present with finishReason: token counts. */
  promptTokens?: number;
  completionTokens?: number;
}

/** Result of a one-shot forward pass (used by fidelity tests and ensembles). */
export interface ForwardResult {
  /** Logits for every position, row-major [numTokens, vocabSize], float32. */
  logits: Float32Array;
  numTokens: number;
  vocabSize: number;
}

/**
 * A prompt's token logprobs (vLLM's `prompt_logprobs`): position i in [0, numTokens - 1) scores
 * prompt token i + 1 given the tokens before it; the first prompt token has no entry.
 */
export interface PromptLogprobsResult {
  /** log_softmax of the raw logits at the next prompt token, [numTokens - 1]. */
  tokenLogprobs: Float32Array;
  /** That token's rank there: 1 + the tokens with a higher logit (vLLM's `rank`), [numTokens - 1]. */
  tokenRanks: Int32Array;
  /** The topN most likely tokens of each position (most likely first, ties to the lower id), [numTokens - 1, topN]. */
  topIds: Int32Array;
  /** Their logprobs, [numTokens - 1, topN]. */
  topLogprobs: Float32Array;
  topN: number;
  numTokens: number;
  vocabSize: number;
  /** With nextTopN > 0: the nextTopN most likely tokens after the whole prompt (raw logits, most likely first), [nextTopN]. */
  nextTopIds?: Int32Array;
  /** Their logprobs (as a generated token's `logprob`), [nextTopN]. */
  nextTopLogprobs?: Float32Array;
}

/** The native engine object returned by `loadModel`. */
export interface NativeEngine {
  info(): ModelInfo;
  /** Load an adapter into a free slot; rejects with a message naming the tensor/field on bad input. Resolves to the slot id. */
  loadAdapter(spec: AdapterLoadSpec): Promise<number>;
  /** Free a slot. Throws if a live sequence still uses it. */
  unloadAdapter(slot: number): void;
  /** Queue a sequence; returns its id at once. Events arrive through the `onEvents` callback. */
  addSequence(params: SequenceParams): number;
  /** Cancel a sequence; it finishes with reason "cancelled" at the next step. Unknown ids are ignored. */
  cancel(seqId: number): void;
  /**
   * End a sequence with finishReason "stop" at the next step, without another token (a
   * constrained sequence whose grammar has terminated). Unknown ids are ignored.
   */
  stop(seqId: number): void;
  /**
   * The allowed-token mask (SequenceParams.tokenMask layout) for the next token of a
   * constrained sequence: exactly one per sampled token, sent after that sequence's previous
   * token event (or after addSequence when no tokenMask was given). Throws for a wrong length
   * or a mask with no allowed token; unknown / finished ids are ignored; a mask for an
   * unconstrained sequence or a second one before the next token finishes the sequence "error".
   */
  setTokenMask(seqId: number, mask: Int32Array): void;
  /** Register the per-step event callback (called on the JS thread, one array per step). */
  onEvents(cb: (events: SequenceEvent[]) => void): void;
  /** All-position logits for a prompt with an adapter set, computed on the engine thread. */
  forward(promptIds: number[], adapters: AdapterRef[]): Promise<ForwardResult>;
  /**
   * The prompt's token logprobs and top `promptTopN` (0..20) alternatives instead of its logits;
   * `cancelId` (> 0) lets cancelForward drop it (it then rejects with "cancelled").
   */
  forward(promptIds: number[], adapters: AdapterRef[], promptTopN: number, cancelId?: number, nextTopN?: number): Promise<PromptLogprobsResult>;
  /** Drop the forward queued with this cancel id before its next chunk; unknown ids are ignored. */
  cancelForward(cancelId: number): void;
  /** Engine counters: sequences, adapter slots, steps, KV blocks, prefix hits, preemptions. */
  stats(): EngineStats;
  /** Stop the engine thread and free memory. Idempotent. Pending sequences finish "cancelled". */
  dispose(): Promise<void>;
}

/** The raw addon's exports. */
export interface NativeAddon {
  /** Load a Hugging Face model folder (config.json + safetensors). Rejects with a message naming the file/field. */
  loadModel(dir: string, options: EngineOptions): Promise<NativeEngine>;
  /** Whether this build includes the CUDA backend, and how many devices answer now. */
  cudaInfo(): { compiled: boolean; deviceCount: number; error: string };
  /** The engine's defaults and bounds (native/src/engine_options.h) and its error codes (errors.h). */
  engineDefaults(): EngineDefaults;
}

/** An integer EngineOptions field's default and inclusive bounds. */
export interface IntOptionBounds {
  default: number;
  min: number;
  max: number;
}

/** `NativeAddon.engineDefaults()`: the one C++ table of engine defaults, as the addon exports it. */
export interface EngineDefaults {
  /** Every integer EngineOptions field (threads' default is this machine's hardware concurrency; 0 = automatic for kvCacheBytes / numKvBlocks). */
  options: Record<'threads' | 'threadNice' | 'maxLoras' | 'maxLoraRank' | 'maxNumSeqs' | 'maxNumBatchedTokens' | 'blockSize' | 'kvCacheBytes' | 'numKvBlocks', IntOptionBounds>;
  enablePrefixCaching: boolean;
  kvCacheDtype: string;
  activationDtype: string;
  quantization: string;
  backend: string;
  /** EngineOptions.kvCacheMemoryFraction's default and bounds. */
  kvCacheMemoryFraction: IntOptionBounds;
  /** The automatic KV budget where the available memory is unknown (bytes). */
  autoKvCacheCapBytes: number;
  /** Largest SequenceParams.logprobs. */
  maxLogprobs: number;
  minEnsembleMembers: number;
  maxEnsembleMembers: number;
  /** SequenceParams.maxTokens when absent. */
  defaultMaxTokens: number;
  /** The CUDA LoRA kernels' largest rank (the CUDA backend refuses maxLoraRank above it). */
  cudaMaxLoraRank: number;
  /** Every `err.code` the addon may set, in errors.h order. */
  errorCodes: string[];
}
