/**
 * The host tier, named for what it holds: validated load specs.
 *
 * For each recently used adapter it keeps the `AdapterLoadSpec` built from the safetensors
 * header (every tensor's offset, dtype and shape, checked against the base model), so an upload
 * needs no parse or validation; a fill also checks the tensors' values (no NaN or Inf:
 * adapters/finite-weights.ts). The weights stay in their file: the engine's `loadAdapter`
 * takes a path and reads the tensors itself. A fill reads the weights file once so the upload
 * finds it in the OS page cache instead of on the disk; `maxWarmBytes` bounds the bytes of weights
 * files counted as pre-read this way (the OS may drop them sooner: it is a budget of disk reads
 * avoided, not of memory this process holds). Holding the weights in process memory would need a
 * native upload from buffers; until then this tier holds specs only.
 *
 * LRU bounded by `maxEntries` adapters and `maxWarmBytes`; a fill first makes sure the adapter's
 * folder is on disk (adapters/sources.ts re-downloads a remote adapter the disk tier evicted).
 * Concurrent gets of one adapter share one fill.
 *
 * Content identity (adapters/content-id.ts): a fill records the files' stamp and the sha256 of
 * the bytes it read. When the files change on disk (between evictions, or under a name unloaded
 * and loaded again), `fresh` and `identity` notice the new stamp and fill again, parsing the
 * config again if it changed too: nothing derived from the old bytes is reused.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AdapterLoadSpec, ModelInfo } from '../native/types.ts';
import { contentHash, fileStamp } from './content-id.ts';
import { AdapterError } from './errors.ts';
import { checkFiniteWeights } from './finite-weights.ts';
import type { TierMetrics } from './metrics.ts';
import { buildLoadSpecWithHeader, parseAdapterDir, type ParsedAdapter } from './peft.ts';
import type { AdapterSource, AdapterSources } from './sources.ts';
import type { AdapterInfo } from './types.ts';

/** Fills tried when the adapter's files change while they are read (SpecCache.fill). */
const FILL_ATTEMPTS = 3;

/** The host tier's state of one adapter (kept on its registry entry). */
export interface SpecState {
  /** The validated load spec, or null when not in the tier. */
  spec: AdapterLoadSpec | null;
  /** Bytes of its weights file, pre-read at the fill (0 when not in the tier). */
  bytes: number;
  /** LRU clock value of the last use. */
  lastUsed: number;
  /** The fill in progress, shared by concurrent gets. */
  filling: Promise<AdapterLoadSpec> | null;
  /** Content identity of the bytes the last fill read: the files' stamp and their sha256. */
  identity: { stamp: string; hash: string } | null;
}

/** What the tier needs to know of an adapter. */
export interface SpecCacheItem {
  parsed: ParsedAdapter;
  /** fileStamp when `parsed` was read; a fill parses the config again when the stamp changed. */
  parsedStamp: string;
  /** Rank, alpha and targets shown by /v1/models, refreshed with `parsed`. */
  info: AdapterInfo;
  source: AdapterSource;
  /** Unregistered: a fill that completes is not kept. */
  removed: boolean;
  host: SpecState;
}

/** A new, empty host-tier state. */
export function emptySpecState(): SpecState {
  return { spec: null, bytes: 0, lastUsed: 0, filling: null, identity: null };
}

/** Host tier: LRU of validated load specs of one base model's adapters. */
export class SpecCache {
  private readonly held = new Set<SpecCacheItem>();
  private clock = 0;

  /**
   * @param info The base model's shapes (specs are validated against them).
   * @param sources The disk tier: a fill makes the adapter's folder local first.
   * @param maxEntries Adapters kept (config `adapterCache.maxCpuLoras`).
   * @param maxWarmBytes Bytes of weights files counted as pre-read (config `adapterCache.maxWarmBytes`).
   * @param metrics Where the `host` hits, misses, fills, failures and evictions are counted.
   */
  constructor(
    private readonly info: ModelInfo,
    private readonly sources: AdapterSources,
    private readonly maxEntries: number,
    private readonly maxWarmBytes: number,
    private readonly metrics: TierMetrics,
  ) {}

  /** Adapters in the tier. */
  get size(): number {
    return this.held.size;
  }

  /** Bytes of the weights files of the adapters in the tier. */
  get bytes(): number {
    let total = 0;
    for (const h of this.held) total += h.host.bytes;
    return total;
  }

  /**
   * The adapter's validated load spec: from the tier, or filled now (download when the disk tier
   * lost it, header parse and validation, one read of the weights file).
   * @throws AdapterError (4xx) naming the file and tensor when the weights file is invalid
   *   (header, shapes, NaN or Inf values: adapters/finite-weights.ts), and download errors;
   *   nothing is kept on failure.
   */
  get(item: SpecCacheItem): Promise<AdapterLoadSpec> {
    const h = item.host;
    if (h.spec) {
      this.metrics.count('host', 'hits');
      h.lastUsed = ++this.clock;
      return Promise.resolve(h.spec);
    }
    if (h.filling) return h.filling;
    this.metrics.count('host', 'misses');
    h.filling = this.fill(item).finally(() => void (h.filling = null));
    return h.filling;
  }

