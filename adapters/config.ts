/**
 * From the validated config (config/schema.ts) to AdapterManager options: tier bounds, the
 * download cache and hub endpoint, and the roots runtime loads are confined to.
 */
import { join } from 'node:path';
import type { Config, ModelEntry } from '../config/schema.ts';
import type { AdapterManagerOptions, Logger } from './manager.ts';
import { AdapterSources, parseHubId, type AdapterSource } from './sources.ts';
import { AdapterError } from './errors.ts';
import { privateTmpDir } from './private-dir.ts';

/** The tier and source options of one base model's AdapterManager. */
export function adapterTierOptions(entry: ModelEntry, config: Config, log: Logger): Partial<AdapterManagerOptions> {
  const safe = entry.name.replace(/[^A-Za-z0-9._-]/g, '_');
  const c = config.adapterCache;
  const s = config.adapterSources;
  return {
    maxCpuLoras: c.maxCpuLoras,
    maxWarmBytes: c.maxWarmBytes,
    slotWaitMs: c.slotWaitMs,
    maxMerges: c.maxMerges,
    mergeTimeoutMs: c.mergeTimeoutMs,
    allowUrls: s.allowUrls,
    // Runtime loads may read from the configured roots and from every model's scanned folders.
    adapterRoots: [...config.adapterRoots, ...config.models.flatMap((m) => m.adapterDirs)],
    sources: new AdapterSources({
      cacheDir: join(c.dir ?? privateTmpDir('adapter-cache'), safe),
      maxDiskBytes: c.maxDiskBytes,
      hubEndpoint: s.hubEndpoint,
      hfCacheDir: s.hfCacheDir,
      maxDownloadBytes: s.maxDownloadBytes,
      downloadTimeoutMs: s.downloadTimeoutMs,
      log,
    }),
  };
}

/** A config adapter `path`: a folder (already absolute), an http(s) URL or `hub:org/name[@rev]`. */
export function configAdapterSource(path: string, sha256?: string): AdapterSource {
  if (/^https?:\/\//i.test(path)) return { kind: 'url', url: path, sha256 };
  if (path.startsWith('hub:')) {
    const hub = parseHubId(path.slice(4));
    if (!hub) throw new AdapterError(`adapter path ${JSON.stringify(path)}: expected hub:org/name[@revision]`);
    return { kind: 'hub', ...hub, sha256 };
  }
  return { kind: 'local', path };
}
