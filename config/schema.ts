/**
 * The one schema for every openlora option, with defaults.
 *
 * Loaded from a JSON file (`--config FILE` or `OPENLORA_CONFIG`) and environment overrides by
 * `config/load.ts`. Relative paths in a config file are resolved against that file's folder.
 */
import { z } from 'zod';
import { CompositionConfigSchema } from '../adapters/composition.ts';

/** An adapter named explicitly: `{name, path}` (path = folder with adapter_config.json). */
export const AdapterEntrySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'adapter names use letters, digits, ".", "_" and "-"'),
  /** A local folder (relative to the config file), an http(s) folder URL, or `hub:org/name[@rev]`. */
  path: z.string().min(1),
  /** Expected sha256 (hex) of adapter_model.safetensors for URL / hub sources. */
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'sha256 is 64 hex digits').optional(),
});

/** The adapter tiers (adapters/manager.ts, adapters/spec-cache.ts, adapters/sources.ts). */
export const AdapterCacheSchema = z.strictObject({
  /** Host tier: adapters whose validated load spec is kept (env OPENLORA_MAX_CPU_LORAS). */
  maxCpuLoras: z.number().int().min(1).max(1_000_000).default(64),
  /**
   * Host tier: bytes of weights files counted as pre-read into the OS page cache (default 4 GiB).
   * The weights stay in their files, not in process memory (adapters/spec-cache.ts).
   */
  maxWarmBytes: z.number().int().min(1).optional(),
  /** Deprecated name of `maxWarmBytes` (the host tier never held the weights). */
  maxCpuBytes: z.number().int().min(1).optional(),
  /** Disk tier: folder downloaded adapters are cached in (default: `<os tmpdir>/openlora-<uid>/adapter-cache`, mode 0700). */
  dir: z.string().min(1).optional(),
  /** Disk tier: bytes of downloaded adapters kept (LRU). */
  maxDiskBytes: z.number().int().min(1).default(2 * 1024 ** 3),
  /** How long a request waits for a pinned adapter slot before 503 + Retry-After (ms). */
  slotWaitMs: z.number().int().min(0).max(600_000).default(10_000),
  /**
   * Materialised merges kept per base model (their folders under `mergeDir` and their synthetic
   * adapters); past it the least recently used is unregistered and its folder deleted.
   */
  maxMerges: z.number().int().min(1).max(100_000).default(64),
  /**
   * Longest one merge may compute (ms) before it is stopped and its requests get 504
   * `merge_timeout` (param `merge`); a merge nobody waits for any more is stopped at once.
   */
  mergeTimeoutMs: z.number().int().min(1).max(3_600_000).default(120_000),
}).transform(({ maxCpuBytes, ...c }) => ({ ...c, maxWarmBytes: c.maxWarmBytes ?? maxCpuBytes ?? 4 * 1024 ** 3 }));

/** Remote adapter sources: http(s) folder URLs and hub ids `org/name[@rev]`. */
export const AdapterSourcesSchema = z.strictObject({
  /** Hub endpoint with the Hugging Face `resolve` layout (e.g. https://huggingface.co); unset: hub ids only from the HF cache. */
  hubEndpoint: z.url().optional(),
  /** Hugging Face cache searched offline first (default $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  hfCacheDir: z.string().min(1).optional(),
  /** Whether the runtime load API may fetch http(s) URLs (config-listed URLs are always allowed). */
  allowUrls: z.boolean().default(false),
  /** Largest file downloaded (bytes). */
  maxDownloadBytes: z.number().int().min(1).default(512 * 1024 ** 2),
  /** Time limit per downloaded file (ms). */
  downloadTimeoutMs: z.number().int().min(1).default(60_000),
});

