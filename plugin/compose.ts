/**
 * From a resolved model string and the request's body extensions to the adapter composition
 * that serves the request, and from a composition to engine adapter slots (pinned leases).
 *
 * - `BASE:ADAPTER` → one member, weight 1, strategy `cat` (a plain adapter).
 * - `BASE:A@0.6+B@0.4` → those members, strategy `cat` unless `merge.strategy` says otherwise.
 * - body `adapters: [{name, weight}]` with `model: BASE` → those members (`merge` as given).
 * - a named composition from the config → its members and merge options.
 */
import {
  MergeOptionsSchema,
  ON_THE_FLY_STRATEGIES,
  type AdapterWeight,
  type Composition,
  type MergeOptions,
} from '../adapters/composition.ts';
import type { AdapterLease, AdapterProvider } from '../adapters/types.ts';
import type { AdapterRef, EnsembleMember } from '../native/types.ts';
import { InvalidRequestError, ModelNotFoundError } from './errors.ts';
import type { ModelSpec } from './model-spec.ts';

/** The body extension fields (already shape-checked by the request schema). */
export interface CompositionBody {
  adapters?: AdapterWeight[] | null;
  merge?: Partial<MergeOptions> | null;
}

/** Members of one base named as `ADAPTER` or `BASE:ADAPTER`; other bases are refused. */
function bodyMembers(base: string, members: AdapterWeight[], provider: AdapterProvider): AdapterWeight[] {
  return members.map((m, i) => {
    let name = m.name;
    if (name.startsWith(base + ':')) name = name.slice(base.length + 1);
    else if (name.includes(':')) {
      throw new InvalidRequestError(
        `adapters[${i}].name \`${m.name}\` belongs to another base model; every adapter of a composition must be an adapter of \`${base}\`.`,
        `adapters[${i}].name`,
      );
    }
    if (!provider.get(name)) throw new ModelNotFoundError(`${base}:${name}`, `Base model \`${base}\` has no adapter \`${name}\` (adapters[${i}]).`);
    return { name, weight: m.weight };
  });
}

/**
 * The composition a request asks for, or undefined for the base model alone.
 * @throws InvalidRequestError (400) naming `adapters`/`merge` when the fields conflict with
 *   the model string; ModelNotFoundError (404) for unknown member adapters.
 */
export function resolveComposition(spec: ModelSpec, body: CompositionBody, provider: AdapterProvider): Composition | undefined {
  const hasBodyAdapters = body.adapters != null;
  if (spec.composition) {
    if (hasBodyAdapters || body.merge != null) {
      throw new InvalidRequestError(
        `\`${spec.composition.name}\` is a named composition; it takes no \`adapters\` or \`merge\` fields.`,
        hasBodyAdapters ? 'adapters' : 'merge',
      );
    }
    const c = spec.composition.config;
    return { members: bodyMembers(spec.base, c.adapters, provider), merge: c.merge };
  }
  let members: AdapterWeight[] | undefined = spec.members ?? (spec.adapter ? [{ name: spec.adapter, weight: 1 }] : undefined);
  if (hasBodyAdapters) {
    if (members) {
      throw new InvalidRequestError(
        'Name the adapters either in `model` or in the `adapters` field, not both; with `adapters`, set `model` to the base model.',
        'adapters',
      );
    }
    members = bodyMembers(spec.base, body.adapters!, provider);
  }
  if (!members) {
    if (body.merge != null) throw new InvalidRequestError('`merge` needs adapters: name them in `model` (A@0.5+B@0.5) or in `adapters`.', 'merge');
    return undefined;
  }
  const merge = MergeOptionsSchema.parse(body.merge ?? {});
  if (merge.strategy === 'ensemble' && members.length < 2) {
    throw new InvalidRequestError('An ensemble needs at least two adapters.', 'adapters');
  }
  if (merge.strategy === 'ensemble' && members.some((m) => !(m.weight > 0))) {
    throw new InvalidRequestError('Ensemble weights must be greater than 0.', 'adapters');
  }
  return { members, merge };
}

/** Engine-side adapter selection for one request, with the pins that keep it valid. */
export interface PinnedComposition {
  /** `SequenceParams.adapters` (empty for an ensemble). */
  adapters: AdapterRef[];
  /** `SequenceParams.ensemble`, for the ensemble strategy. */
  ensemble?: EnsembleMember[];
  /** Release every pin (idempotent). */
  release(): void;
}

/**
 * Make a composition's adapters resident and pin them.
 * - cat: one slot per distinct member, weights as given (the engine sums the deltas);
 * - ensemble: one slot per member, each member its own sequence;
 * - materialised strategies: one synthetic adapter (built once and cached by the provider).
 * Members are acquired in name order, so two requests never wait on each other's slots.
 */
export async function pinComposition(provider: AdapterProvider, c: Composition | undefined): Promise<PinnedComposition> {
  if (!c) return { adapters: [], release() {} };
  const leases: AdapterLease[] = [];
  const release = () => {
    for (const l of leases.splice(0)) l.release();
  };
  try {
    if (!ON_THE_FLY_STRATEGIES.has(c.merge.strategy)) {
      const lease = await provider.acquireMerged(c);
      leases.push(lease);
      return { adapters: [{ slot: lease.slot, weight: 1 }], release };
    }
    const slotOf = new Map<string, number>();
    for (const name of [...new Set(c.members.map((m) => m.name))].sort()) {
      const lease = await provider.acquire(name);
      leases.push(lease);
      slotOf.set(name, lease.slot);
    }
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
