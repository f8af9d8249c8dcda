/**
 * AdapterManager: the adapter lifecycle of one base model, as the plugin sees it
 * (`AdapterProvider`): acquire an adapter, or `pin` a whole composition, for one request.
 *
 * A facade over four parts, each in its own file:
 * - registry (adapters/registry.ts): name → source, PEFT config, tier states;
 * - disk tier (adapters/sources.ts): local folders, or downloaded folders in a bounded LRU;
 * - host tier (adapters/spec-cache.ts): validated load specs, weights files pre-read into the
 *   OS page cache (the weights themselves are not held in process memory);
 * - device tier (adapters/slot-pool.ts): the engine's adapter slots, LRU with eviction before
 *   load and a bounded wait when every slot is pinned;
 * plus materialised merges (adapters/merge-cache.ts) and the metrics (adapters/metrics.ts,
 * each event counted once, read back by `stats()`).
 *
 * An acquire pins the adapter, then loads it just in time: host tier, then a slot, then the
 * upload. Concurrent acquires of a cold adapter share one load (node-llama-cpp
 * `_getOrLoadLora`); a failed load leaves nothing behind. The host tier is filled before a slot
 * is asked for, so a request waiting for a slot has its adapter read and validated while
 * earlier requests run. `unregister` hides an adapter at once (new requests 404) and frees its
 * slot when the last running request using it ends. Operator pins (`AcquireOptions.operator`)
 * never take the last slot: one always stays free of them for every other adapter.
 *
 * Resident adapters follow their files (adapters/versions.ts): an acquire of a resident local
 * adapter compares the files' stamp (adapters/content-id.ts) with the one its weights were
 * uploaded from; when they changed and the new files are valid, the new version is loaded for
 * this and later requests, while requests already running finish on the old one (its slot is
 * freed when the last ends). New files that are invalid or missing (half-written, being
 * replaced), or that the engine refuses, keep the resident version serving, with a warning in the
 * log, until they change again.
 */
import { join, resolve } from 'node:path';
import { privateTmpDir } from './private-dir.ts';
import { DEFAULTS } from '../config/schema.ts';
import type { Engine } from '../native/engine.ts';
import type { ModelInfo } from '../native/types.ts';
import { AdapterError, unknownAdapter } from './errors.ts';
import { slotShortfall, type Composition } from './composition.ts';
import { MergeCache } from './merge-cache.ts';
import { TierMetrics } from './metrics.ts';
import { pinComposition, type PinnedComposition } from './pin.ts';
import { AdapterRegistry, type AdapterEntry, type ScanResult } from './registry.ts';
import { RuntimeLoads } from './runtime-load.ts';
import { SlotPool, type DeviceState } from './slot-pool.ts';
import { AdapterSources, type AdapterSource, type DiskStats } from './sources.ts';
import { SpecCache } from './spec-cache.ts';
import { silentLogger, type AcquireOptions, type AdapterInfo, type AdapterLease, type Logger, type RuntimeAdapterProvider } from './types.ts';
import { AdapterVersions } from './versions.ts';

export { ADAPTER_NAME_RE } from './registry.ts';
export type { Logger } from './types.ts';