/** One served base model and where its adapters come from. */
export const ModelEntrySchema = z.strictObject({
  /** Name clients put in `model` (before the optional `:ADAPTER`). */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._\/-]*$/, 'model names use letters, digits, ".", "_", "/" and "-"'),
  /** Hugging Face model folder: config.json, safetensors, tokenizer.json, tokenizer_config.json. */
  path: z.string().min(1),
  /** Folders scanned at start: each sub-folder holding adapter_config.json is one adapter. */
  adapterDirs: z.array(z.string().min(1)).default([]),
  /** Adapters named one by one. */
  adapters: z.array(AdapterEntrySchema).default([]),
  /**
   * Tool-call format of the model's outputs, for a chat template whose markers do not show it;
   * default: detected from the template. The names of plugin/tools/format.ts `TOOL_FORMATS`
   * (config/ does not import plugin/; test/structured/tool-parse.test.ts checks they agree).
   */
  toolCallFormat: z.enum(['hermes', 'llama3_json', 'mistral']).optional(),
  /**
   * Reasoning outputs (plugin/reasoning.ts): `think` splits a `<think>…</think>` block from the
   * answer (`message.reasoning`; vLLM's `qwen3` / `deepseek_r1` parsers, accepted as names for
   * it), `none` leaves it in the text, `auto` (default) is `think` when the chat template writes
   * both tags.
   */
  reasoningParser: z
    .enum(['auto', 'think', 'none', 'qwen3', 'deepseek_r1'])
    .default('auto')
    .transform((v) => (v === 'qwen3' || v === 'deepseek_r1' ? 'think' : v)),
});

/**
 * Engine knobs (native/types.ts EngineOptions). Every default and bound here equals the engine's
 * own (native/src/engine_options.h, exported by the addon as `engineDefaults()`);
 * test/config/defaults.test.ts fails when the two homes disagree. The one deliberate
 * difference: `threads` 0 means "every core but one" (the server factory's defaultEngineThreads),
 * where the engine alone defaults to every core.
 *
 * NOTE(why) on the values where the layers used to disagree (issue 12), chosen for a vLLM user:
 * - maxLoras 16 (the gateway had 8, the engine 16): vLLM's `--max-loras` default of 1 suits one
 *   adapter per server; a multi-LoRA server keeps a batch's worth of adapters resident.
 * - maxLoraRank at most 512 (the gateway allowed 1024, the engine 4096): vLLM's largest
 *   `--max-lora-rank`. The CUDA kernels stop at 256 and refuse more, naming the field.
 * - threadNice 5 (the engine had 0): the engine always shares its process with the event loop;
 *   5 is the measured gateway default (README, docs/deployment.md).
 */
export const EngineOptionsSchema = z.strictObject({
  /** "auto" picks CUDA only when a device answers; else CPU, with a log line saying why. */
  backend: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  /** CPU compute threads; 0 = every core but one (left to the event loop; at least 1). */
  threads: z.number().int().min(0).max(1024).default(0),
  /** Nice increment of the engine's compute threads (Linux), so the event loop preempts them. */
  threadNice: z.number().int().min(0).max(19).default(5),
  /** Adapter slots resident in the engine at once (vLLM --max-loras). */
  maxLoras: z.number().int().min(1).max(4096).default(16),
  /** Largest LoRA rank a slot can hold (vLLM --max-lora-rank; CUDA: at most 256). */
  maxLoraRank: z.number().int().min(1).max(512).default(64),
  /** Most sequences in one engine step (vLLM --max-num-seqs). */
  maxNumSeqs: z.number().int().min(1).max(4096).default(64),
  /** Token budget of one engine step (decode tokens + prefill chunks); >= maxNumSeqs. Absent: 512, or maxNumSeqs when larger. */
  maxNumBatchedTokens: z.number().int().min(1).max(1 << 20).optional(),
  /** Tokens per KV-cache block. */
  blockSize: z.number().int().min(1).max(1024).default(16),
  /** KV-cache memory budget in bytes; 0 = kvCacheMemoryFraction of available memory (at most maxNumSeqs full contexts). */
  kvCacheBytes: z.number().int().min(0).max(9e15).default(0),
  /**
   * With kvCacheBytes 0: the KV budget's share of the memory available once the weights are loaded
   * (host MemAvailable; CUDA: free device memory), like vLLM's gpu_memory_utilization.
   */
  kvCacheMemoryFraction: z.number().min(0.01).max(0.95).default(0.5),
  /** KV-cache size in blocks (overrides kvCacheBytes); 0 = from kvCacheBytes. */
  numKvBlocks: z.number().int().min(0).max(2 ** 30).default(0),
  /**
   * vLLM's max_model_len: the context served, at most the model's (config.json); 0 = the model's,
   * shortened to what the KV cache holds when its memory budget cannot hold one full sequence.
   */
  maxModelLen: z.number().int().min(0).max(2 ** 30).default(0),
  /** Share full KV blocks between sequences with the same adapter set and prefix. */
  enablePrefixCaching: z.boolean().default(true),
  /**
   * Base weights: "none" (as stored, computed in fp32), "int8" (int8 per output channel; lm_head and
   * embedding too) or "int4" (4-bit groups of 32 for the decoder's linear layers, lm_head and
   * embedding too); int8/int4 products quantize activations to int8 per 32 values (Q8_0).
   */
  quantization: z.enum(['none', 'int8', 'int4']).default('none'),
  /** KV-cache element type (vLLM --kv-cache-dtype): "bfloat16" halves KV memory and decode's KV reads. */
  kvCacheDtype: z.enum(['float32', 'bfloat16']).default('float32'),
  /**
   * Input precision of the CPU products with BF16 weights (vLLM --dtype): "bfloat16" rounds them
   * to bfloat16 and runs on AMX / AVX-512 BF16 where present (faster prefill and batching, logits
   * ~2e-2 off float32); "float32" keeps float32 activations.
   */
  activationDtype: z.enum(['float32', 'bfloat16']).default('float32'),
});

