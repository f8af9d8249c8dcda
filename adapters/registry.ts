/**
 * The adapters known for one base model: name → where they come from and what their PEFT config
 * says, plus each one's state in the host and device tiers.
 *
 * Adapters are registered from folders, URLs or hub ids (adapters/sources.ts); the PEFT config
 * is parsed and validated at registration (cheap, so `/v1/models` can show rank and targets);
 * the safetensors header and the tensors are read only when a request first needs the adapter
 * (adapters/spec-cache.ts, adapters/slot-pool.ts).
 *
 * A folder of a scanned directory is resolved (symlinks included) and confined once, when it is
 * registered, as a runtime load's path is (adapters/sources.ts `realPathIn`): one whose real path
 * lies outside every adapter root and every scanned directory is refused with a warning naming it,
 * and a request naming it gets that refusal as its 400.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ModelInfo } from '../native/types.ts';
import { fileStamp } from './content-id.ts';
import { AdapterError, adapterExists } from './errors.ts';
import { parseAdapterDir, type ParsedAdapter } from './peft.ts';
import { emptyDeviceState, type DeviceState } from './slot-pool.ts';
import { outsideRoots, realPathIn, type AdapterSource, type AdapterSources } from './sources.ts';
import { emptySpecState, type SpecState } from './spec-cache.ts';
import type { AdapterInfo, Logger } from './types.ts';

/** Adapter names: no `:`, `@`, `+` or `/`, which the model-name syntax `BASE:A@0.6+B@0.4` uses. */
export const ADAPTER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Longest adapter name, in characters (names travel in every request's `model` and in metric labels). */
export const MAX_ADAPTER_NAME_LENGTH = 128;

/** Names of materialised merges (adapters/merge-cache.ts): reserved, no other adapter may take one. */
export const MERGE_NAME_PREFIX = 'merge-';

/**
 * Why `name` cannot name an adapter (ADAPTER_NAME_RE, MAX_ADAPTER_NAME_LENGTH; MERGE_NAME_PREFIX
 * only for a synthetic merge), or null when it can.
 */
export function adapterNameProblem(name: string, synthetic = false): string | null {
  if (name.length > MAX_ADAPTER_NAME_LENGTH) return `invalid adapter name (${name.length} characters): at most ${MAX_ADAPTER_NAME_LENGTH}`;
  if (!ADAPTER_NAME_RE.test(name)) return `invalid adapter name ${JSON.stringify(name)}: must match ${ADAPTER_NAME_RE.source}`;
  if (!synthetic && name.startsWith(MERGE_NAME_PREFIX)) {
    return `invalid adapter name ${JSON.stringify(name)}: names starting with "${MERGE_NAME_PREFIX}" are reserved for materialised merges`;
  }
  return null;
}

/** One registered adapter and its tier states. */
export interface AdapterEntry {
  readonly name: string;
  info: AdapterInfo;
  parsed: ParsedAdapter;
  /** fileStamp of the folder when `parsed` was read (adapters/content-id.ts): a different one means parse again. */
  parsedStamp: string;
  source: AdapterSource;
  /** Unregistered: no new acquires; its slot is freed when pins reach 0. */
  removed: boolean;
  /** The scanned directory it came from, for `rescan` (its folder there is `scanDir/name`, which may be a symlink to `info.dir`). */
  scanDir?: string;
  /** Host tier (adapters/spec-cache.ts). */
  host: SpecState;
  /** Device tier (adapters/slot-pool.ts). */
  device: DeviceState;
}

/** How `registerSource` treats a name already registered. */
export interface RegisterOptions {
  /** A materialised merge (adapters/merge-cache.ts): the one kind that may take a `merge-` name. */
  synthetic?: boolean;
  /** A runtime load: a name already registered (before, or meanwhile) is `adapter_exists`, never the existing entry. */
  exclusive?: boolean;
}

/** A scan's outcome: adapters registered, and folders skipped with the reason. */
export interface ScanResult {
  registered: AdapterInfo[];
  skipped: Array<{ name: string; reason: string }>;
}

/** Name → adapter entry for one base model. */
export class AdapterRegistry {
  private readonly entries = new Map<string, AdapterEntry>();
  private readonly scanDirs = new Set<string>();
  /** Folders a scan found but refused (name → folder, reason, fileStamp then): answered 400, not 404. */
  private readonly refused = new Map<string, { dir: string; reason: string; stamp: string }>();
  /** Names unregistered (unloaded by an operator, or their folder vanished): `discover` leaves them to a rescan or load. */
  private readonly removed = new Set<string>();

  /**
   * @param baseName Served name of the base model.
   * @param info The base model's shapes (configs are validated against them).
   * @param sources Where URL and hub adapters are downloaded (the disk tier).
   * @param log Registration and skip log lines.
   * @param roots The adapter roots (besides the scanned directories) a scanned folder may resolve into.
   */
  constructor(
    private readonly baseName: string,
    private readonly info: ModelInfo,
    private readonly sources: AdapterSources,
    private readonly log: Logger,
    private readonly roots: readonly string[] = [],
  ) {}

  /** Registered adapters. */
  get size(): number {
    return this.entries.size;
  }

  /** The entry of `name`, or undefined when not registered. */
  get(name: string): AdapterEntry | undefined {
    return this.entries.get(name);
  }

  /** Every entry, in registration order. */
  values(): IterableIterator<AdapterEntry> {
    return this.entries.values();
  }

  /** Forget `name` and mark its entry removed; returns the entry (undefined when unknown). */
  remove(name: string): AdapterEntry | undefined {
    const e = this.entries.get(name);
    if (!e) return undefined;
    this.entries.delete(name);
    if (!e.info.synthetic) this.removed.add(name);  // merges come and go by the thousand: never looked up by name
    e.removed = true;
    return e;
  }

  /**
   * Register an adapter from any source: a local folder, an http(s) folder URL or a hub id
   * (downloaded now into the disk tier, so its config can be validated). Registering the same
   * name from the same place again returns the existing info (not with `opts.exclusive`).
   * @throws AdapterError `invalid_adapter` for an invalid name or adapter config (naming the
   *   file and field), `adapter_name_conflict` for a name already taken by another source,
   *   `adapter_exists` for a name taken at all when `opts.exclusive`, download codes.
   */
  async registerSource(name: string, source: AdapterSource, opts: RegisterOptions = {}): Promise<AdapterInfo> {
    const problem = adapterNameProblem(name, opts.synthetic);
    if (problem) throw new AdapterError(problem);
    const where = source.kind === 'local' ? source.path : source.kind === 'url' ? source.url : `${source.repo}@${source.revision}`;
    const taken = () => {
      const e = this.entries.get(name);
      if (e && opts.exclusive) throw adapterExists(name);
      if (e && e.info.root !== where) throw new AdapterError(`adapter ${name} is already registered from ${e.info.root}`, 'adapter_name_conflict');
      return e?.info;
    };
    const existing = taken();
    if (existing) return existing;
    const dir = await this.sources.ensureLocal(source);
    const parsedStamp = await fileStamp(dir);
    const parsed = await parseAdapterDir(dir, this.info);
    const bytes = await stat(parsed.weightsPath).then((s) => s.size, () => undefined);
    const again = taken(); // a concurrent register of the same name may have won
    if (again) return again;
    for (const w of parsed.warnings) this.log.warn({ adapter: name, dir }, w);
    const cfg = parsed.config;
    const info: AdapterInfo = {
      name, base: this.baseName, dir, root: where, rank: cfg.r, alpha: cfg.lora_alpha, useRslora: Boolean(cfg.use_rslora),
      targetModules: [...parsed.targetKinds], created: Math.floor(Date.now() / 1000), source: source.kind, bytes,
    };
    this.refused.delete(name);
    this.entries.set(name, { name, info, parsed, parsedStamp, source, removed: false, host: emptySpecState(), device: emptyDeviceState() });
    this.removed.delete(name);
    this.log.info({ adapter: name, dir, source: source.kind, rank: info.rank, targets: info.targetModules }, 'adapter registered');
    return info;
  }

  /**
   * Register every sub-folder of `dir` that holds an adapter_config.json, named after the
   * folder (sorted by name, one at a time). Invalid names, invalid adapters and folders whose real
   * path lies outside the roots are skipped with a warning; folders without adapter_config.json are
   * ignored. The folder is remembered for `rescan`.
   * @throws AdapterError when `dir` itself cannot be read.
   */
  async scanDirectory(dir: string): Promise<ScanResult> {
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
      if (!(await hasConfig(join(abs, name)))) continue;
      const r = await this.registerScanned(abs, name);
      if ('reason' in r) skipped.push({ name, reason: r.reason });
      else registered.push(r);
    }
    return { registered, skipped };
  }

  /**
   * A folder named `name` with an adapter_config.json in a directory scanned so far, copied there
   * after the scan: registered now as a scan would (or refused with its reason, answered as the
   * scan's 400). vLLM's filesystem LoRA resolver likewise finds adapters by name when a request
   * names them. A refused folder is looked at again when its files change (a request may catch it
   * half-copied). A name unregistered since (unload, vanished folder) is not looked up: its folder
   * comes back by a rescan or a runtime load. @returns whether such a folder was found.
   */
  async discover(name: string): Promise<boolean> {
    if (this.entries.has(name) || this.removed.has(name) || adapterNameProblem(name)) return false;
    const r = this.refused.get(name);
    if (r) {
      // Refused (perhaps caught half-copied): looked at again once its files changed.
      if ((await fileStamp(r.dir)) === r.stamp) return false;
      this.refused.delete(name);
    }
    for (const dir of this.scanDirs) {
      if (!(await hasConfig(join(dir, name)))) continue;
      const r = await this.registerScanned(dir, name);
      if (!('reason' in r)) this.log.info({ adapter: name, dir }, 'adapter found by name in a scanned directory');
      return true;
    }
    return false;
  }

  /**
   * Register sub-folder `name` of scanned directory `abs` from its real path, when that lies in an
   * adapter root or a scanned directory; a refusal is remembered (`refusal`) and logged.
   */
  private async registerScanned(abs: string, name: string): Promise<AdapterInfo | { reason: string }> {
    const sub = join(abs, name);
    try {
      const roots = [...this.roots, ...this.scanDirs];
      const at = await realPathIn(sub, roots).catch((err: NodeJS.ErrnoException) => {
        throw new AdapterError(`${sub}: cannot be read (${err.code ?? String(err)})`);
      });
      if (!at.inside) throw new AdapterError(`${sub}: ${outsideRoots(at.real, roots)}`);
      const info = await this.registerSource(name, { kind: 'local', path: at.real });
      this.entries.get(name)!.scanDir ??= abs;
      return info;
    } catch (err) {
      const reason = (err as Error).message;
      if (!this.entries.has(name)) this.refused.set(name, { dir: sub, reason, stamp: await fileStamp(sub) });
      this.log.warn({ adapter: name, dir: sub, reason }, 'adapter skipped');
      return { reason };
    }
  }

  /**
   * Why a scan refused the folder named `name` (DoRA, modules_to_save, bad JSON, pickle-only
   * weights, added vocabulary, ...), or undefined for a name registered or never seen.
   */
  refusal(name: string): string | undefined {
    return this.refused.get(name)?.reason;
  }

  /**
   * Scan every directory scanned so far again: new sub-folders are registered.
   * @returns the names added, the scanned adapters whose folder disappeared (`vanished`: the
   *   caller unregisters them) and the new folders skipped.
   */
  async rescan(): Promise<{ added: string[]; vanished: string[]; skipped: Array<{ name: string; reason: string }> }> {
    const before = new Set(this.entries.keys());
    const added: string[] = [];
    const skipped: Array<{ name: string; reason: string }> = [];
    for (const dir of this.scanDirs) {
      const r = await this.scanDirectory(dir).catch((): ScanResult => ({ registered: [], skipped: [] }));
      for (const a of r.registered) if (!before.has(a.name)) added.push(a.name);
      skipped.push(...r.skipped.filter((s) => !before.has(s.name)));
    }
    for (const [name, r] of [...this.refused]) if (!(await hasConfig(r.dir))) this.refused.delete(name);
    const vanished: string[] = [];
    for (const e of this.entries.values()) if (e.scanDir && !(await hasConfig(join(e.scanDir, e.name)))) vanished.push(e.name);
    return { added, vanished, skipped };
  }
}

/** Whether `dir` holds an adapter_config.json file. */
function hasConfig(dir: string): Promise<boolean> {
  return stat(join(dir, 'adapter_config.json')).then((s) => s.isFile(), () => false);
}
