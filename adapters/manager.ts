/**
 * AdapterManager: the adapter lifecycle for one base model (registry + device slot pool).
 *
 * - Registry: adapters are registered from folders; the PEFT config is parsed and validated
 *   at registration (cheap, so `/v1/models` can show rank and targets); the safetensors header
 *   is read and the tensors uploaded only when a request first needs the adapter.
 * - Slot pool (vLLM `LRUCacheLoRAModelManager`'s active-adapter LRU): at most `maxLoras`
 *   adapters are resident; a load with every slot taken evicts the least recently used
 *   unpinned adapter *before* loading; when every slot is pinned it waits up to `slotWaitMs`
 *   for a release, then answers 503.
 * - Single-flight (node-llama-cpp `_getOrLoadLora`): concurrent acquires of a cold adapter
 *   share one parse + engine load. A failed load leaves nothing behind.
 *
 * NOTE: a host-memory tier, metrics and a runtime load API are a later issue; they slot in at
 * `load()` (host tier), `stats()` (metrics) and `register()` (runtime loads).
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ModelInfo, NativeEngine } from '../native/types.ts';
import { AdapterError, ModelNotFoundError, OpenLoraError, ServiceUnavailableError } from '../plugin/errors.ts';
import { tmpdir } from 'node:os';
import type { Composition } from './composition.ts';
import { MergeCache } from './merge-cache.ts';
import { buildLoadSpec, parseAdapterDir, type ParsedAdapter } from './peft.ts';
import type { AdapterInfo, AdapterLease, AdapterProvider } from './types.ts';

/** Adapter names: no `:`, `@`, `+` or `/`, which the model-name syntax `BASE:A@0.6+B@0.4` uses. */
export const ADAPTER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** The subset of a pino logger the manager uses: `log.warn({fields}, 'message')`. */
export type Logger = Record<'info' | 'warn' | 'error', (obj: object, msg: string) => void>;
const silent: Logger = { info() {}, warn() {}, error() {} };

/** Constructor options. */
export interface AdapterManagerOptions {
  /** The engine the base model was loaded into (only loadAdapter/unloadAdapter are used). */
  engine: Pick<NativeEngine, 'loadAdapter' | 'unloadAdapter'>;
  /** Served name of the base model (`BASE` in `BASE:ADAPTER`). */
  baseName: string;
  /** The engine's `info()`: shapes for validation, `maxLoras` slots, `maxLoraRank`. */
  modelInfo: ModelInfo;
  log?: Logger;
  /** How long an acquire waits for a pinned slot to be released before a 503 (ms, default 10000). */
  slotWaitMs?: number;
  /** Folder materialised merges are written to (default: `<os tmpdir>/openlora-merges/<base>`). */
  mergeDir?: string;
}

/**
 * Counters for tests and (later) metrics. `resident`: adapters in a slot now; `pinned`: with a
 * live lease or pending acquire; `hits`: acquires of a resident adapter; `loads`: load attempts
 * (header parse + validation + upload; one per single-flight); `engineLoads`: loadAdapter calls;
 * `loadFailures`: failed attempts; `evictions`: LRU unloadAdapter calls; `slotWaits`: loads that
 * waited for a pinned slot; `slotTimeouts`: loads that gave up waiting (503).
 */
export interface AdapterManagerStats {
  registered: number; resident: number; pinned: number; hits: number; loads: number; engineLoads: number;
  loadFailures: number; evictions: number; slotWaits: number; slotTimeouts: number;
}

interface Entry {
  info: AdapterInfo;
  parsed: ParsedAdapter;
  slot: number | null; // device slot while resident
  /** Live leases plus acquires in progress; an entry with pins > 0 is never evicted. */
  pins: number;
  /** LRU clock value of the last acquire/release. */
  lastUsed: number;
  /** The single in-flight load, shared by concurrent acquires. */
  loading: Promise<void> | null;
}

/** `AdapterProvider` for one base model: registry, JIT loads, pinning and LRU slot eviction. */
export class AdapterManager implements AdapterProvider {
  private readonly engine: AdapterManagerOptions['engine'];
  private readonly baseName: string;
  private readonly info: ModelInfo;
  private readonly log: Logger;
  private readonly slotWaitMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly resident = new Set<Entry>();
  /** Resident adapters plus loads holding a reserved slot; never above info.maxLoras. */
  private slotsUsed = 0;
  private clock = 0;
  private waiters = new Set<() => void>();
  private readonly counters = { hits: 0, loads: 0, engineLoads: 0, loadFailures: 0, evictions: 0, slotWaits: 0, slotTimeouts: 0 };