/** Constructor options. */
export interface AdapterManagerOptions {
  /** The engine the base model was loaded into (only loadAdapter/unloadAdapter are used, by the slot pool). */
  engine: Pick<Engine, 'loadAdapter' | 'unloadAdapter'>;
  /** Served name of the base model (`BASE` in `BASE:ADAPTER`). */
  baseName: string;
  /** The engine's `info()`: shapes for validation, `maxLoras` slots, `maxLoraRank`. */
  modelInfo: ModelInfo;
  log?: Logger;
  /** How long an acquire waits for a pinned slot to be released before a 503 (ms; default: config/schema.ts adapterCache.slotWaitMs). */
  slotWaitMs?: number;
  /** Folder materialised merges are written to (default: `<os tmpdir>/openlora-<uid>/merges/<base>`, private: adapters/private-dir.ts). */
  mergeDir?: string;
  /** Materialised merges kept (default: config/schema.ts adapterCache.maxMerges); the least recently used go first. */
  maxMerges?: number;
  /** Time limit of one merge computation (ms; default: config/schema.ts adapterCache.mergeTimeoutMs). */
  mergeTimeoutMs?: number;
  /** Host tier bound: adapters whose validated spec is kept (default: config/schema.ts adapterCache.maxCpuLoras). */
  maxCpuLoras?: number;
  /** Host tier bound: bytes of weights files counted as pre-read into the page cache (default: config/schema.ts adapterCache.maxWarmBytes). */
  maxWarmBytes?: number;
  /** URL / hub sources and the download disk tier (default: a cache under the OS temp folder, no hub endpoint). */
  sources?: AdapterSources;
  /** Folders runtime loads (`loadRuntime`) may read local paths from, and scanned folders may resolve into (realpath-confined). */
  adapterRoots?: string[];
  /** Whether runtime loads may name http(s) URLs (default false). */
  allowUrls?: boolean;
}

/**
 * Counters and occupancy. `resident`: adapters in a slot now; `pinned`: with a live lease or
 * pending acquire; `hits`: acquires of a resident adapter; `loads`: load attempts (host fill +
 * upload; one per single-flight); `engineLoads`: uploads tried (`loadAdapter` calls);
 * `loadFailures`: failed attempts; `evictions`: LRU slot evictions; `slotWaits`: loads that
 * waited for a pinned slot; `slotTimeouts`: loads that gave up waiting (503).
 */
export interface AdapterManagerStats {
  registered: number; resident: number; pinned: number; hits: number; loads: number; engineLoads: number;
  loadFailures: number; evictions: number; slotWaits: number; slotTimeouts: number;
  /** Host tier: adapters held, bytes of their weights files, hits/misses, fills (one disk read each), evictions. */
  host: { entries: number; bytes: number; hits: number; misses: number; loads: number; evictions: number };
  /** Disk tier (downloaded folders): see AdapterSources.stats. */
  disk: DiskStats;
  /** Acquires that found every slot pinned and had their adapter read into the host tier while waiting. */
  prefetchedWhileWaiting: number;
  /** Adapters unregistered, or old versions of adapters whose files changed, still draining (slot freed when their last request ends). */
  draining: number;
}

/** `AdapterProvider` (and the runtime load API) for one base model. */
export class AdapterManager implements RuntimeAdapterProvider {
  private readonly baseName: string;
  private readonly log: Logger;
  private readonly metrics: TierMetrics;
  private readonly registry: AdapterRegistry;
  private readonly specs: SpecCache;
  private readonly slots: SlotPool;
  private readonly runtimeLoads: RuntimeLoads;
  /** Unregistered adapters still holding a slot or a load. */
  private readonly draining = new Set<AdapterEntry>();
  /** Old versions of adapters whose files changed on disk. */
  private readonly versions: AdapterVersions;
  private prefetchedWhileWaiting = 0;
  /** Adapter versions (DeviceStates) an operator pinned: each holds a slot, or is loading into one. */
  private operatorPinned = 0;
  /** URL / hub sources and the disk tier of downloaded folders. */
  readonly sources: AdapterSources;
  /** Materialised merges of this base (adapters/merge-cache.ts). */
  readonly merges: MergeCache;

