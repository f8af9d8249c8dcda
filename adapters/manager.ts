/**
 * AdapterManager: the adapter lifecycle for one base model: registry and three tiers.
 *
 * - Registry: adapters are registered from folders, URLs or hub ids (adapters/sources.ts); the
 *   PEFT config is parsed and validated at registration (cheap, so `/v1/models` can show rank
 *   and targets); the safetensors header is read and the tensors uploaded only when a request
 *   first needs the adapter. `unregister` hides an adapter at once (new requests 404) and
 *   frees its slot when the last running request using it ends.
 * - Disk tier: local folders, or downloaded folders in the bounded LRU of AdapterSources.
 * - Host tier (LRU bounded by count `maxCpuLoras` and bytes `maxCpuBytes`): the parsed and
 *   validated `AdapterLoadSpec`, with the weights file read once (so the upload reads the OS
 *   page cache, not the disk). NOTE: the engine's `loadAdapter` takes a file path, so the
 *   tensors themselves are not kept in JS memory: an upload from host buffers needs a native
 *   `loadAdapterFromBuffers(spec, buffers)`; until then the host tier is spec + page cache.
 * - Device tier: the engine's slots. Each adapter is uploaded at its exact rank (the engine
 *   allocates per adapter: packing, no zero padding to maxLoraRank).
 * - Slot pool (vLLM `LRUCacheLoRAModelManager`'s active-adapter LRU): at most `maxLoras`
 *   adapters are resident; a load with every slot taken evicts the least recently used
 *   unpinned adapter *before* loading; when every slot is pinned it waits up to `slotWaitMs`
 *   for a release, then answers 503.
 * - Single-flight (node-llama-cpp `_getOrLoadLora`): concurrent acquires of a cold adapter
 *   share one parse + engine load. A failed load leaves nothing behind.
 * - Prefetch: an acquire fills the disk and host tiers before it asks for a slot, so a request
 *   waiting for a slot (all pinned) has its adapter read and validated while earlier requests
 *   run; `prefetch(name)` does the same without a slot.
 * - Metrics: adapters/metrics.ts (per tier, labelled by model) and `stats()`.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { NativeError, wrapNativeError } from '../native/errors.ts';
import type { ModelInfo, NativeEngine } from '../native/types.ts';
import { tmpdir } from 'node:os';
import type { Composition } from './composition.ts';
import { AdapterError, unknownAdapter } from './errors.ts';
import { MergeCache } from './merge-cache.ts';
import { adapterMetrics, type Tier } from './metrics.ts';
import { buildLoadSpec, parseAdapterDir, type ParsedAdapter } from './peft.ts';
import { AdapterSources, confinePath, sourceOf, type AdapterSource } from './sources.ts';
import type { AdapterLoadSpec } from '../native/types.ts';
import type { AdapterInfo, AdapterLease, AdapterProvider } from './types.ts';

/**
 * What an engine refusal of `loadAdapter` becomes: a bad file, a missing tensor or a rank above
 * maxLoraRank stays the client's fault (`invalid_adapter`, 400), "no free slot" stays a retryable `no_free_slot` (503), and anything
 * else (device failure, engine bug) keeps its NativeError code (500), prefixed with the adapter.
 */
function engineRefusal(name: string, path: string, err: unknown): Error {
  const n = wrapNativeError(err);
  const message = `adapter ${name}: the engine refused ${path}: ${n.message}`;
  if (n.code === 'bad_file' || n.code === 'not_found' || n.code === 'invalid_argument') return new AdapterError(message, 'invalid_adapter', { cause: n });
  if (n.code === 'no_free_slot') return new AdapterError(message, 'no_free_slot', { param: null, cause: n });
  return new NativeError(message, n.code, null, { cause: n });
}

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
  /** Host tier bound: adapters (default 64). */
  maxCpuLoras?: number;
  /** Host tier bound: bytes of their weights files (default 4 GiB). */
  maxCpuBytes?: number;
  /** URL / hub sources and the download disk tier (default: a cache under the OS temp folder, no hub endpoint). */
  sources?: AdapterSources;
  /** Folders runtime loads (`loadRuntime`) may read local paths from (realpath-confined). */
  adapterRoots?: string[];
  /** Whether runtime loads may name http(s) URLs (default false). */
  allowUrls?: boolean;
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
  /** Host tier: adapters held, bytes, hits/misses, fills (one disk read of the weights each), evictions. */
  host: { entries: number; bytes: number; hits: number; misses: number; loads: number; evictions: number };
  /** Disk tier (downloaded folders): see AdapterSources.stats. */
  disk: { entries: number; bytes: number; hits: number; misses: number; downloads: number; downloadFailures: number; evictions: number };
  /** Acquires that found every slot pinned and had their adapter read into the host tier while waiting. */
  prefetchedWhileWaiting: number;
  /** Adapters unregistered but still draining (slot freed when their last request ends). */
  draining: number;
}

