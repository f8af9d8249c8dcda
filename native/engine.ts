/**
 * `Engine`: the one run-time face of the native engine, used by the server (plugin/), the
 * adapter manager, the tests and the bench alike.
 *
 * It wraps one `NativeEngine` (native/types.ts; only native/binding.ts touches the raw addon),
 * turns everything the addon throws into `NativeError` (native/errors.ts: a stable `code` and the
 * field), and fans the per-step event batches out to one handler per sequence. It does not
 * validate: the engine checks every value once, in C++, and names the field in its error.
 *
 * Usage:
 * ```ts
 * const engine = await Engine.load('examples/models/tiny-shakespeare', { threads: 2 });
 * const { seqId, done } = engine.generate({ ...params }, (ev) => process.stdout.write(String(ev.token)));
 * const result = await done;          // {tokens, finishReason, ...}; never rejects
 * await engine.dispose();
 * ```
 */
import { loadNativeAddon } from './binding.ts';
import { SequenceDispatcher } from './dispatch.ts';
import { NativeError, wrapNativeError } from './errors.ts';
import { checkTokenMask } from './token-mask.ts';
import type {
  AdapterLoadSpec,
  AdapterRef,
  EngineDefaults,
  EngineOptions,
  EngineStats,
  ForwardResult,
  PromptLogprobsResult,
  ModelInfo,
  NativeEngine,
  SequenceEvent,
  SequenceParams,
  TokenLogprob,
} from './types.ts';

/** Everything one sequence produced, delivered when it finishes. */
export interface GenerationResult {
  seqId: number;
  /** Generated token ids, in order (a sampled stop token is included, as the last one). */
  tokens: number[];
  /** Logprob of each token (when params.logprobs >= 0). */
  logprobs: number[];
  /** Top alternatives per token (when params.logprobs > 0). */
  topLogprobs: TokenLogprob[][];
  /** "stop" | "length" | "cancelled" | "error". */
  finishReason: string;
  /** Error text when finishReason is "error". */
  error?: string;
  promptTokens: number;
  completionTokens: number;
}

/** A running generation. */
export interface GenerationHandle {
  seqId: number;
  /** Resolves when the sequence finishes, whatever the reason (it never rejects). */
  done: Promise<GenerationResult>;
  /** Cancel it; `done` then resolves with finishReason "cancelled". */
  cancel(): void;
  /** End it with finishReason "stop" and no further token (Engine.stop). */
  stop(): void;
  /** The next token's allowed-token mask of a constrained sequence (Engine.setTokenMask). */
  setTokenMask(mask: Int32Array): void;
}

/** A refused argument: `NativeError` with code `invalid_argument`; `param` is the field. */
/** Whether this build includes the CUDA backend, and how many devices answer now (the addon's probe). */
export function cudaInfo(): { compiled: boolean; deviceCount: number; error: string } {
  return loadNativeAddon().cudaInfo();
}

/**
 * The engine's defaults and bounds (native/src/engine_options.h) and its error codes, as the
 * addon exports them: the C++ home of every engine default (config/schema.ts is tied to it by
 * test/config/defaults.test.ts).
 */
export function engineDefaults(): EngineDefaults {
  return loadNativeAddon().engineDefaults();
}

/** Run `f`, rethrowing whatever the addon throws as a NativeError (its `err.code` and `err.field`). */
function native<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw wrapNativeError(err);
  }
}

/** The one TypeScript face of a loaded engine (see the file header). */
export class Engine {
  private readonly dispatcher: SequenceDispatcher;
  private readonly modelInfo: ModelInfo;
  /** Live constrained sequences: whether the mask of their next token is still owed (setTokenMask). */
  private readonly maskOwed = new Map<number, boolean>();
  /** NOTE: by default a throwing handler surfaces as an uncaught exception (like a throwing EventEmitter listener). */
  private handlerError: (err: unknown, seqId: number) => void = (err) => queueMicrotask(() => { throw err; });