  /** @param opts see AdapterManagerOptions. */
  constructor(opts: AdapterManagerOptions) {
    this.baseName = opts.baseName;
    this.log = opts.log ?? silentLogger;
    const adapterRoots = opts.adapterRoots ?? [];
    const info = opts.modelInfo;
    const safe = this.baseName.replace(/[^A-Za-z0-9._-]/g, '_');
    this.metrics = new TierMetrics(this.baseName);
    this.sources = opts.sources ?? new AdapterSources({ cacheDir: join(privateTmpDir('adapter-cache'), safe), log: this.log });
    this.sources.metrics = this.metrics;
    this.registry = new AdapterRegistry(this.baseName, info, this.sources, this.log, adapterRoots);
    const d = DEFAULTS.adapterCache;
    this.specs = new SpecCache(info, this.sources, opts.maxCpuLoras ?? d.maxCpuLoras, opts.maxWarmBytes ?? d.maxWarmBytes, this.metrics);
    this.slots = new SlotPool(opts.engine, info.maxLoras, opts.slotWaitMs ?? d.slotWaitMs, this.metrics, this.log);
    this.versions = new AdapterVersions(this.slots, this.specs, this.log);
    this.runtimeLoads = new RuntimeLoads({
      baseName: this.baseName, adapterRoots, allowUrls: opts.allowUrls ?? false, registry: this.registry, specs: this.specs,
      unregister: (name) => this.unregister(name),
    });
    this.slots.onUnload = (h) => {
      if ((h as AdapterEntry).removed) this.draining.delete(h as AdapterEntry);
      this.versions.unloaded(h);
      this.gauge();
    };
    this.merges = new MergeCache(this, info, opts.mergeDir ?? join(privateTmpDir('merges'), safe), {
      maxKept: opts.maxMerges ?? d.maxMerges, timeoutMs: opts.mergeTimeoutMs ?? d.mergeTimeoutMs,
    });
  }

  /** Every registered adapter, in registration order, with its current tier. */
  list(): AdapterInfo[] {
    return [...this.registry.values()].map((e) => this.withTier(e));
  }

  /** The adapter's info (with its current tier), or undefined when the name is not registered. */
  get(name: string): AdapterInfo | undefined {
    const e = this.registry.get(name);
    return e && this.withTier(e);
  }

  /**
   * Make `name` resident (JIT, single-flight) and pin it until the lease is released.
   * @param opts `operator`: an operator pin (AcquireOptions).
   * @throws AdapterError `model_not_found` for an unknown name, `invalid_adapter` for invalid
   *   adapter files or an engine refusal of them, `no_free_slot` when every slot stays pinned for
   *   `slotWaitMs`, `too_many_pins` for an operator pin that would leave no slot free of operator
   *   pins; NativeError (`device_error`, ...) when the engine fails the upload.
   */
  acquire(name: string, opts: AcquireOptions = {}): Promise<AdapterLease> {
    return this.acquireOne(name, true, opts.operator === true);
  }

  /** `acquire`; `retry`: once more when a changed adapter's new version failed and its old one was put back. */
  private async acquireOne(name: string, retry: boolean, operator = false): Promise<AdapterLease> {
    const e = this.registry.get(name);
    if (!e) throw unknownAdapter(`${this.baseName}:${name}`);
    await this.versions.follow(e);
    // The version pinned here is the one leased, even if the files change again meanwhile.
    const dev = e.device;
    if (operator) this.operatorPin(name, dev);  // checked and counted in the same turn: concurrent pins see it
    dev.pins++; // pinned from here on, so a concurrent load can't evict it between load and lease
    this.gauge();
    try {
      if (dev.slot === null) {
        if (!dev.loading) {
          this.metrics.count('device', 'misses');
          dev.loading = this.load(e).finally(() => void (dev.loading = null));
        }
        await dev.loading;
      } else {
        this.metrics.count('device', 'hits');
      }
      if (e.removed) throw unknownAdapter(`${this.baseName}:${name}`, 'It was unloaded.');
    } catch (err) {
      if (operator) this.operatorUnpin(dev);
      this.unpin(e, dev);
      // A new version that failed to load put the old one back (adapters/versions.ts): serve that.
      if (retry && e.device !== dev && e.device.slot !== null && !e.removed) return this.acquireOne(name, false, operator);
      throw err;
    }
    return this.lease(e, dev, operator);
  }