/** A model-name glob: `*` matches any run of characters (including `:` and `/`), `?` one character. */
const GlobSchema = z.string().min(1).max(256);

/** An upstream OpenAI-compatible server for models not served here (plugin/upstream.ts). */
export const UpstreamSchema = z.strictObject({
  /** Model names (glob) sent to this upstream, e.g. "gpt-*". The first matching upstream wins. */
  pattern: GlobSchema,
  /** Base URL as an OpenAI client takes it, e.g. "https://api.openai.com/v1" (the request path after /v1 is appended). */
  url: z.url({ protocol: /^https?$/ }),
  /** Sent as `Authorization: Bearer` upstream (replaces the client's header). */
  apiKey: z.string().min(1).optional(),
  /** Upstream idle timeout (ms) before a 504. */
  timeoutMs: z.number().int().min(1).max(3_600_000).default(600_000),
});

/**
 * Cross-origin (browser) requests, answered by the `cors` middleware in front of every route of
 * `npm start` (vLLM's --allowed-origins, --allow-credentials: by default any origin, no credentials).
 */
export const CorsSchema = z
  .strictObject({
    /** Origins allowed ("*" = any; [] = no CORS headers, preflights get the 404 of an unknown route). */
    allowedOrigins: z.array(z.string().min(1).max(256)).default(['*']),
    /** Send Access-Control-Allow-Credentials (cookies / HTTP auth from the page); only with listed origins. */
    allowCredentials: z.boolean().default(false),
  })
  .refine((c) => !(c.allowCredentials && c.allowedOrigins.includes('*')), {
    message: 'allowCredentials needs the origins listed: a browser refuses credentials with "*"',
    path: ['allowCredentials'],
  });

/** An API key (plugin/auth.ts). Exactly one of `key` or `keyHash` (hex sha256 of the key). */
export const KeySchema = z
  .strictObject({
    key: z.string().min(8).optional(),
    keyHash: z.string().regex(/^[0-9a-fA-F]{64}$/, 'expected a hex sha256 digest (64 hex digits)').optional(),
    /** Shown in logs and metrics instead of the key. */
    name: z.string().min(1).max(128),
    /** Base models, named compositions and upstream models (globs) the key may use alone. */
    models: z.array(GlobSchema).default(['*']),
    /** Adapters (globs over `BASE:ADAPTER`) the key may use, alone or in compositions. */
    adapters: z.array(GlobSchema).default(['*']),
    /** Requests per minute (any /v1 route); unset = unlimited. */
    rpm: z.number().int().min(1).optional(),
    /** Concurrent generation requests (streaming or not); unset = unlimited. */
    maxConcurrentStreams: z.number().int().min(1).optional(),
    /** May call the admin routes (adapter load/unload). */
    admin: z.boolean().default(false),
  })
  .refine((k) => (k.key === undefined) !== (k.keyHash === undefined), { message: 'give exactly one of `key` or `keyHash`' });

