/**
 * The runtime API's load (`POST /v1/load_lora_adapter`, adapters/manager.ts `loadRuntime`): one
 * adapter registered under a new name from a path inside the adapter roots, a URL or a hub id,
 * with its files read and checked (host tier: header, shapes, NaN / Inf) before it answers, so a
 * load that succeeds names an adapter that runs.
 *
 * Loads of one name run one after the other, in the order they were asked (a per-name promise
 * chain): of concurrent loads of a name, the first that succeeds registers it and every later one
 * gets the 400 `adapter_exists` a load after it would get (vLLM answers a second load of a name
 * so); a load that fails leaves the name free for the next. A failed load removes only the entry
 * it registered itself, never one another caller (a scan, a discovery by name) registered.
 */
import { AdapterError, adapterExists, unknownAdapter } from './errors.ts';
import { adapterNameProblem, type AdapterRegistry } from './registry.ts';
import { confinePath, sourceOf } from './sources.ts';
import type { SpecCache } from './spec-cache.ts';
import type { AdapterInfo } from './types.ts';

/** What a runtime load needs of its base model's adapter manager. */
export interface RuntimeLoadHost {
  readonly baseName: string;
  /** Folders local paths may resolve into (realpath-confined). */
  readonly adapterRoots: readonly string[];
  /** Whether http(s) URLs may be loaded. */
  readonly allowUrls: boolean;
  readonly registry: AdapterRegistry;
  readonly specs: SpecCache;
  /** Forget a registered adapter (AdapterManager.unregister: drains its requests, frees its slot). */
  unregister(name: string): boolean;
}

/** The runtime loads of one base model, serialized per adapter name. */
export class RuntimeLoads {
  /** Per name: the end of the last load asked for (settled, never rejected). */
  private readonly tails = new Map<string, Promise<void>>();

  /** @param host The base model's registry, host tier, roots and unregister. */
  constructor(private readonly host: RuntimeLoadHost) {}

  /**
   * Register `name` from `location` and fill its host tier; see adapters/manager.ts `loadRuntime`.
   * Runs after every earlier load of the same name has settled.
   * @throws AdapterError `invalid_adapter` (lora_name: bad name; lora_path: bad files, naming the
   *   file and tensor or field), `adapter_name_conflict` (the base's own name), `adapter_exists`
   *   (name taken), `invalid_lora_path`, download codes.
   */
  async load(name: string, location: string): Promise<AdapterInfo> {
    const problem = adapterNameProblem(name);
    if (problem) throw new AdapterError(`lora_name: ${problem}`, 'invalid_adapter', { param: 'lora_name' });
    if (name === this.host.baseName) {
      throw new AdapterError(`lora_name '${name}' is the base model's own name: choose another adapter name`, 'adapter_name_conflict', { param: 'lora_name' });
    }
    const run = (this.tails.get(name) ?? Promise.resolve()).then(() => this.loadNow(name, location));
    const tail = run.then(() => undefined, () => undefined);
    this.tails.set(name, tail);
    void tail.then(() => {
      if (this.tails.get(name) === tail) this.tails.delete(name);
    });
    return run;
  }

  /** One load, with no other load of `name` running. */
  private async loadNow(name: string, location: string): Promise<AdapterInfo> {
    const { registry } = this.host;
    if (registry.get(name)) throw adapterExists(name);
    let src = sourceOf(location);
    if (!src) throw new AdapterError(`lora_path ${JSON.stringify(location)}: expected an absolute path, an http(s) URL or a hub id org/name[@revision]`, 'invalid_lora_path', { param: 'lora_path' });
    if (src.kind === 'local') src = { kind: 'local', path: await confinePath(location, this.host.adapterRoots) };
    if (src.kind === 'url' && !this.host.allowUrls) {
      throw new AdapterError(`lora_path ${JSON.stringify(location)}: URL sources are disabled (adapterSources.allowUrls)`, 'invalid_lora_path', { param: 'lora_path' });
    }
    // exclusive: a scan or discovery that registered the name meanwhile is adapter_exists, not this load's entry.
    const info = await registry.registerSource(name, src, { exclusive: true }).catch(asLoraPathError);
    const entry = registry.get(name);
    if (entry?.info !== info) throw unknownAdapter(`${this.host.baseName}:${name}`, 'It was unloaded while it was loaded.');
    try {
      await this.host.specs.get(entry);
    } catch (err) {
      if (registry.get(name) === entry) this.host.unregister(name);  // only the entry this load registered
      return asLoraPathError(err);
    }
    return info;
  }
}

/** The adapter's files are the request's lora_path, not its model: an error naming `model` is re-thrown naming that field. */
function asLoraPathError(err: unknown): never {
  if (err instanceof AdapterError && err.param === 'model') {
    throw new AdapterError(err.message, err.code, { param: 'lora_path', cause: err.cause, retryAfterSeconds: err.retryAfterSeconds });
  }
  throw err;
}