interface Entry {
  info: AdapterInfo;
  parsed: ParsedAdapter;
  source: AdapterSource;
  /** Host tier: the validated load spec (null when not in the host tier) and the file's bytes. */
  spec: AdapterLoadSpec | null;
  hostBytes: number;
  hostLastUsed: number;
  hostLoading: Promise<AdapterLoadSpec> | null;
  /** Unregistered: no new acquires; the slot is freed when pins reach 0. */
  removed: boolean;
  /** The scanned directory it came from, for `rescan`. */
  scanDir?: string;
  slot: number | null; // device slot while resident
  /** Live leases plus acquires in progress; an entry with pins > 0 is never evicted. */
  pins: number;
  /** LRU clock value of the last acquire/release. */
  lastUsed: number;
  /** The single in-flight load, shared by concurrent acquires. */
  loading: Promise<void> | null;
}

/** `AdapterProvider` for one base model: registry, JIT loads through the tiers, pinning, LRU eviction. */
export class AdapterManager implements AdapterProvider {
  private readonly engine: AdapterManagerOptions['engine'];
  private readonly baseName: string;
  private readonly info: ModelInfo;
  private readonly log: Logger;
  private readonly slotWaitMs: number;
  private readonly maxCpuLoras: number;
  private readonly maxCpuBytes: number;
  private readonly adapterRoots: string[];
  private readonly allowUrls: boolean;
  /** URL / hub sources and the disk tier of downloaded folders. */
  readonly sources: AdapterSources;
  private readonly entries = new Map<string, Entry>();
  private readonly resident = new Set<Entry>();
  private readonly hostSet = new Set<Entry>();
  private readonly draining = new Set<Entry>();
  private readonly scanDirs = new Set<string>();
  /** Resident adapters plus loads holding a reserved slot; never above info.maxLoras. */
  private slotsUsed = 0;
  private clock = 0;
  private waiters = new Set<() => void>();
  private readonly counters = { hits: 0, loads: 0, engineLoads: 0, loadFailures: 0, evictions: 0, slotWaits: 0, slotTimeouts: 0 };
  private readonly hostCounters = { hits: 0, misses: 0, loads: 0, evictions: 0 };
  private prefetchedWhileWaiting = 0;
  private readonly m: { model: string };