/** The whole configuration. */
export const ConfigSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8000),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * Largest accepted request body (express/body-parser size string). NOTE(why) 16mb (the config
   * had 4mb, the router 16mb): vLLM sets no limit, and a completions batch of long token-id
   * prompts (~7 bytes a token as JSON: 128k tokens is ~0.9 MB) must not get a 413 here.
   */
  bodyLimit: z.string().default('16mb'),
  models: z.array(ModelEntrySchema).min(1, 'at least one model is needed'),
  engine: EngineOptionsSchema.default(() => EngineOptionsSchema.parse({})),
  /** Named compositions: `{NAME: {base, adapters: [{name, weight}], merge: {strategy, ...}}}`. */
  compositions: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'composition names use letters, digits, ".", "_" and "-"'), CompositionConfigSchema).default({}),
  /** Folder materialised merges are written to (default: `<os tmpdir>/openlora-<uid>/merges`, mode 0700). */
  mergeDir: z.string().min(1).optional(),
  /** Adapter tiers: host LRU, download disk cache, slot wait. */
  adapterCache: AdapterCacheSchema.default(() => AdapterCacheSchema.parse({})),
  /** URL and hub adapter sources. */
  adapterSources: AdapterSourcesSchema.default(() => AdapterSourcesSchema.parse({})),
  /** Enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (env OPENLORA_ALLOW_RUNTIME_LORA_UPDATING=1). */
  allowRuntimeLoraUpdating: z.boolean().default(false),
  /** Folders runtime loads may read from (besides every model's adapterDirs); realpath-confined. */
  adapterRoots: z.array(z.string().min(1)).default([]),
  /** Upstreams for models not served here, tried in order by `pattern`. */
  upstreams: z.array(UpstreamSchema).default([]),
  /** API keys; none = open (no Authorization needed). */
  keys: z.array(KeySchema).default([]),
  /** Sequences (prompts x n of each request) waiting for an engine batch slot, per base model; past it 429 + Retry-After. */
  maxQueuedRequests: z.number().int().min(0).max(1_000_000).default(256),
  /** Serve the operator console at GET /console (admin key needed when keys are set; env OPENLORA_CONSOLE=1). */
  console: z.boolean().default(false),
  /** Cross-origin requests from browsers (examples/server.ts). */
  cors: CorsSchema.default(() => CorsSchema.parse({})),
  /** On SIGTERM/close: how long running requests may finish before they are cut (ms). */
  shutdownGraceMs: z.number().int().min(0).max(3_600_000).default(10_000),
});

export type Config = z.output<typeof ConfigSchema>;

/**
 * The defaults of the whole configuration for code that runs without one (AdapterManager,
 * AdapterSources, openLora()), so each default has this one home.
 */
export const DEFAULTS = {
  engine: EngineOptionsSchema.parse({}),
  adapterCache: AdapterCacheSchema.parse({}),
  adapterSources: AdapterSourcesSchema.parse({}),
  maxQueuedRequests: ConfigSchema.shape.maxQueuedRequests.parse(undefined),
  bodyLimit: ConfigSchema.shape.bodyLimit.parse(undefined),
};

export type ConfigInput = z.input<typeof ConfigSchema>;
export type ModelEntry = z.output<typeof ModelEntrySchema>;
export type UpstreamConfig = z.output<typeof UpstreamSchema>;
export type KeyConfig = z.output<typeof KeySchema>;
export type CorsConfig = z.output<typeof CorsSchema>;
