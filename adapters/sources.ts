/**
 * Where adapter folders come from, and the disk tier that holds downloaded ones.
 *
 * - `local`: a folder on disk (scanned adapter directory, config `{name, path}`, runtime path
 *   confined to the adapter roots by `confinePath`).
 * - `url`: an HTTP(S) folder URL holding adapter_config.json and adapter_model.safetensors.
 * - `hub`: `org/name[@revision]`, found offline in a Hugging Face cache
 *   (`models--org--name/snapshots/REV/`, `refs/REV` naming the commit), else fetched from
 *   `{endpoint}/{org}/{name}/resolve/{rev}/{file}` (the Hugging Face `resolve` layout).
 *
 * Downloads go to `<cacheDir>/.tmp-*` then the folder is renamed into place: a crash leaves
 * only a `.tmp-*` folder, which is never trusted (and swept at start). The disk tier is an LRU
 * bounded in bytes over the downloaded folders; local folders are not counted (they are the
 * source itself).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DEFAULTS } from '../config/schema.ts';
import { AdapterError, type AdapterErrorCode } from './errors.ts';
import { TierMetrics } from './metrics.ts';
import type { Logger } from './types.ts';

const LORA_PATH = { param: 'lora_path' };

/** Where one adapter comes from. */
export type AdapterSource =
  | { kind: 'local'; path: string }
  | { kind: 'url'; url: string; sha256?: string }
  | { kind: 'hub'; repo: string; revision: string; sha256?: string };

/** The two files of a PEFT LoRA folder we fetch. */
export const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'] as const;

/** Hub ids: `org/name` or `org/name@revision`. */
export const HUB_ID_RE = /^([A-Za-z0-9][A-Za-z0-9._-]*)\/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@([A-Za-z0-9._\/-]+))?$/;

/** Options of `AdapterSources`. */
export interface SourceOptions {
  /** Download cache folder (the disk tier). */
  cacheDir: string;
  /** Disk tier bound over downloaded folders (bytes; default: config/schema.ts adapterCache.maxDiskBytes). */
  maxDiskBytes?: number;
  /** Hub endpoint, e.g. `https://huggingface.co`; undefined: hub ids resolve only from the HF cache. */
  hubEndpoint?: string;
  /** Hugging Face cache (`hub/` folder) searched offline first (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  hfCacheDir?: string;
  /** Largest download accepted, per file (bytes; default: config/schema.ts adapterSources.maxDownloadBytes). */
  maxDownloadBytes?: number;
  /** Per-file time limit: connect + whole body (ms; default: config/schema.ts adapterSources.downloadTimeoutMs). */
  downloadTimeoutMs?: number;
  log?: Logger;
}

/** The default Hugging Face hub cache folder, from the environment as huggingface_hub reads it. */
export function defaultHfCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface', 'hub');
}

/** Parse `org/name[@rev]`; undefined when it is not a hub id. */
export function parseHubId(id: string): { repo: string; revision: string } | undefined {
  const m = HUB_ID_RE.exec(id);
  if (!m || id.includes('..')) return undefined;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? 'main' };
}

/**
 * Check that `p` lies inside one of `roots` after resolving symlinks (realpath on both sides).
 * @returns the real path.
 * @throws AdapterError 400 naming the path: relative, `..` segments, outside every root, absent.
 */