  /** @param opts see AdapterManagerOptions. */
  constructor(opts: AdapterManagerOptions) {
    this.engine = opts.engine;
    this.baseName = opts.baseName;
    this.info = opts.modelInfo;
    this.log = opts.log ?? silent;
    this.slotWaitMs = opts.slotWaitMs ?? 10_000;
    this.maxCpuLoras = opts.maxCpuLoras ?? 64;
    this.maxCpuBytes = opts.maxCpuBytes ?? 4 * 1024 ** 3;
    this.adapterRoots = opts.adapterRoots ?? [];
    this.allowUrls = opts.allowUrls ?? false;
    const safe = this.baseName.replace(/[^A-Za-z0-9._-]/g, '_');
    this.sources = opts.sources ?? new AdapterSources({ cacheDir: join(tmpdir(), 'openlora-adapter-cache', safe), log: this.log });
    this.m = { model: this.baseName };
    this.sources.onFill = (ok, seconds) => {
      if (ok) {
        adapterMetrics.loads.inc({ ...this.m, tier: 'disk' });
        adapterMetrics.loadSeconds.observe({ ...this.m, tier: 'disk' }, seconds);
      } else adapterMetrics.failures.inc({ ...this.m, tier: 'disk' });
    };
    this.sources.onEvict = () => adapterMetrics.evictions.inc({ ...this.m, tier: 'disk' });
    const mergeDir = opts.mergeDir ?? join(tmpdir(), 'openlora-merges', safe);
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
   * warning; folders without adapter_config.json are ignored. The folder is remembered for `rescan`.
   * @returns the adapters registered and those skipped with the reason.
   * @throws AdapterError when `dir` itself cannot be read.
   */
  async scanDirectory(dir: string): Promise<{ registered: AdapterInfo[]; skipped: Array<{ name: string; reason: string }> }> {
    let names: string[];
    const abs = resolve(dir);
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      throw new AdapterError(`${dir}: cannot read adapter directory (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    this.scanDirs.add(abs);
    const registered: AdapterInfo[] = [];
    const skipped: Array<{ name: string; reason: string }> = [];
    for (const name of names) {
      const sub = join(abs, name);
      const hasConfig = await stat(join(sub, 'adapter_config.json')).then((s) => s.isFile(), () => false);
      if (!hasConfig) continue;
      try {
        const info = await this.register(name, sub);
        this.entries.get(name)!.scanDir ??= abs;
        registered.push(info);
      } catch (err) {
        const reason = (err as Error).message;
        skipped.push({ name, reason });
        this.log.warn({ adapter: name, dir: sub, reason }, 'adapter skipped');
      }
    }
    return { registered, skipped };
  }

  /**
   * Rescan every directory scanned so far: new sub-folders are registered, adapters whose
   * folder disappeared are unregistered (running requests finish first).
   */
  async rescan(): Promise<{ added: string[]; removed: string[]; skipped: Array<{ name: string; reason: string }> }> {
    const before = new Set(this.entries.keys());
    const added: string[] = [];
    const removed: string[] = [];
    const skipped: Array<{ name: string; reason: string }> = [];
    for (const dir of this.scanDirs) {
      const r = await this.scanDirectory(dir).catch(() => ({ registered: [], skipped: [] }));
      for (const a of r.registered) if (!before.has(a.name)) added.push(a.name);
      skipped.push(...r.skipped.filter((s) => !before.has(s.name)));
    }
    for (const e of [...this.entries.values()]) {
      if (!e.scanDir) continue;
      const still = await stat(join(e.info.dir, 'adapter_config.json')).then((s) => s.isFile(), () => false);
      if (!still) {
        this.unregister(e.info.name);
        removed.push(e.info.name);
      }
    }
    if (added.length || removed.length) this.log.info({ added, removed }, 'adapter directories rescanned');
    return { added, removed, skipped };
  }

  /**
   * Register one adapter folder under `name` (config parsed and validated now, tensors later).
   * Registering the same name and folder again returns the existing info.
   * @throws AdapterError `invalid_adapter` for an invalid name or adapter config (naming the
   *   file and field), `adapter_name_conflict` for a name already taken by another folder.
   */
  register(name: string, dir: string): Promise<AdapterInfo> {
    return this.registerSource(name, { kind: 'local', path: resolve(dir) });
  }

  /**
   * Register an adapter from any source: a local folder, an http(s) folder URL or a hub id
   * (downloaded now into the disk tier, so its config can be validated).
   * @throws AdapterError as `register`, plus download errors naming the URL.
   */
  async registerSource(name: string, source: AdapterSource): Promise<AdapterInfo> {
    if (!ADAPTER_NAME_RE.test(name)) {
      throw new AdapterError(`invalid adapter name ${JSON.stringify(name)}: must match ${ADAPTER_NAME_RE.source}`);
    }
    const where = source.kind === 'local' ? source.path : source.kind === 'url' ? source.url : `${source.repo}@${source.revision}`;
    const taken = () => {
      const e = this.entries.get(name);
      if (e && e.info.root !== where) throw new AdapterError(`adapter ${name} is already registered from ${e.info.root}`, 'adapter_name_conflict');
      return e?.info;
    };
    const existing = taken();
    if (existing) return existing;
    const dir = await this.sources.ensureLocal(source);
    const parsed = await parseAdapterDir(dir, this.info);
    const again = taken(); // a concurrent register of the same name may have won
    if (again) return again;
    for (const w of parsed.warnings) this.log.warn({ adapter: name, dir }, w);
    const cfg = parsed.config;
    const info: AdapterInfo = {
      name, base: this.baseName, dir, root: where, rank: cfg.r, alpha: cfg.lora_alpha, useRslora: Boolean(cfg.use_rslora),
      targetModules: [...parsed.targetKinds], created: Math.floor(Date.now() / 1000), source: source.kind,
    };
    this.entries.set(name, {
      info, parsed, source, slot: null, pins: 0, lastUsed: 0, loading: null,
      spec: null, hostBytes: 0, hostLastUsed: 0, hostLoading: null, removed: false,
    });
    this.log.info({ adapter: name, dir, source: source.kind, rank: info.rank, targets: info.targetModules }, 'adapter registered');
    return info;
  }

  /**
   * The runtime API's load (`POST /v1/load_lora_adapter`): `location` is an absolute path
   * inside an adapter root (realpath-checked: no `..`, no symlink escape), an http(s) URL
   * (when `allowUrls`) or a hub id `org/name[@rev]` (when a hub endpoint is configured or the
   * Hugging Face cache has it).
   * @throws AdapterError `adapter_exists` (name taken), `invalid_lora_path`, `invalid_adapter`, download codes.
   */
  async loadRuntime(name: string, location: string): Promise<AdapterInfo> {
    if (this.entries.has(name)) {
      throw new AdapterError(`The lora adapter '${name}' has already been loaded.`, 'adapter_exists', { param: 'lora_name' });
    }
    let src = sourceOf(location);
    if (!src) throw new AdapterError(`lora_path ${JSON.stringify(location)}: expected an absolute path, an http(s) URL or a hub id org/name[@revision]`, 'invalid_lora_path', { param: 'lora_path' });
    if (src.kind === 'local') src = { kind: 'local', path: await confinePath(location, this.adapterRoots) };
    if (src.kind === 'url' && !this.allowUrls) {
      throw new AdapterError(`lora_path ${JSON.stringify(location)}: URL sources are disabled (adapterSources.allowUrls)`, 'invalid_lora_path', { param: 'lora_path' });
    }
    const info = await this.registerSource(name, src);
    // Validate the tensors now (header, shapes, ranks) so a bad file is refused by the load call.
    try {
      await this.hostLoad(this.entries.get(name)!);
    } catch (err) {
      this.unregister(name);
      throw err;
    }
    return info;
  }

  /**
   * Forget an adapter: new requests get 404 at once; running requests keep their slot, which is
   * freed when the last of them ends. Synthetic merges are not affected.
   * @returns false when the name is not registered.
   */
  unregister(name: string): boolean {
    const e = this.entries.get(name);
    if (!e) return false;
    this.entries.delete(name);
    e.removed = true;
    this.dropHost(e, false);
    if (e.pins === 0 && e.slot !== null) this.unloadSlot(e, 'adapter unloaded');
    else if (e.slot !== null || e.loading) this.draining.add(e);
    this.log.info({ adapter: name, draining: e.pins }, 'adapter unregistered');
    return true;
  }

  /** Every registered adapter, in registration order, with its current tier. */
  list(): AdapterInfo[] {
    return [...this.entries.values()].map((e) => this.withTier(e));
  }

  /** The adapter's info (with its current tier), or undefined when the name is not registered. */
  get(name: string): AdapterInfo | undefined {
    const e = this.entries.get(name);
    return e && this.withTier(e);
  }

  /** Fill the disk and host tiers for `name` without taking a slot (errors are logged, not thrown). */
  async prefetch(name: string): Promise<void> {
    const e = this.entries.get(name);
    if (!e || e.slot !== null) return;
    await this.hostLoad(e).catch((err: Error) => this.log.warn({ adapter: name, err: err.message }, 'adapter prefetch failed'));
  }

  /**
   * Make `name` resident (JIT, single-flight) and pin it until the lease is released.
   * @throws AdapterError `model_not_found` for an unknown name, `invalid_adapter` for invalid
   *   adapter files or an engine refusal of them, `no_free_slot` when every slot stays pinned for
   *   `slotWaitMs`; NativeError (`device_error`, ...) when the engine fails the upload.
   */
  async acquire(name: string): Promise<AdapterLease> {
    const e = this.entries.get(name);
    if (!e) throw unknownAdapter(`${this.baseName}:${name}`);
    e.pins++; // pinned from here on, so a concurrent load can't evict it between load and lease
    this.gauge();
    try {
      if (e.slot === null) {
        if (!e.loading) {
          adapterMetrics.misses.inc({ ...this.m, tier: 'device' });
          e.loading = this.load(e).finally(() => void (e.loading = null));
        }
        await e.loading;
      } else {
        this.counters.hits++;
        adapterMetrics.hits.inc({ ...this.m, tier: 'device' });
      }
      if (e.removed) throw unknownAdapter(`${this.baseName}:${name}`, 'It was unloaded.');
    } catch (err) {
      this.unpin(e);
      throw err;
    }
    e.lastUsed = ++this.clock;
    if (e.source.kind !== 'local') this.sources.touch(e.source);
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
    for (const e of this.draining) if (e.pins > 0) pinned++;
    let bytes = 0;
    for (const e of this.hostSet) bytes += e.hostBytes;
    return {
      registered: this.entries.size, resident: this.resident.size, pinned, ...this.counters,
      host: { entries: this.hostSet.size, bytes, ...this.hostCounters },
      disk: this.sources.stats(),
      prefetchedWhileWaiting: this.prefetchedWhileWaiting,
      draining: this.draining.size,
    };
  }

  /** Slots the manager counts as used (resident + loads holding a reservation). */
  get slotsInUse(): number {
    return this.slotsUsed;
  }

  private withTier(e: Entry): AdapterInfo {
    const tier: Tier | 'remote' = e.slot !== null ? 'device' : e.spec ? 'host' : this.sources.isOnDisk(e.source) ? 'disk' : 'remote';
    e.info.tier = tier;
    return e.info;
  }

  private gauge(): void {
    let pinned = 0;
    for (const e of this.entries.values()) if (e.pins > 0) pinned++;
    for (const e of this.draining) if (e.pins > 0) pinned++;
    adapterMetrics.pinned.set(this.m, pinned);
    adapterMetrics.resident.set({ ...this.m, tier: 'device' }, this.resident.size);
    adapterMetrics.resident.set({ ...this.m, tier: 'host' }, this.hostSet.size);
    adapterMetrics.resident.set({ ...this.m, tier: 'disk' }, this.sources.stats().entries);
  }

  private unpin(e: Entry): void {
    e.pins--;
    e.lastUsed = ++this.clock;
    if (e.pins === 0) {
      if (e.removed && e.slot !== null) this.unloadSlot(e, 'unloaded adapter drained');
      if (e.removed && !e.loading) this.draining.delete(e);
      this.wake();
    }
    this.gauge();
  }

  /** Disk tier (download when needed), then host tier: parse the header, validate, read the file once. */
  private hostLoad(e: Entry): Promise<AdapterLoadSpec> {
    if (e.spec) {
      this.hostCounters.hits++;
      adapterMetrics.hits.inc({ ...this.m, tier: 'host' });
      e.hostLastUsed = ++this.clock;
      return Promise.resolve(e.spec);
    }
    if (e.hostLoading) return e.hostLoading;
    this.hostCounters.misses++;
    adapterMetrics.misses.inc({ ...this.m, tier: 'host' });
    const run = async (): Promise<AdapterLoadSpec> => {
      if (e.source.kind !== 'local') {
        const wasOnDisk = this.sources.isOnDisk(e.source);
        adapterMetrics[wasOnDisk ? 'hits' : 'misses'].inc({ ...this.m, tier: 'disk' });
        await this.sources.ensureLocal(e.source); // re-downloads into the same folder after a disk eviction
      } else {
        adapterMetrics.hits.inc({ ...this.m, tier: 'disk' });
      }
      const t0 = performance.now();
      try {
        const spec = await buildLoadSpec(e.parsed, this.info);
        // NOTE: read once so the engine's upload finds the bytes in the OS page cache (see header).
        const bytes = (await readFile(spec.path)).length;
        this.hostCounters.loads++;
        adapterMetrics.loads.inc({ ...this.m, tier: 'host' });
        adapterMetrics.loadSeconds.observe({ ...this.m, tier: 'host' }, (performance.now() - t0) / 1000);
        if (!e.removed) this.hostInsert(e, spec, bytes);
        return spec;
      } catch (err) {
        adapterMetrics.failures.inc({ ...this.m, tier: 'host' });
        throw err;
      }
    };
    e.hostLoading = run().finally(() => void (e.hostLoading = null));
    return e.hostLoading;
  }

  private hostInsert(e: Entry, spec: AdapterLoadSpec, bytes: number): void {
    e.spec = spec;
    e.hostBytes = bytes;
    e.hostLastUsed = ++this.clock;
    this.hostSet.add(e);
    let total = 0;
    for (const h of this.hostSet) total += h.hostBytes;
    const lru = [...this.hostSet].filter((h) => h !== e).sort((a, b) => a.hostLastUsed - b.hostLastUsed);
    for (const h of lru) {
      if (this.hostSet.size <= this.maxCpuLoras && total <= this.maxCpuBytes) break;
      total -= h.hostBytes;
      this.dropHost(h, true);
    }
    this.gauge();
  }

  private dropHost(e: Entry, evicted: boolean): void {
    if (!this.hostSet.delete(e)) return;
    e.spec = null;
    e.hostBytes = 0;
    if (evicted) {
      this.hostCounters.evictions++;
      adapterMetrics.evictions.inc({ ...this.m, tier: 'host' });
    }
  }

  /** Host tier, then a slot (evicting if needed), then the upload. Leaves nothing behind on failure. */
  private async load(e: Entry): Promise<void> {
    const name = e.info.name;
    this.counters.loads++;
    let reserved = false;
    try {
      const spec = await this.hostLoad(e);
      const waited = await this.reserveSlot(name);
      if (waited) this.prefetchedWhileWaiting++;
      reserved = true;
      if (e.removed) throw unknownAdapter(`${this.baseName}:${name}`, 'It was unloaded.');
      this.counters.engineLoads++;
      adapterMetrics.loads.inc({ ...this.m, tier: 'device' });
      const t0 = performance.now();
      let slot: number;
      try {
        slot = await this.engine.loadAdapter(spec);
      } catch (err) {
        throw engineRefusal(name, spec.path, err);
      }
      e.slot = slot;
      this.resident.add(e);
      const ms = performance.now() - t0;
      adapterMetrics.loadSeconds.observe({ ...this.m, tier: 'device' }, ms / 1000);
      this.log.info({ adapter: name, slot, ms: Math.round(ms) }, 'adapter loaded');
      this.gauge();
    } catch (err) {
      this.counters.loadFailures++;
      adapterMetrics.failures.inc({ ...this.m, tier: 'device' });
      if (reserved) {
        this.slotsUsed--;
        this.wake();
      }
      this.log.warn({ adapter: name, err: (err as Error).message }, 'adapter load failed');
      throw err;
    }
  }

  /** Count one slot as used: free, else evict the LRU unpinned adapter, else wait (bounded). @returns whether it waited. */
  private async reserveSlot(name: string): Promise<boolean> {
    const deadline = performance.now() + this.slotWaitMs;
    let waited = false;
    for (;;) {
      if (this.slotsUsed < this.info.maxLoras || this.evictOne()) {
        this.slotsUsed++;
        return waited;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        this.counters.slotTimeouts++;
        throw new AdapterError(
          `adapter ${name}: all ${this.info.maxLoras} adapter slots are in use by running requests (waited ${this.slotWaitMs} ms); retry later`,
          'no_free_slot',
          { param: null },
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
      if (this.unloadSlot(e, 'adapter evicted (LRU)')) {
        this.counters.evictions++;
        adapterMetrics.evictions.inc({ ...this.m, tier: 'device' });
        return true;
      }
    }
    return false;
  }

  /** Free `e`'s slot in the engine; false (logged) when the engine refuses. */
  private unloadSlot(e: Entry, why: string): boolean {
    try {
      this.engine.unloadAdapter(e.slot!);
    } catch (err) {
      this.log.error({ adapter: e.info.name, slot: e.slot, err: (err as Error).message }, 'adapter unload failed');
      return false;
    }
    this.log.info({ adapter: e.info.name, slot: e.slot }, why);
    this.resident.delete(e);
    e.slot = null;
    this.slotsUsed--;
    if (e.removed) this.draining.delete(e);
    this.gauge();
    this.wake();
    return true;
  }

  /** Wake every load waiting for a slot; each re-checks. */
  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