  /**
   * Load a Hugging Face model folder into a new engine.
   * @throws NativeError naming the file or EngineOptions field (`invalid_argument`, `bad_file`,
   *   `unsupported_model`, `device_error`, ...); Error when the addon is not built.
   */
  static async load(dir: string, options: EngineOptions = {}): Promise<Engine> {
    const addon = loadNativeAddon(); // its own Error when the addon is not built (says how to build it)
    let raw: NativeEngine;
    try {
      raw = await addon.loadModel(dir, options);
    } catch (err) {
      throw wrapNativeError(err);
    }
    return new Engine(raw);
  }

  /** @param raw A loaded NativeEngine (or a test double of it); its `onEvents` callback is taken over. */
  constructor(private readonly raw: NativeEngine) {
    this.modelInfo = raw.info();
    this.dispatcher = new SequenceDispatcher(raw, (err, seqId) => this.handlerError(err, seqId));
  }

  /**
   * Where an error thrown by a sequence's event handler goes: `sink(error, seqId)` (the other
   * sequences of the step still get their events). Default: rethrown as an uncaught exception.
   * The server logs it instead.
   */
  onHandlerError(sink: (err: unknown, seqId: number) => void): void {
    this.handlerError = sink;
  }

  /** Model and engine facts (shapes, backend and why, slots, KV pool). */
  info(): ModelInfo {
    return this.modelInfo;
  }

  /**
   * Load an adapter into a free slot; resolves to the slot id.
   * @throws NativeError `bad_file` / `not_found` (tensor missing, wrong shape, rank above
   *   maxLoraRank, NaN), `no_free_slot`, `device_error`, `out_of_memory`, `disposed`.
   */
  async loadAdapter(spec: AdapterLoadSpec): Promise<number> {
    try {
      return await this.raw.loadAdapter(spec);
    } catch (err) {
      throw wrapNativeError(err);
    }
  }

  /** Free a slot. @throws NativeError `busy` while a live sequence uses it, `invalid_argument` for a slot not loaded. */
  unloadAdapter(slot: number): void {
    native(() => this.raw.unloadAdapter(slot));
  }

  /**
   * All-position logits [numTokens, vocab] for a prompt with an adapter set.
   * @throws NativeError `invalid_argument` naming the field (empty prompt, token id, slot).
   */
  async forward(promptIds: number[], adapters: AdapterRef[] = []): Promise<ForwardResult> {
    try {
      return await this.raw.forward(promptIds, adapters);
    } catch (err) {
      throw wrapNativeError(err);
    }
  }

