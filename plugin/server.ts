/**
 * The server factory: from a validated `Config`, load every base model into its own native
 * engine, register its adapters, and return the OpenAI router mounted on them.
 *
 * `openLora()` (plugin/index.ts) takes ready objects; this is the one place that builds them
 * from configuration, so embedding apps and `examples/server.ts` share it.
 */
import { pino, type Logger } from 'pino';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Config, ModelEntry } from '../config/schema.ts';
import { AdapterManager } from '../adapters/manager.ts';
import { adapterTierOptions, configAdapterSource } from '../adapters/config.ts';
import { Engine } from '../native/engine.ts';
import { openLora, type OpenLoraModel, type OpenLoraRouter } from './index.ts';
import { loadTokenizer } from './tokenizer.ts';

/**
 * Engine compute threads when the config says 0: every core but one, at least 1.
 *
 * NOTE(why): the engine shares the process with the event loop, which parses requests and
 * writes one SSE chunk per token (~0.1 ms of CPU per token with its syscalls). With every core
 * computing, the event loop waits for a core: on the 2-vCPU bench machine one engine thread
 * instead of two gave sequential 1.6x, base-16 1.2x, base-64 1.1x the tokens/s (medians of 3,
 * 2026-11-30; greedy vs-base-16 came out 0.87x). vLLM's CPU backend likewise leaves cores to its
 * API server.
 */
export function defaultEngineThreads(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

/** A running openlora: mount `router` in any Express app; `close()` stops it and frees the engines. */
export interface OpenLora {
  router: OpenLoraRouter;
  /** The logger requests and loads are written to (pino). */
  log: Logger;
  /** Per base model: its engine and adapter manager (for tests and admin tools). */
  models: Map<string, { engine: Engine; adapters: AdapterManager }>;
  /** Let in-flight requests finish for up to `graceMs` (default 0), cancel the rest, then dispose every engine. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

async function loadOne(entry: ModelEntry, config: Config, log: Logger): Promise<{ model: OpenLoraModel; adapters: AdapterManager }> {
  const e = config.engine;
  const t0 = performance.now();
  const { threads, ...rest } = e;
  // NOTE(why): the tokenizer first: a missing or broken tokenizer.json fails in milliseconds, not
  // after an 8B model's weights have loaded.
  const tokenizer = await loadTokenizer(entry.path);
  const engine = await Engine.load(entry.path, { ...rest, threads: threads || defaultEngineThreads() });
  const info = engine.info();
  const storage = info.quantization && info.quantization !== 'none' ? `${info.dtype}, weights ${info.quantization}` : info.dtype;
  log.info(
    { model: entry.name, backend: info.backend, reason: info.backendReason, quantization: info.quantization, ms: Math.round(performance.now() - t0) },
    `loaded base model ${entry.name} (${info.numHiddenLayers} layers, hidden ${info.hiddenSize}, ${storage})`,
  );
  const wanted = Math.min(e.maxModelLen || info.derivedMaxModelLen, info.derivedMaxModelLen);
  if (info.maxModelLen < wanted) {
    // vLLM refuses to start here; the context is shortened instead, and said once.
    log.warn(
      { model: entry.name, maxModelLen: info.maxModelLen, wanted, kvCacheBytes: info.kvCacheBytes },
      `the KV cache (${Math.round(info.kvCacheBytes / 2 ** 20)} MiB) holds ${info.maxModelLen} tokens: the context of ${entry.name} is shortened from ${wanted} (raise engine.kvCacheBytes or kvCacheMemoryFraction to serve it whole)`,
    );
  }
  try {
    const adapters = new AdapterManager({
      engine,
      baseName: entry.name,
      modelInfo: info,
      log: log.child({ model: entry.name }),
      mergeDir: config.mergeDir ? join(config.mergeDir, entry.name.replace(/[^A-Za-z0-9._-]/g, '_')) : undefined,
      ...adapterTierOptions(entry, config, log),
    });
    for (const dir of entry.adapterDirs) {
      const { registered, skipped } = await adapters.scanDirectory(dir);
      log.info({ model: entry.name, dir, adapters: registered.map((a) => a.name), skipped: skipped.length }, 'scanned adapter directory');
    }
    for (const a of entry.adapters) await adapters.registerSource(a.name, configAdapterSource(a.path, a.sha256));
    return { model: { name: entry.name, engine, tokenizer, adapters, maxRunningSequences: e.maxNumSeqs, toolCallFormat: entry.toolCallFormat, reasoningParser: entry.reasoningParser }, adapters };
  } catch (err) {
    await engine.dispose();
    throw err;
  }
}

/**
 * Load every configured model and build the router.
 * @param config A validated configuration (config/load.ts).
 * @param log Optional pino logger (default: pino at `config.logLevel`).
 * @throws Error naming the model folder, file or field when a model or adapter folder is invalid.
 */
export async function createOpenLora(config: Config, log: Logger = pino({ level: config.logLevel })): Promise<OpenLora> {
  const loaded: Array<{ model: OpenLoraModel; adapters: AdapterManager }> = [];
  try {
    for (const entry of config.models) loaded.push(await loadOne(entry, config, log));
  } catch (err) {
    await Promise.all(loaded.map((l) => l.model.engine.dispose()));
    throw err;
  }
  const router = openLora({
    models: loaded.map((l) => l.model),
    logger: log,
    bodyLimit: config.bodyLimit,
    compositions: config.compositions,
    allowRuntimeLoraUpdating: config.allowRuntimeLoraUpdating,
    keys: config.keys,
    upstreams: config.upstreams,
    maxQueuedRequests: config.maxQueuedRequests,
    console: config.console,
  });
  try {
    await router.ready;
  } catch (err) {
    await Promise.all(loaded.map((l) => l.model.engine.dispose()));
    throw err;
  }
  const models = new Map(loaded.map((l) => [l.model.name, { engine: l.model.engine, adapters: l.adapters }]));
  let closing: Promise<void> | undefined;
  return {
    router,
    log,
    models,
    close: (graceMs = 0) =>
      (closing ??= (async () => {
        await router.close(graceMs);
        await Promise.all([...models.values()].map((m) => m.engine.dispose()));
      })()),
  };
}
