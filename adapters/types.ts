/**
 * The adapter subsystem's public surface, as the plugin sees it.
 *
 * `AdapterManager` (adapters/manager.ts) implements `AdapterProvider` for one base model.
 */
import type { Composition } from './composition.ts';
import type { PinnedComposition } from './pin.ts';

/** The subset of a pino logger the adapter subsystem uses: `log.warn({fields}, 'message')`. */
export type Logger = Record<'info' | 'warn' | 'error', (obj: object, msg: string) => void>;

/** A logger that drops everything. */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };

/** A known adapter: where it lives and what its PEFT config says. */
export interface AdapterInfo {
  /** Name clients use after `BASE:` (the folder name for scanned directories). */
  name: string;
  /** The base model name this adapter belongs to. */
  base: string;
  /** Folder holding adapter_config.json and adapter_model.safetensors. */
  dir: string;
  /** PEFT `r` (default rank; per-module ranks may differ through rank_pattern). */
  rank: number;
  /** PEFT `lora_alpha`. */
  alpha: number;
  /** Whether the adapter uses rsLoRA scaling (alpha / sqrt(r)). */
  useRslora: boolean;
  /** Module kinds the adapter targets, e.g. ["q_proj", "v_proj"]. */
  targetModules: string[];
  /** Unix seconds when the adapter became known. */
  created: number;
  /** True for a materialised merge (not listed in /v1/models; addressed by its composition). */
  synthetic?: boolean;
  /** Where it was registered from: the folder, URL or hub id `org/name@rev` (default: `dir`). */
  root?: string;
  /** The kind of source: a local folder, an http(s) URL or a hub id. */
  source?: 'local' | 'url' | 'hub';
  /**
   * Its fastest tier when last listed: `device` (in an engine slot), `host` (spec parsed and
   * validated, file read), `disk` (files on disk only), `remote` (a download evicted from disk).
   */
  tier?: 'disk' | 'host' | 'device' | 'remote';
  /** Size of adapter_model.safetensors in bytes (read at registration). */
  bytes?: number;
  /** Its device slot while `tier` is `device`, else null (set when listed). */
  slot?: number | null;
  /** Pins when last listed: live leases plus acquires in progress (a pinned adapter is never evicted). */
  pins?: number;
  /** Acquires that got a lease: requests served with this adapter (compositions count once per member). */
  served?: number;
  /** Unix time (ms) of its last acquire or release; 0 = never used. */
  lastUsedAt?: number;
}

/** A pinned, resident adapter: `slot` stays valid until `release()` is called (exactly once). */
export interface AdapterLease {
  name: string;
  slot: number;
  release(): void;
}

/** Options of `AdapterProvider.acquire`. */
export interface AcquireOptions {
  /**
   * An operator pin (POST /v1/pin_lora_adapter), held until unpinned: refused with AdapterError
   * `too_many_pins` when it would leave no slot free of operator pins (at least one slot always
   * serves the other adapters), and named as such in the 503 of a load that finds every slot taken.
   */
  operator?: boolean;
}

/** What the plugin needs from the adapter subsystem for one base model. */
export interface AdapterProvider {
  /** Every known adapter of this base. */
  list(): AdapterInfo[];
  /** The adapter, or undefined when unknown. */
  get(name: string): AdapterInfo | undefined;
  /**
   * Make the adapter resident in a device slot (loading it just in time, one load for
   * concurrent callers) and pin it. Throws AdapterError `model_not_found` for unknown names,
   * `invalid_adapter` (message naming the file/field) for invalid adapter files, `no_free_slot`
   * when every slot stays pinned, `too_many_pins` for an operator pin that would leave no slot
   * free of operator pins (adapters/errors.ts).
   */
  acquire(name: string, opts?: AcquireOptions): Promise<AdapterLease>;
  /**
   * Materialise a merge of this base's adapters (linear, ties, dare_*, magnitude_prune, svd
   * variants) once, cache it as a synthetic adapter keyed by the canonical spec, and acquire it
   * like any adapter. Throws AdapterError (`invalid_merge`, `invalid_adapter`) naming the bad field
   * (`merge.density`, rank mismatch, ...). `signal` aborts when the request leaves: a merge no
   * request waits for any more stops computing (adapters/merge-cache.ts).
   */
  acquireMerged(composition: Composition, signal?: AbortSignal): Promise<AdapterLease>;
  /**
   * Acquire every named adapter at once or none (no hold-and-wait while waiting for slots): one
   * lease per distinct name, in name order. Refuses (400) more distinct names than slots.
   */
  acquireAll?(names: readonly string[]): Promise<AdapterLease[]>;
  /**
   * For a name a directory scan found but refused (DoRA, modules_to_save, bad JSON, pickle-only,
   * ...): the 400 that says why, answered instead of a 404. Undefined otherwise.
   */
  refusal?(name: string): Error | undefined;
  /**
   * Make every adapter of `composition` resident and pin it for one request (undefined: the base
   * model alone, nothing pinned); adapters/pin.ts decides slots and how the engine combines them.
   * Throws what `acquire` / `acquireMerged` throw, holding nothing. `signal`: see acquireMerged.
   */
  pin(composition: Composition | undefined, signal?: AbortSignal): Promise<PinnedComposition>;
  /** Fill the disk and host tiers for `name` without taking a slot (errors are logged; the tier tells). */
  prefetch?(name: string): Promise<void>;
  /**
   * Register an unknown `name` found as a folder in a scanned adapter directory (copied there
   * after start-up); resolves whether one was found. Never throws (a refusal is remembered).
   */
  discover?(name: string): Promise<boolean>;
  /** Tier counters for the adapter listing (AdapterManager.stats). */
  stats?(): object;
}

/** The runtime load/unload API's view of a provider (POST /v1/load_lora_adapter, /v1/unload_lora_adapter). */
export interface RuntimeAdapterProvider extends AdapterProvider {
  /** Register `name` from an absolute path inside the adapter roots, a URL or a hub id. Throws AdapterError (adapters/errors.ts). */
  loadRuntime(name: string, location: string): Promise<AdapterInfo>;
  /** Forget `name` (running requests finish first); false when unknown. */
  unregister(name: string): boolean;
  /** Rescan the scanned adapter directories. */
  rescan(): Promise<{ added: string[]; removed: string[]; skipped: Array<{ name: string; reason: string }> }>;
}