  /**
   * The prompt's token logprobs (vLLM's `prompt_logprobs`) with an adapter set: for every prompt
   * token after the first, log_softmax of the raw logits before it at that token, and the `topN`
   * (0..20) most likely tokens there. Computed on the engine thread in chunks of rows (no
   * [numTokens, vocab] logits leave it), between generation steps, in a private KV pool.
   * `signal` aborts it (the engine drops it before its next chunk; the promise rejects).
   * `nextTopN` > 0 also runs the row after the prompt: `nextTopIds` / `nextTopLogprobs` are the
   * nextTopN most likely next tokens (a greedy first token without a second prefill).
   * @throws NativeError `invalid_argument` naming the field (empty prompt, token id, slot, promptTopN, nextTopN).
   */
  async promptLogprobs(promptIds: number[], adapters: AdapterRef[], topN: number, signal?: AbortSignal, nextTopN = 0): Promise<PromptLogprobsResult> {
    const cancelId = ++this.nextCancelId;
    const onAbort = () => native(() => this.raw.cancelForward(cancelId));
    try {
      const pending = this.raw.forward(promptIds, adapters, topN, cancelId, nextTopN);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      return await pending;
    } catch (err) {
      throw wrapNativeError(err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private nextCancelId = 0;

  /**
   * Start generating. `onEvent` (optional) sees every event of this sequence as it arrives
   * (one per generated token; the last carries finishReason).
   * @throws NativeError `invalid_argument` naming the offending SequenceParams field (checked by
   *   the engine before anything is queued), `disposed`.
   */
  generate(params: SequenceParams, onEvent?: (event: SequenceEvent) => void): GenerationHandle {
    // NOTE(why) the one TS check left: a mask needs `constrained` (a rule of this face's mask
    // bookkeeping); the mask's words are checked here with the model's vocabulary in the message.
    if (params?.tokenMask !== undefined) {
      if (params.constrained !== true) throw new NativeError('tokenMask is only accepted with constrained: true', 'invalid_argument', 'tokenMask');
      checkTokenMask(params.tokenMask, this.modelInfo.vocabSize);
    }
    let resolve!: (r: GenerationResult) => void;
    const done = new Promise<GenerationResult>((r) => (resolve = r));
    const result: GenerationResult = {
      seqId: -1,
      tokens: [],
      logprobs: [],
      topLogprobs: [],
      finishReason: '',
      promptTokens: 0,
      completionTokens: 0,
    };
    const seqId = native(() =>
      this.dispatcher.add(params, (ev) => {
        if (ev.finishReason) this.maskOwed.delete(ev.seqId);
        else if (ev.token >= 0 && this.maskOwed.has(ev.seqId)) this.maskOwed.set(ev.seqId, true);
        if (ev.token >= 0) {
          result.tokens.push(ev.token);
          if (ev.logprob !== undefined) result.logprobs.push(ev.logprob);
          if (ev.topLogprobs) result.topLogprobs.push(ev.topLogprobs);
        }
        if (ev.finishReason) {
          result.finishReason = ev.finishReason;
          if (ev.error) result.error = ev.error;
          result.promptTokens = ev.promptTokens ?? result.promptTokens;
          result.completionTokens = ev.completionTokens ?? result.tokens.length;
        }
        try {
          onEvent?.(ev);
        } finally {
          if (ev.finishReason) resolve(result);
        }
      }),
    );
    result.seqId = seqId;
    result.promptTokens = params.promptIds.length;
    if (params.constrained) this.maskOwed.set(seqId, params.tokenMask === undefined);
    return {
      seqId,
      done,
      cancel: () => this.cancel(seqId),
      stop: () => this.stop(seqId),
      setTokenMask: (mask) => this.setTokenMask(seqId, mask),
    };
  }

  /** Cancel a sequence by id; it still reports a final "cancelled" event. Unknown ids are ignored. */
  cancel(seqId: number): void {
    native(() => this.raw.cancel(seqId));
  }

  /** End a sequence with finishReason "stop" and no further token (its grammar terminated). Unknown ids are ignored. */
  stop(seqId: number): void {
    native(() => this.raw.stop(seqId));
  }

  /**
   * The allowed-token mask of the next token of a constrained sequence (SequenceParams.constrained):
   * one per token, sent after the previous token's event (native/README.md "Constrained decoding").
   * Ids this Engine does not know as live constrained sequences go to the engine, which ignores
   * finished ones and finishes an unconstrained one "error".
   * @throws NativeError `invalid_argument` (param `tokenMask`) for a wrong type or length or a mask
   *   allowing nothing, or when the sequence's next token already has its mask.
   */
  setTokenMask(seqId: number, mask: Int32Array): void {
    checkTokenMask(mask, this.modelInfo.vocabSize);
    if (this.maskOwed.get(seqId) === false) {
      throw new NativeError(
        `setTokenMask: sequence ${seqId} already has the mask of its next token; send one mask per token, after that token's predecessor's event`,
        'invalid_argument',
        'tokenMask',
      );
    }
    if (this.maskOwed.has(seqId)) this.maskOwed.set(seqId, false);
    native(() => this.raw.setTokenMask(seqId, mask));
  }

  /** Sequences whose final event has not arrived yet. */
  get live(): number {
    return this.dispatcher.live;
  }

  /** Running/waiting sequences, loaded slots, steps so far, KV blocks, prefix hits, preemptions. */
  stats(): EngineStats {
    return native(() => this.raw.stats());
  }

  /** Stop the engine; pending generations finish "cancelled". Idempotent. */
  async dispose(): Promise<void> {
    await this.raw.dispose();
  }
}