  /**
   * Count an operator pin of version `dev` of `name`; a first one is refused when the other
   * operator-pinned versions hold every slot but one (it would leave none for other adapters).
   * @throws AdapterError `too_many_pins` (409), naming `lora_name`.
   */
  private operatorPin(name: string, dev: DeviceState): void {
    const max = this.slots.maxLoras;
    if (dev.operatorPins === 0 && this.operatorPinned + 1 >= max) {
      throw new AdapterError(
        `adapter ${name}: pinning it would leave no adapter slot for the adapters that are not pinned: ${this.operatorPinned} of the ${max} slots are pinned by an operator, and at least one must stay free for requests; unpin one first (POST /v1/unpin_lora_adapter)`,
        'too_many_pins',
        { param: 'lora_name' },
      );
    }
    if (dev.operatorPins++ === 0) this.operatorPinned++;
  }

  /** Drop one operator pin of `dev` (its `pins` are released by `unpin`). */
  private operatorUnpin(dev: DeviceState): void {
    if (--dev.operatorPins === 0) this.operatorPinned--;
  }

  /**
   * Make every adapter of a composition resident and pin them all at once, or none (no
   * hold-and-wait): while the request waits for slots it holds none, so it cannot stall requests
   * that need fewer. The files are read into the host tier first (holding nothing); then, once
   * enough slots are free or held by unpinned adapters outside the set, they are reserved and
   * every member pinned in one synchronous step, and the cold ones uploaded.
   * @returns one lease per distinct name, in name order.
   * @throws AdapterError `too_many_adapters` (400) at once when the distinct names exceed
   *   `maxLoras` (the composition could never run); otherwise as `acquire` (`no_free_slot` after
   *   `slotWaitMs`).
   */
  acquireAll(names: readonly string[]): Promise<AdapterLease[]> {
    return this.acquireSet(names, true);
  }

