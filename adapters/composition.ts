/**
 * Compositions: a weighted set of adapters of one base plus how to combine them.
 *
 * One schema serves the request body extension (`adapters: [{name, weight}]`,
 * `merge: {strategy, density, majority_sign_method, svd_rank, seed}`), the model-name syntax
 * `BASE:A@0.6+B@0.4` (strategy `cat`) and named compositions in the config.
 *
 * Strategies (PEFT `LoraModel.add_weighted_adapter`, peft/tuners/lora/model.py):
 * - `cat`: the exact weighted sum of the deltas, y = W x + Σ_i w_i s_i B_i (A_i x), computed on
 *   the fly by the engine over the sequence's adapter set (nothing materialised).
 * - `ensemble`: per-step mixture p = Σ_i w_i softmax(l_i / T) of the members' next-token
 *   distributions (native/types.ts `SequenceParams.ensemble`).
 * - `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune` and the `*_svd` variants
 *   and `svd`: materialised once into a synthetic adapter (adapters/merge/).
 */
import { z } from 'zod';

/** Every strategy name accepted in `merge.strategy`. */
export const MERGE_STRATEGIES = [
  'cat',
  'ensemble',
  'linear',
  'ties',
  'dare_linear',
  'dare_ties',
  'magnitude_prune',
  'svd',
  'ties_svd',
  'dare_linear_svd',
  'dare_ties_svd',
  'magnitude_prune_svd',
] as const;
export type MergeStrategy = (typeof MERGE_STRATEGIES)[number];

/** Strategies the engine computes per step without materialising weights. */
export const ON_THE_FLY_STRATEGIES: ReadonlySet<MergeStrategy> = new Set(['cat', 'ensemble']);

/** `merge` options, as PEFT names them. */
export const MergeOptionsSchema = z.strictObject({
  strategy: z.enum(MERGE_STRATEGIES).default('cat'),
  /** Fraction of weights kept by ties / dare / magnitude_prune, in (0, 1]. */
  density: z.number().gt(0, 'density must be in (0, 1]').max(1, 'density must be in (0, 1]').optional(),
  /** TIES sign election: `total` (sum of values) or `frequency` (count of signs). */
  majority_sign_method: z.enum(['total', 'frequency']).default('total'),
  /** Rank kept by the `*_svd` strategies (default: the largest member rank). */
  svd_rank: z.number().int().min(1).max(4096).optional(),
  /** Seed of DARE's random mask, so a merge is reproducible. */
  seed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
});
export type MergeOptions = z.output<typeof MergeOptionsSchema>;

/** One member: an adapter name and its weight (finite; zod refuses NaN and ±Infinity). */
export const AdapterWeightSchema = z.strictObject({
  name: z.string().min(1),
  weight: z.number().default(1),
});
export type AdapterWeight = z.output<typeof AdapterWeightSchema>;

/** A named composition in the config: `compositions: {NAME: {base, adapters, merge}}`. */
export const CompositionConfigSchema = z.strictObject({
  base: z.string().min(1),
  adapters: z.array(AdapterWeightSchema).min(1),
  merge: MergeOptionsSchema.default(() => MergeOptionsSchema.parse({})),
});
export type CompositionConfig = z.output<typeof CompositionConfigSchema>;

/** A resolved composition of one base's adapters. */
export interface Composition {
  members: AdapterWeight[];
  merge: MergeOptions;
}

/** Strategies whose formula needs a density; PEFT's default when absent is required input, so we default to 1. */
export const DENSITY_STRATEGIES: ReadonlySet<MergeStrategy> = new Set([
  'ties',
  'dare_linear',
  'dare_ties',
  'magnitude_prune',
  'ties_svd',
  'dare_linear_svd',
  'dare_ties_svd',
  'magnitude_prune_svd',
]);

/**
 * Why a composition needing `distinct` adapters at once can never run on `maxLoras` slots (it
 * is a client error at once, not a wait and a 503), stating both numbers; undefined when it fits.
 */
export function slotShortfall(distinct: number, maxLoras: number): string | undefined {
  if (distinct <= maxLoras) return undefined;
  return `This composition uses ${distinct} distinct adapters at once, but this server has ${maxLoras} adapter slots (engine.maxLoras); use at most ${maxLoras}, or a materialised merge strategy (one slot).`;
}
