/**
 * A MergeHost (adapters/merge-cache.ts) over adapter folders by name, for the merge-cache tests:
 * records what it registers; `draining` names the unregistered adapters still read.
 */
import type { MergeHost } from '../../adapters/merge-cache.ts';
import type { AdapterInfo, AdapterLease } from '../../adapters/types.ts';

/** @param dirs member name -> adapter folder */
export function fakeMergeHost(dirs: Record<string, string>): MergeHost & { registered: string[]; draining: Set<string> } {
  const known = new Map<string, AdapterInfo>(Object.entries(dirs).map(([n, dir]) => [n, { name: n, dir } as AdapterInfo]));
  const registered: string[] = [];
  const draining = new Set<string>();
  return {
    registered,
    draining,
    get: (name) => known.get(name),
    async registerSynthetic(name, dir) {
      registered.push(name);
      const info = { name, dir, synthetic: true } as AdapterInfo;
      known.set(name, info);
      return info;
    },
    acquire: async (name) => ({ name, release() {} }) as unknown as AdapterLease,
    identity: async (name) => `id-of-${name}`,
    unregister: (name) => known.delete(name),
    isDraining: (name) => draining.has(name),
  };
}