  /** `acquireAll`; `retry` as for acquireOne. */
  private async acquireSet(names: readonly string[], retry: boolean): Promise<AdapterLease[]> {
    const distinct = [...new Set(names)].sort();
    const tooMany = slotShortfall(distinct.length, this.slots.maxLoras);
    if (tooMany) throw new AdapterError(tooMany, 'too_many_adapters');
    if (distinct.length <= 1) return Promise.all(distinct.map((n) => this.acquire(n))); // a lone acquire holds nothing while it waits
    const entries = distinct.map((n) => this.registry.get(n) ?? (() => { throw unknownAdapter(`${this.baseName}:${n}`); })());
    await Promise.all(entries.map((e) => this.versions.follow(e)));
    // The files of the members to load are read first; a resident member serves as it is (its new
    // files, when they could not be loaded, must not fail the composition).
    await Promise.all(entries.filter((e) => e.device.slot === null).map((e) => this.specs.fresh(e)));
    const keep = new Set(entries);
    const deadline = performance.now() + this.slots.slotWaitMs;
    let waited = false;
    let cold: AdapterEntry[];
    for (;;) {
      const gone = entries.find((e) => e.removed);
      if (gone) throw unknownAdapter(`${this.baseName}:${gone.name}`, 'It was unloaded.');
      const busy = entries.filter((e) => e.device.loading);
      if (busy.length > 0) {
        await Promise.allSettled(busy.map((e) => e.device.loading)); // another request's load: re-check after it
        continue;
      }
      cold = entries.filter((e) => e.device.slot === null);
      if (this.slots.reserveNow(cold.length, keep)) break;
      // Operator pins outside the set leave too few slots: no request's end frees them, so waiting cannot help.
      const left = this.slots.maxLoras - this.slots.operatorPinned(keep);
      if (entries.length > left) {
        throw new AdapterError(
          `adapters ${distinct.join(', ')}: the composition needs ${entries.length} adapter slots, but operator pins leave only ${left} of the ${this.slots.maxLoras} (POST /v1/unpin_lora_adapter releases them)`,
          'no_free_slot',
          { param: null },
        );
      }
      const wait = deadline - performance.now();
      if (wait <= 0) {
        this.slots.slotTimeouts++;
        const err = new AdapterError(
          `adapters ${distinct.join(', ')}: ${cold.length} more of the ${this.slots.maxLoras} adapter slots are needed, but they are ${this.slots.holders()} (waited ${this.slots.slotWaitMs} ms); retry later`,
          'no_free_slot',
          { param: null },
        );
        for (const e of cold) this.versions.failed(e, err);  // a changed member's old version serves later requests
        throw err;
      }
      if (!waited) this.slots.slotWaits++;
      waited = true;
      await this.slots.waitForRelease(wait);
    }
    const devs = entries.map((e) => e.device);  // the versions pinned (and leased) here
    for (const dev of devs) {
      dev.pins++;
      if (dev.slot !== null) this.metrics.count('device', 'hits');
    }
    this.gauge();
    for (const e of cold) {
      this.metrics.count('device', 'misses');
      const dev = e.device;
      dev.loading = this.load(e, true).finally(() => void (dev.loading = null));
    }
    const results = await Promise.allSettled(cold.map((e) => e.device.loading!));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed || entries.some((e, i) => e.removed || devs[i]!.slot === null)) {
      entries.forEach((e, i) => this.unpin(e, devs[i]));
      // A new version that failed to load put the old one back (adapters/versions.ts): serve that.
      if (retry && entries.some((e, i) => e.device !== devs[i] && e.device.slot !== null && !e.removed)) return this.acquireSet(names, false);
      throw failed ? failed.reason : unknownAdapter(`${this.baseName}:${distinct.join('+')}`, 'It was unloaded.');
    }
    return entries.map((e, i) => this.lease(e, devs[i]!));
  }

  /**
   * Content identity (sha256 of config and weights) of `name`'s files now (SpecCache.identity):
   * keys what is derived from its bytes (materialised merges), never the name or path alone.
   * @throws AdapterError `model_not_found` for an unknown name, `invalid_adapter` for invalid files.
   */
  identity(name: string): Promise<string> {
    const e = this.registry.get(name);
    if (!e) return Promise.reject(unknownAdapter(`${this.baseName}:${name}`));
    return this.specs.identity(e);
  }

  /**
   * For a folder a directory scan found but refused: the `invalid_adapter` error (400) that says
   * why, answered instead of a 404 (AdapterProvider.refusal). Carries `base` and `adapter` for the
   * key check in plugin/resolve.ts. Undefined for a registered or unknown name.
   */
  refusal(name: string): AdapterError | undefined {
    const reason = this.registry.refusal(name);
    if (reason === undefined) return undefined;
    return Object.assign(new AdapterError(`adapter ${name} of ${this.baseName} was not loaded: ${reason}`), { base: this.baseName, adapter: name });
  }

  /** Materialise (once) and acquire a merge of this base's adapters; see AdapterProvider. */
  acquireMerged(composition: Composition, signal?: AbortSignal): Promise<AdapterLease> {
    return this.merges.acquire(composition, signal);
  }

  /** Make a composition's adapters resident and pin them for one request (adapters/pin.ts). */
  pin(composition: Composition | undefined, signal?: AbortSignal): Promise<PinnedComposition> {
    return pinComposition(this, composition, signal);
  }

  /** Fill the disk and host tiers for `name` without taking a slot (errors are logged, not thrown). */
  async prefetch(name: string): Promise<void> {
    const e = this.registry.get(name);
    if (!e || e.device.slot !== null) return;
    await this.specs.get(e).catch((err: Error) => this.log.warn({ adapter: name, err: err.message }, 'adapter prefetch failed'));
  }

  /**
   * Register one adapter folder under `name` (config parsed and validated now, tensors later).
   * @throws AdapterError as AdapterRegistry.registerSource.
   */
  register(name: string, dir: string): Promise<AdapterInfo> {
    return this.registry.registerSource(name, { kind: 'local', path: resolve(dir) });
  }

  /** Register an adapter from a folder, URL or hub id; see AdapterRegistry.registerSource. */
  registerSource(name: string, source: AdapterSource): Promise<AdapterInfo> {
    return this.registry.registerSource(name, source);
  }

  /** Register a materialised merge: like `register`, but flagged synthetic (not listed in /v1/models). */
  async registerSynthetic(name: string, dir: string): Promise<AdapterInfo> {
    const info = await this.registry.registerSource(name, { kind: 'local', path: resolve(dir) }, { synthetic: true });
    info.synthetic = true;
    return info;
  }

  /** Register a folder named `name` copied into a scanned directory after the scan; see AdapterRegistry.discover. */
  discover(name: string): Promise<boolean> {
    return this.registry.discover(name);
  }

  /** Register every adapter sub-folder of `dir`; see AdapterRegistry.scanDirectory. */
  scanDirectory(dir: string): Promise<ScanResult> {
    return this.registry.scanDirectory(dir);
  }

  /**
   * Rescan every directory scanned so far: new sub-folders are registered, adapters whose
   * folder disappeared are unregistered (running requests finish first).
   */
  async rescan(): Promise<{ added: string[]; removed: string[]; skipped: Array<{ name: string; reason: string }> }> {
    const { added, vanished, skipped } = await this.registry.rescan();
    for (const name of vanished) this.unregister(name);
    if (added.length || vanished.length) this.log.info({ added, removed: vanished }, 'adapter directories rescanned');
    return { added, removed: vanished, skipped };
  }

  /**
   * The runtime API's load (`POST /v1/load_lora_adapter`): `location` is an absolute path
   * inside an adapter root (realpath-checked: no `..`, no symlink escape), an http(s) URL
   * (when `allowUrls`) or a hub id `org/name[@rev]` (when a hub endpoint is configured or the
   * Hugging Face cache has it). The tensors are validated now (header, shapes, NaN / Inf values;
   * config fields such as a scaling past float32's range at registration), so a bad file fails this
   * call and leaves nothing registered. Loads of one name run in turn (adapters/runtime-load.ts):
   * of concurrent loads of a name, one succeeds and the others are `adapter_exists`.
   * @throws AdapterError `adapter_exists` (name taken), `invalid_lora_path`, `invalid_adapter`, download codes.
   */
  loadRuntime(name: string, location: string): Promise<AdapterInfo> {
    return this.runtimeLoads.load(name, location);
  }

  /**
   * Forget an adapter: new requests get 404 at once; running requests keep their slot, which is
   * freed when the last of them ends. Synthetic merges are not affected.
   * @returns false when the name is not registered.
   */
  unregister(name: string): boolean {
    const e = this.registry.remove(name);
    if (!e) return false;
    this.specs.drop(e);
    if (e.device.pins === 0 && e.device.slot !== null) this.slots.unload(e, 'adapter unloaded');
    else if (e.device.slot !== null || e.device.loading) this.draining.add(e);
    this.log.info({ adapter: name, draining: e.device.pins }, 'adapter unregistered');
    return true;
  }

  /** Whether an unregistered adapter still has requests or a load in flight (its files may still be read). */
  isDraining(name: string): boolean {
    for (const e of this.draining) if (e.info.name === name) return true;
    return false;
  }

  /** Counters and current occupancy (a snapshot). */
  stats(): AdapterManagerStats {
    const d = this.metrics.counts.device;
    const h = this.metrics.counts.host;
    return {
      registered: this.registry.size, resident: this.slots.size, pinned: this.pinnedCount(),
      hits: d.hits, loads: d.misses, engineLoads: d.loads, loadFailures: d.failures, evictions: d.evictions,
      slotWaits: this.slots.slotWaits, slotTimeouts: this.slots.slotTimeouts,
      host: { entries: this.specs.size, bytes: this.specs.bytes, hits: h.hits, misses: h.misses, loads: h.loads, evictions: h.evictions },
      disk: this.sources.stats(),
      prefetchedWhileWaiting: this.prefetchedWhileWaiting,
      draining: this.draining.size + this.versions.size,
    };
  }

  /** Slots the manager counts as used (resident + loads holding a reservation). */
  get slotsInUse(): number {
    return this.slots.slotsInUse;
  }

  private withTier(e: AdapterEntry): AdapterInfo {
    const i = e.info;
    i.tier = e.device.slot !== null ? 'device' : e.host.spec ? 'host' : this.sources.isOnDisk(e.source) ? 'disk' : 'remote';
    i.slot = e.device.slot;
    i.pins = e.device.pins;
    i.served = e.device.served;
    i.lastUsedAt = e.device.lastUsedAt;
    return i;
  }

  private pinnedCount(): number {
    let pinned = 0;
    for (const e of this.registry.values()) if (e.device.pins > 0) pinned++;
    for (const e of this.draining) if (e.device.pins > 0) pinned++;
    return pinned + this.versions.size;  // an old version is pinned until it is unloaded
  }

  private gauge(): void {
    this.metrics.occupancy({ device: this.slots.size, host: this.specs.size, disk: this.sources.stats().entries }, this.pinnedCount());
  }

  /** Release one pin of `dev` (`e`'s current version, or an old one: AdapterVersions.release). */
  private unpin(e: AdapterEntry, dev: DeviceState = e.device): void {
    if (this.versions.release(e, dev)) {
      this.gauge();
      return;
    }
    e.device.pins--;
    this.slots.touch(e);
    e.device.lastUsedAt = Date.now();
    if (e.device.pins === 0) {
      if (e.removed && e.device.slot !== null) this.slots.unload(e, 'unloaded adapter drained');
      if (e.removed && !e.device.loading) this.draining.delete(e);
      this.slots.wake();
    }
    this.gauge();
  }

  /** A lease on pinned, resident version `dev` of `e` (one pin, released once; `operator`: an operator pin of it too). */
  private lease(e: AdapterEntry, dev: DeviceState = e.device, operator = false): AdapterLease {
    dev.lastUsedAt = Date.now();
    dev.served++;
    if (dev === e.device) this.slots.touch(e);
    if (e.source.kind !== 'local') this.sources.touch(e.source);
    let released = false;
    return {
      name: e.name,
      slot: dev.slot!,
      release: () => {
        if (released) return;
        released = true;
        if (operator) this.operatorUnpin(dev);
        this.unpin(e, dev);
      },
    };
  }

  /**
   * Host tier (filled again if the files changed on disk), then a slot (evicting if needed,
   * unless `preReserved` by acquireAll), then the upload. Leaves nothing behind on failure.
   */
  private async load(e: AdapterEntry, preReserved = false): Promise<void> {
    let reserved = preReserved;
    try {
      const spec = await this.specs.fresh(e);
      const stamp = e.host.identity?.stamp ?? null;  // of the files `spec` was checked from
      if (!reserved) {
        if (await this.slots.reserve(e.name)) this.prefetchedWhileWaiting++;
        reserved = true;
      }
      if (e.removed) throw unknownAdapter(`${this.baseName}:${e.name}`, 'It was unloaded.');
      await this.slots.upload(e, spec);
      e.device.stamp = stamp;
      this.versions.loaded(e);
      this.gauge();
    } catch (err) {
      this.metrics.count('device', 'failures');
      if (reserved) this.slots.unreserve();
      this.log.warn({ adapter: e.name, err: (err as Error).message }, 'adapter load failed');
      this.versions.failed(e, err as Error);
      throw err;
    }
  }
}