export async function confinePath(p: string, roots: readonly string[]): Promise<string> {
  if (!isAbsolute(p)) throw new AdapterError(`lora_path ${JSON.stringify(p)}: must be an absolute path`, 'invalid_lora_path', LORA_PATH);
  if (p.split(/[\\/]/).includes('..')) throw new AdapterError(`lora_path ${JSON.stringify(p)}: ".." segments are not allowed`, 'invalid_lora_path', LORA_PATH);
  if (roots.length === 0) throw new AdapterError('no adapter roots are configured (adapterRoots): runtime loads from paths are disabled', 'invalid_lora_path', LORA_PATH);
  let at: { real: string; inside: boolean };
  try {
    at = await realPathIn(p, roots);
  } catch (err) {
    throw new AdapterError(`lora_path ${JSON.stringify(p)}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, 'invalid_lora_path', LORA_PATH);
  }
  if (at.inside) return at.real;
  throw new AdapterError(`lora_path ${JSON.stringify(p)}: ${outsideRoots(at.real, roots)}`, 'invalid_lora_path', LORA_PATH);
}

/**
 * The real path of `p` (symlinks resolved) and whether it lies inside the real path of one of
 * `roots` (roots that cannot be resolved are passed over). The one rule of adapter roots: runtime
 * loads (`confinePath`) and the folders of scanned directories (adapters/registry.ts) follow it.
 * @throws the realpath error (ENOENT, EACCES, ...) when `p` cannot be resolved.
 */
export async function realPathIn(p: string, roots: readonly string[]): Promise<{ real: string; inside: boolean }> {
  const real = await realpath(p);
  for (const root of roots) {
    const r = await realpath(root).catch(() => undefined);
    if (!r) continue;
    const rel = relative(r, real);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel) && !rel.split(sep).includes('..'))) return { real, inside: true };
  }
  return { real, inside: false };
}

/** Why a folder resolving to `real` is refused: the words of a path outside `roots`. */
export function outsideRoots(real: string, roots: readonly string[]): string {
  return `resolves to ${real}, outside the adapter roots (${roots.join(', ')})`;
}

interface DiskEntry {
  key: string;
  dir: string;
  bytes: number;
  lastUsed: number;
}

/** Counters of the disk tier. */
export interface DiskStats { entries: number; bytes: number; hits: number; misses: number; downloads: number; downloadFailures: number; evictions: number }

/** The sources of one base model's adapters plus the downloaded-folder disk tier (LRU by bytes). */
export class AdapterSources {
  private readonly opts: Required<Omit<SourceOptions, 'hubEndpoint' | 'log'>> & Pick<SourceOptions, 'hubEndpoint'>;
  private readonly log: Logger;
  private readonly disk = new Map<string, DiskEntry>();
  private readonly inFlight = new Map<string, Promise<string>>();
  private clock = 0;
  private ready: Promise<void> | undefined;
  /** Where the disk tier's events are counted (the manager hands over its own: adapters/metrics.ts). */
  metrics = new TierMetrics(null);

  constructor(opts: SourceOptions) {
    this.opts = {
      cacheDir: opts.cacheDir,
      maxDiskBytes: opts.maxDiskBytes ?? DEFAULTS.adapterCache.maxDiskBytes,
      hubEndpoint: opts.hubEndpoint?.replace(/\/+$/, ''),
      hfCacheDir: opts.hfCacheDir ?? defaultHfCacheDir(),
      maxDownloadBytes: opts.maxDownloadBytes ?? DEFAULTS.adapterSources.maxDownloadBytes,
      downloadTimeoutMs: opts.downloadTimeoutMs ?? DEFAULTS.adapterSources.downloadTimeoutMs,
    };
    this.log = opts.log ?? { info() {}, warn() {}, error() {} };
  }

  /** Whether hub ids can be fetched (an endpoint is configured). */
  get hubEnabled(): boolean {
    return this.opts.hubEndpoint !== undefined;
  }

  /** Disk tier counters and occupancy. */
  stats(): DiskStats {
    let bytes = 0;
    for (const e of this.disk.values()) bytes += e.bytes;
    const c = this.metrics.counts.disk;
    return { entries: this.disk.size, bytes, hits: c.hits, misses: c.misses, downloads: c.loads, downloadFailures: c.failures, evictions: c.evictions };
  }

  /** Whether the source's folder is on disk now (local sources always are). */
  isOnDisk(src: AdapterSource): boolean {
    return src.kind === 'local' || this.disk.has(this.keyOf(src));
  }

  /**
   * The local folder of `src`, downloading it (single-flight) when needed.
   * @throws AdapterError naming the URL/file: HTTP status, size limit, time-out, sha256 mismatch.
   */
  async ensureLocal(src: AdapterSource): Promise<string> {
    if (src.kind === 'local') return src.path;
    await (this.ready ??= this.init());
    const key = this.keyOf(src);
    const have = this.disk.get(key);
    if (have) {
      this.metrics.count('disk', 'hits');
      have.lastUsed = ++this.clock;
      return have.dir;
    }
    if (src.kind === 'hub') {
      const offline = await this.findInHfCache(src.repo, src.revision);
      if (offline) return offline;
      if (!this.hubEnabled) {
        throw new AdapterError(`hub adapter ${src.repo}@${src.revision}: not in the Hugging Face cache ${this.opts.hfCacheDir} and no hub endpoint is configured (adapterSources.hubEndpoint)`, 'adapter_not_found');
      }
    }
    let p = this.inFlight.get(key);
    if (!p) {
      this.metrics.count('disk', 'misses');
      p = this.download(key, src).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, p);
    }
    return p;
  }

  /** The cache key of a remote source: a readable prefix plus a hash of the location. */
  keyOf(src: AdapterSource): string {
    const loc = src.kind === 'url' ? src.url : src.kind === 'hub' ? `${this.opts.hubEndpoint}|${src.repo}@${src.revision}` : src.path;
    const label = src.kind === 'hub' ? `hub--${src.repo.replace('/', '--')}` : 'url';
    return `${label}-${createHash('sha256').update(loc).digest('hex').slice(0, 16)}`;
  }

  /** Folder of `models--org--name/snapshots/REV` holding both files, or undefined. */
  async findInHfCache(repo: string, revision: string): Promise<string | undefined> {
    const base = join(this.opts.hfCacheDir, `models--${repo.replace('/', '--')}`);
    let rev = revision;
    const ref = await readFile(join(base, 'refs', revision), 'utf8').catch(() => undefined);
    if (ref) rev = ref.trim();
    if (rev.includes('/') || rev.includes('..')) return undefined;
    const dir = join(base, 'snapshots', rev);
    for (const f of ADAPTER_FILES) {
      if (!(await stat(join(dir, f)).then((s) => s.isFile(), () => false))) return undefined;
    }
    this.log.info({ repo, revision, dir }, 'hub adapter found in the Hugging Face cache (offline)');
    return dir;
  }

  /** Scan the cache folder: complete folders join the LRU, `.tmp-*` leftovers of a crash are removed. */
  private async init(): Promise<void> {
    await mkdir(this.opts.cacheDir, { recursive: true });
    for (const name of await readdir(this.opts.cacheDir)) {
      const dir = join(this.opts.cacheDir, name);
      if (name.startsWith('.tmp-')) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      let bytes = 0;
      let complete = true;
      for (const f of ADAPTER_FILES) {
        const s = await lstat(join(dir, f)).catch(() => undefined);
        if (!s?.isFile()) complete = false;
        else bytes += s.size;
      }
      if (complete) this.disk.set(name, { key: name, dir, bytes, lastUsed: ++this.clock });
    }
  }

  private urlsOf(src: AdapterSource): Array<[string, string]> {
    if (src.kind === 'url') {
      const base = src.url.endsWith('/') ? src.url : src.url + '/';
      return ADAPTER_FILES.map((f) => [f, new URL(f, base).href]);
    }
    if (src.kind === 'hub') {
      const rev = encodeURIComponent(src.revision);
      return ADAPTER_FILES.map((f) => [f, `${this.opts.hubEndpoint}/${src.repo}/resolve/${rev}/${f}`]);
    }
    throw new Error('local sources are not downloaded');
  }

  private async download(key: string, src: AdapterSource): Promise<string> {
    const t0 = performance.now();
    const tmp = join(this.opts.cacheDir, `.tmp-${key}-${randomBytes(4).toString('hex')}`);
    const final = join(this.opts.cacheDir, key);
    try {
      await mkdir(tmp, { recursive: true });
      let bytes = 0;
      for (const [file, url] of this.urlsOf(src)) {
        const sha = file === 'adapter_model.safetensors' ? src.kind !== 'local' ? src.sha256 : undefined : undefined;
        bytes += await this.fetchFile(url, join(tmp, file), sha);
      }
      await this.makeRoom(bytes);
      await rm(final, { recursive: true, force: true });
      await rename(tmp, final); // atomic: the folder appears complete or not at all
      this.disk.set(key, { key, dir: final, bytes, lastUsed: ++this.clock });
      this.metrics.count('disk', 'loads');
      this.metrics.observeLoad('disk', (performance.now() - t0) / 1000);
      this.log.info({ key, bytes, ms: Math.round(performance.now() - t0) }, 'adapter downloaded');
      return final;
    } catch (err) {
      await rm(tmp, { recursive: true, force: true }).catch(() => {});
      this.metrics.count('disk', 'failures');
      throw err;
    }
  }

  /** Stream one file to `dest`, enforcing size and time limits and an optional sha256. @returns bytes. */
  private async fetchFile(url: string, dest: string, sha256?: string): Promise<number> {
    const limit = this.opts.maxDownloadBytes;
    const ms = this.opts.downloadTimeoutMs;
    const fail = (msg: string, code: AdapterErrorCode = 'adapter_download_failed'): never => {
      throw new AdapterError(`${url}: ${msg}`, code);
    };
    const signal = AbortSignal.timeout(ms);
    let res: Response;
    try {
      res = await fetch(url, { signal, redirect: 'follow' });
    } catch (err) {
      return fail(signal.aborted ? `timed out after ${ms} ms` : `cannot fetch (${(err as Error).cause ?? (err as Error).message})`, signal.aborted ? 'adapter_download_timeout' : 'adapter_download_failed');
    }
    if (res.status === 404) fail('not found (HTTP 404)', 'adapter_not_found');
    if (!res.ok || !res.body) fail(`HTTP ${res.status} ${res.statusText}`);
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > limit) fail(`${declared} bytes exceeds the download limit of ${limit} bytes (adapterSources.maxDownloadBytes)`, 'adapter_too_large');
    const hash = createHash('sha256');
    let got = 0;
    let lastLog = performance.now();
    const log = this.log;
    const meter = async function* (body: AsyncIterable<Uint8Array>) {
      for await (const chunk of body) {
        got += chunk.length;
        if (got > limit) fail(`more than ${limit} bytes: exceeds the download limit (adapterSources.maxDownloadBytes)`, 'adapter_too_large');
        hash.update(chunk);
        if (performance.now() - lastLog > 2000) {
          lastLog = performance.now();
          log.info({ url, bytes: got, total: Number.isFinite(declared) ? declared : undefined,
            pct: Number.isFinite(declared) ? Math.round((100 * got) / declared) : undefined }, 'adapter download progress');
        }
        yield chunk;
      }
    };
    try {
      await pipeline(Readable.fromWeb(res.body as never), meter, createWriteStream(dest));
    } catch (err) {
      if (err instanceof AdapterError) throw err;
      fail(signal.aborted ? `timed out after ${ms} ms (${got} bytes received)` : `download failed after ${got} bytes (${(err as Error).message})`, signal.aborted ? 'adapter_download_timeout' : 'adapter_download_failed');
    }
    if (Number.isFinite(declared) && got !== declared) fail(`truncated download: ${got} of ${declared} bytes`);
    if (sha256 && hash.digest('hex') !== sha256.toLowerCase()) fail(`sha256 mismatch (expected ${sha256})`, 'adapter_checksum_mismatch');
    return got;
  }

  /** Evict least recently used downloaded folders until `bytes` more fit. */
  private async makeRoom(bytes: number): Promise<void> {
    let total = 0;
    for (const e of this.disk.values()) total += e.bytes;
    const lru = [...this.disk.values()].sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of lru) {
      if (total + bytes <= this.opts.maxDiskBytes) break;
      this.disk.delete(e.key);
      total -= e.bytes;
      this.metrics.count('disk', 'evictions');
      this.log.info({ key: e.key, bytes: e.bytes }, 'downloaded adapter evicted from the disk cache (LRU)');
      await rm(e.dir, { recursive: true, force: true });
    }
  }

  /** Mark a downloaded folder used (LRU). */
  touch(src: AdapterSource): void {
    const e = this.disk.get(this.keyOf(src));
    if (e) e.lastUsed = ++this.clock;
  }

  /** Ensure the cache dir exists (tests / eager start). */
  async open(): Promise<void> {
    await (this.ready ??= this.init());
  }

  /** The cache folder. */
  get cacheDir(): string {
    return this.opts.cacheDir;
  }
}

/** Resolve a config/runtime location string to a source (absolute paths, URLs, hub ids). */
export function sourceOf(location: string, sha256?: string): AdapterSource | undefined {
  if (/^https?:\/\//i.test(location)) return { kind: 'url', url: location, sha256 };
  if (isAbsolute(location)) return { kind: 'local', path: resolve(location) };
  const hub = parseHubId(location);
  if (hub) return { kind: 'hub', ...hub, sha256 };
  return undefined;
}
