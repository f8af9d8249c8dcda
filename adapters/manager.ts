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
import type { ModelInfo, NativeEngine } from '../native/types.ts';
import { AdapterError, ModelNotFoundError, OpenLoraError, ServiceUnavailableError } from '../plugin/errors.ts';
import { tmpdir } from 'node:os';
import type { Composition } from './composition.ts';
import { MergeCache } from './merge-cache.ts';
import { adapterMetrics, type Tier } from './metrics.ts';
import { buildLoadSpec, parseAdapterDir, type ParsedAdapter } from './peft.ts';
import { AdapterSources, confinePath, sourceOf, type AdapterSource } from './sources.ts';
import type { AdapterLoadSpec } from '../native/types.ts';
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