  /** @param opts see AdapterManagerOptions. */
  constructor(opts: AdapterManagerOptions) {
    this.engine = opts.engine;
    this.baseName = opts.baseName;
    this.info = opts.modelInfo;
    this.log = opts.log ?? silent;
    this.slotWaitMs = opts.slotWaitMs ?? 10_000;
    const mergeDir = opts.mergeDir ?? join(tmpdir(), 'openlora-merges', this.baseName.replace(/[^A-Za-z0-9._-]/g, '_'));
    this.merges = new MergeCache(this, this.info, mergeDir);
  }

  /** Materialised merges of this base (adapters/merge-cache.ts). */
  readonly merges: MergeCache;

  /** Materialise (once) and acquire a merge of this base's adapters; see AdapterProvider. */
  acquireMerged(composition: Composition): Promise<AdapterLease> {
    return this.merges.acquire(composition);
  }

  /** Register a materialised merge: like `register`, but flagged synthetic (not listed in /v1/models). */
  async registerSynthetic(name: string, dir: string): Promise<AdapterInfo> {
    const info = await this.register(name, dir);
    info.synthetic = true;
    return info;
  }

  /**
   * Register every sub-folder of `dir` that holds an adapter_config.json, named after the
   * folder (sorted by name, one at a time). Invalid names and invalid adapters are skipped with a
   * warning; folders without adapter_config.json are ignored.
   * @returns the adapters registered and those skipped with the reason.
   * @throws AdapterError when `dir` itself cannot be read.
   */
  async scanDirectory(dir: string): Promise<{ registered: AdapterInfo[]; skipped: Array<{ name: string; reason: string }> }> {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      throw new AdapterError(`${dir}: cannot read adapter directory (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    const registered: AdapterInfo[] = [];
    const skipped: Array<{ name: string; reason: string }> = [];
    for (const name of names) {
      const sub = join(dir, name);
      const hasConfig = await stat(join(sub, 'adapter_config.json')).then((s) => s.isFile(), () => false);
      if (!hasConfig) continue;
      try {
        registered.push(await this.register(name, sub));
      } catch (err) {
        const reason = (err as Error).message;
        skipped.push({ name, reason });
        this.log.warn({ adapter: name, dir: sub, reason }, 'adapter skipped');
      }
    }
    return { registered, skipped };
  }

  /**
   * Register one adapter folder under `name` (config parsed and validated now, tensors later).
   * Registering the same name and folder again returns the existing info.
   * @throws AdapterError for an invalid name (400), a name already taken by another folder
   *   (409), or an invalid adapter config (400, naming the file and field).
   */
  async register(name: string, dir: string): Promise<AdapterInfo> {
    if (!ADAPTER_NAME_RE.test(name)) {
      throw new AdapterError(`invalid adapter name ${JSON.stringify(name)}: must match ${ADAPTER_NAME_RE.source}`);
    }
    const abs = resolve(dir);
    const taken = () => {
      const e = this.entries.get(name);
      if (e && e.info.dir !== abs) throw new AdapterError(`adapter ${name} is already registered from ${e.info.dir}`, 409, 'adapter_exists');
      return e?.info;
    };
    const existing = taken();
    if (existing) return existing;
    const parsed = await parseAdapterDir(abs, this.info);
    const again = taken(); // a concurrent register of the same name may have won
    if (again) return again;
    for (const w of parsed.warnings) this.log.warn({ adapter: name, dir: abs }, w);
    const cfg = parsed.config;
    const info: AdapterInfo = {
      name, base: this.baseName, dir: abs, rank: cfg.r, alpha: cfg.lora_alpha, useRslora: Boolean(cfg.use_rslora),
      targetModules: [...parsed.targetKinds], created: Math.floor(Date.now() / 1000),
    };
    this.entries.set(name, { info, parsed, slot: null, pins: 0, lastUsed: 0, loading: null });
    this.log.info({ adapter: name, dir: abs, rank: info.rank, targets: info.targetModules }, 'adapter registered');
    return info;
  }

  /** Every registered adapter, in registration order. */
  list(): AdapterInfo[] {
    return [...this.entries.values()].map((e) => e.info);
  }

  /** The adapter's info, or undefined when the name is not registered. */
  get(name: string): AdapterInfo | undefined {
    return this.entries.get(name)?.info;
  }

  /**
   * Make `name` resident (JIT, single-flight) and pin it until the lease is released.
   * @throws ModelNotFoundError (404) for an unknown name; AdapterError (4xx) for invalid adapter
   *   files or an engine refusal; ServiceUnavailableError (503) when every slot stays pinned for
   *   `slotWaitMs`.
   */
  async acquire(name: string): Promise<AdapterLease> {
    const e = this.entries.get(name);
    if (!e) throw new ModelNotFoundError(`${this.baseName}:${name}`);
    e.pins++; // pinned from here on, so a concurrent load can't evict it between load and lease
    try {
      if (e.slot === null) {
        e.loading ??= this.load(e).finally(() => void (e.loading = null));
        await e.loading;
      } else {
        this.counters.hits++;
      }
    } catch (err) {
      this.unpin(e);
      throw err;
    }
    e.lastUsed = ++this.clock;
    let released = false;
    return {
      name,
      slot: e.slot!,
      release: () => {
        if (released) return;
        released = true;
        this.unpin(e);
      },
    };
  }

  /** Counters and current occupancy (a snapshot). */
  stats(): AdapterManagerStats {
    let pinned = 0;
    for (const e of this.entries.values()) if (e.pins > 0) pinned++;
    return { registered: this.entries.size, resident: this.resident.size, pinned, ...this.counters };
  }

  private unpin(e: Entry): void {
    e.pins--;
    e.lastUsed = ++this.clock;
    if (e.pins === 0) this.wake();
  }

  /** Parse the header, take a slot (evicting if needed), upload. Leaves nothing behind on failure. */
  private async load(e: Entry): Promise<void> {
    const name = e.info.name;
    this.counters.loads++;
    let reserved = false;
    try {
      const spec = await buildLoadSpec(e.parsed, this.info);
      await this.reserveSlot(name);
      reserved = true;
      this.counters.engineLoads++;
      const t0 = performance.now();
      let slot: number;
      try {
        slot = await this.engine.loadAdapter(spec);
      } catch (err) {
        if (err instanceof OpenLoraError) throw err;
        throw new AdapterError(`adapter ${name}: the engine refused ${spec.path}: ${(err as Error)?.message ?? String(err)}`);
      }
      e.slot = slot;
      this.resident.add(e);
      this.log.info({ adapter: name, slot, ms: Math.round(performance.now() - t0) }, 'adapter loaded');
    } catch (err) {
      this.counters.loadFailures++;
      if (reserved) {
        this.slotsUsed--;
        this.wake();
      }
      this.log.warn({ adapter: name, err: (err as Error).message }, 'adapter load failed');
      throw err;
    }
  }

  /** Count one slot as used: free, else evict the LRU unpinned adapter, else wait (bounded). */
  private async reserveSlot(name: string): Promise<void> {
    const deadline = performance.now() + this.slotWaitMs;
    let waited = false;
    for (;;) {
      if (this.slotsUsed < this.info.maxLoras || this.evictOne()) {
        this.slotsUsed++;
        return;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.counters.slotTimeouts++;
        throw new ServiceUnavailableError(
          `adapter ${name}: all ${this.info.maxLoras} adapter slots are in use by running requests (waited ${this.slotWaitMs} ms); retry later`,
        );
      }
      if (!waited) this.counters.slotWaits++;
      waited = true;
      await new Promise<void>((res) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          res();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
      });
    }
  }

  /** Unload the least recently used unpinned resident adapter; false when all are pinned. */
  private evictOne(): boolean {
    const candidates = [...this.resident].filter((e) => e.pins === 0).sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of candidates) {
      try {
        this.engine.unloadAdapter(e.slot!);
      } catch (err) {
        this.log.error({ adapter: e.info.name, slot: e.slot, err: (err as Error).message }, 'adapter unload failed');
        continue;
      }
      this.log.info({ adapter: e.info.name, slot: e.slot }, 'adapter evicted (LRU)');
      this.resident.delete(e);
      e.slot = null;
      this.slotsUsed--;
      this.counters.evictions++;
      return true;
    }
    return false;
  }

  /** Wake every load waiting for a slot; each re-checks. */
  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
