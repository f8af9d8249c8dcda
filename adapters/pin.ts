/**
 * From a composition to engine adapter slots: which adapters to make resident and pin for one
 * request, and how the engine combines them (`SequenceParams.adapters` / `.ensemble`).
 */
import { ON_THE_FLY_STRATEGIES, type Composition } from './composition.ts';
import type { AdapterLease, AdapterProvider } from './types.ts';
import type { AdapterRef, EnsembleMember } from '../native/types.ts';

/** Engine-side adapter selection for one request, with the pins that keep it valid. */
export interface PinnedComposition {
  /** `SequenceParams.adapters` (empty for the base model alone and for an ensemble). */
  adapters: AdapterRef[];
  /** `SequenceParams.ensemble`, for the ensemble strategy. */
  ensemble?: EnsembleMember[];
  /** Release every pin (idempotent). */
  release(): void;
}

/**
 * Make a composition's adapters resident and pin them (undefined: the base model, nothing pinned).
 * - cat: one slot per distinct member, weights as given (the engine sums the deltas);
 * - ensemble: one slot per member, each member its own sequence;
 * - materialised strategies: one synthetic adapter (built once and cached by the provider).
 * Members are acquired all at once or not at all (`acquireAll` when the provider has it): a
 * request waiting for slots holds none, so it never delays others (no hold-and-wait).
 * @param signal aborts when the request leaves (passed to `acquireMerged`: an abandoned merge stops).
 * @throws whatever `provider.acquire` / `acquireAll` / `acquireMerged` throws; pins taken so far
 *   are released.
 */
export async function pinComposition(
  provider: Pick<AdapterProvider, 'acquire' | 'acquireAll' | 'acquireMerged'>,
  c: Composition | undefined,
  signal?: AbortSignal,
): Promise<PinnedComposition> {
  if (!c) return { adapters: [], release() {} };
  const leases: AdapterLease[] = [];
  const release = () => {
    for (const l of leases.splice(0)) l.release();
  };
  try {
    if (!ON_THE_FLY_STRATEGIES.has(c.merge.strategy)) {
      const lease = await provider.acquireMerged(c, signal);
      leases.push(lease);
      return { adapters: [{ slot: lease.slot, weight: 1 }], release };
    }
    const slotOf = new Map<string, number>();
    const names = [...new Set(c.members.map((m) => m.name))].sort();
    if (provider.acquireAll) leases.push(...(await provider.acquireAll(names)));
    else for (const name of names) leases.push(await provider.acquire(name));
    for (const l of leases) slotOf.set(l.name, l.slot);
    const refs = c.members.map((m) => ({ slot: slotOf.get(m.name)!, weight: m.weight }));
    if (c.merge.strategy === 'ensemble') {
      return { adapters: [], ensemble: refs.map((r) => ({ adapters: [{ slot: r.slot, weight: 1 }], weight: r.weight })), release };
    }
    return { adapters: refs, release };
  } catch (err) {
    release();
    throw err;
  }
}