  /**
   * `get`, after checking the files still have the stamp the spec was built from (else the spec
   * is dropped and filled again from the new bytes). For uploads.
   */
  async fresh(item: SpecCacheItem): Promise<AdapterLoadSpec> {
    const spec = await this.get(item);
    const id = item.host.identity;
    if (!id || (await fileStamp(item.parsed.dir)) === id.stamp) return spec;
    this.drop(item);
    return this.get(item);
  }

  /**
   * Content identity (sha256 of adapter_config.json and the weights) of the adapter's files now:
   * filled again when they changed since the last fill. Keys what is derived from the bytes.
   * @throws as `get`.
   */
  async identity(item: SpecCacheItem): Promise<string> {
    const id = item.host.identity;
    if (item.host.spec && id && (await fileStamp(item.parsed.dir)) === id.stamp) return id.hash;
    this.drop(item);
    await this.get(item);
    return item.host.identity!.hash;
  }

  /** Remove the adapter from the tier (`evicted`: counted as an LRU eviction). */
  drop(item: SpecCacheItem, evicted = false): void {
    if (!this.held.delete(item)) return;
    item.host.spec = null;
    item.host.bytes = 0;
    if (evicted) this.metrics.count('host', 'evictions');
  }

  private async fill(item: SpecCacheItem): Promise<AdapterLoadSpec> {
    await this.sources.ensureLocal(item.source); // re-downloads into the same folder after a disk eviction
    const t0 = performance.now();
    try {
      // NOTE(why): an operator replacing the files (rm + cp, or a rename over them) may do so
      // between the checks and the read: a fill whose files changed while it ran starts over
      // (parsing the config again), a file gone at the read is the adapter's 400, never a 500.
      for (let attempt = 1; ; attempt++) {
        const spec = await this.fillOnce(item, t0);
        if (spec) return spec;
        if (attempt >= FILL_ATTEMPTS) {
          throw new AdapterError(`${item.parsed.dir}: the adapter's files kept changing while they were read (${FILL_ATTEMPTS} attempts)`);
        }
      }
    } catch (err) {
      this.metrics.count('host', 'failures');
      throw err;
    }
  }

  /** One fill: the spec, or null when the files changed while they were read (the caller tries again). */
  private async fillOnce(item: SpecCacheItem, t0: number): Promise<AdapterLoadSpec | null> {
    const dir = item.parsed.dir;
    const stamp = await fileStamp(dir);
    if (stamp !== item.parsedStamp) {
      // the files changed since the config was parsed: parse it again (400 if now invalid)
      item.parsed = await parseAdapterDir(dir, this.info);
      item.parsedStamp = stamp;
      const cfg = item.parsed.config;
      Object.assign(item.info, { rank: cfg.r, alpha: cfg.lora_alpha, useRslora: Boolean(cfg.use_rslora), targetModules: [...item.parsed.targetKinds] });
    }
    const { spec, header } = await buildLoadSpecWithHeader(item.parsed, this.info);
    // NOTE(why): read once so the engine's upload finds the bytes in the OS page cache (see
    // header); the same bytes give the content identity and are checked for NaN / Inf.
    const read = (path: string) =>
      readFile(path).catch((err: NodeJS.ErrnoException) => {
        throw new AdapterError(`${path}: ${err.code === 'ENOENT' ? 'not found' : `cannot read (${err.code ?? String(err)})`}`);
      });
    const [weights, config] = await Promise.all([read(spec.path), read(join(dir, 'adapter_config.json'))]);
    if ((await fileStamp(dir)) !== stamp) return null;  // replaced while read: the bytes may not be the checked ones
    await checkFiniteWeights(spec, header, weights);
    const bytes = weights.length;
    item.host.identity = { stamp, hash: contentHash(config, weights) };
    this.metrics.count('host', 'loads');
    this.metrics.observeLoad('host', (performance.now() - t0) / 1000);
    if (!item.removed) this.insert(item, spec, bytes);
    return spec;
  }

  private insert(item: SpecCacheItem, spec: AdapterLoadSpec, bytes: number): void {
    item.host.spec = spec;
    item.host.bytes = bytes;
    item.host.lastUsed = ++this.clock;
    this.held.add(item);
    let total = this.bytes;
    const lru = [...this.held].filter((h) => h !== item).sort((a, b) => a.host.lastUsed - b.host.lastUsed);
    for (const h of lru) {
      if (this.held.size <= this.maxEntries && total <= this.maxWarmBytes) break;
      total -= h.host.bytes;
      this.drop(h, true);
    }
  }
}
