/**
 * Materialised adapter merges with PEFT `LoraModel.add_weighted_adapter` semantics
 * (huggingface/peft `src/peft/tuners/lora/model.py`: `_check_add_weighted_adapter`,
 * `add_weighted_adapter`, `_generalized_task_arithmetic_weighted_adapter`,
 * `_svd_generalized_task_arithmetic_weighted_adapter`; math in ./strategies.ts).
 *
 * The result is a plain PEFT folder (adapter_config.json + adapter_model.safetensors, F32) that
 * loads through `parseAdapterDir` / `buildLoadSpec` / AdapterManager like any other adapter.
 *
 * Per targeted module, with c_i = w_i * s_i (request weight times the adapter's scaling):
 * - linear, ties, dare_linear, dare_ties, magnitude_prune: merge the A's and the B's separately,
 *   A with factors sign(c_i) sqrt|c_i|, B with sqrt|c_i| (so linear gives
 *   B A = (sum_i sqrt|c_i| B_i)(sum_i ±sqrt|c_i| A_i), cross terms included, as PEFT). All inputs
 *   need the same rank; the result has that rank.
 * - cat: A = concat_i(c_i A_i) on rows, B = concat_i(B_i) on columns; rank = sum of ranks
 *   (exactly sum_i c_i B_i A_i; modules an adapter lacks leave zero rows/columns, as PEFT).
 * - svd and *_svd: merge the full deltas get_delta_weight_i = s_i B_i A_i with weights c_i (PEFT
 *   passes `weight * scaling` as the weight of a delta that already includes the scaling, so the
 *   effective factor is w_i s_i^2; matched on purpose), then B = U[:, :r] diag(S[:r]),
 *   A = V^T[:r]; r = svdRank or the inputs' max rank.
 * The new adapter has lora_alpha = r (scaling 1), use_rslora false (peft PR #3449), and targets the
 * union of the inputs' modules; a module an input lacks gets no contribution from it (PEFT skips it).
 * One input adapter always merges as `linear` (PEFT).
 *
 * NOTE(event loop): the server runs this on a worker thread (./off-thread.ts), so the event loop
 * only waits for a message; a merge nobody waits for any more is stopped, and one past
 * adapterCache.mergeTimeoutMs fails (../merge-cache.ts). Plain `svd` works from the stacked factors
 * (no dense delta; linalg.ts); the ties/dare/magnitude_prune `*_svd` variants prune the dense
 * deltas first and take a randomized SVD of each (strategies.ts svdFactors). At a 360M model's
 * shape (bench/merge.ts, bench/README.md): plain `svd` 3-8 s for two rank-8 adapters on all
 * seven modules of 32 layers, `*_svd` 2-4 minutes (the element-wise pruning of the dense deltas).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { ModelInfo } from '../../native/types.ts';
import { MERGE_STRATEGIES as ALL_STRATEGIES, type MergeStrategy as AnyStrategy } from '../composition.ts';
import { AdapterError } from '../errors.ts';
import { baseModules, moduleDims, modulesOf, type LoraModule } from '../peft-match.ts';
import { buildLoadSpec, parseAdapterDir, type ParsedAdapter } from '../peft.ts';
import { SafetensorsWriter, type TensorDecl } from './safetensors-writer.ts';
import {
  abWeights, deltaWeight, lowRankSvdFactors, mergeTaskTensors, substream, svdFactors, type MajoritySignMethod, type TaskMerge,
} from './strategies.ts';
import { AdapterTensors, type LoraPair } from './tensors.ts';

/** PEFT `combination_type` values we materialise: every strategy but the per-step `ensemble`. */
export const MERGE_STRATEGIES = ALL_STRATEGIES.filter((s): s is Exclude<AnyStrategy, 'ensemble'> => s !== 'ensemble');
export type MergeStrategy = Exclude<AnyStrategy, 'ensemble'>;

const NEEDS_DENSITY = new Set<MergeStrategy>(['ties', 'dare_linear', 'dare_ties', 'magnitude_prune', 'ties_svd', 'dare_linear_svd', 'dare_ties_svd', 'magnitude_prune_svd']);
const USES_SIGN = new Set<MergeStrategy>(['ties', 'dare_ties', 'ties_svd', 'dare_ties_svd']);
const USES_SEED = new Set<MergeStrategy>(['dare_linear', 'dare_ties', 'dare_linear_svd', 'dare_ties_svd']);
const EQUAL_RANKS = new Set<MergeStrategy>(['linear', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune']);

/** One input: an adapter folder (parsed here) or an already parsed adapter, and its weight w_i. */
export interface MergeInput {
  dir?: string;
  parsed?: ParsedAdapter;
  /** Label for error messages (default: the folder name). */
  name?: string;
  /** w_i; may be negative (PEFT puts the sign on the A side). */
  weight: number;
}

/** What to merge and how. Field names follow the request body (`merge: {strategy, density, ...}`). */
export interface MergeSpec {
  adapters: MergeInput[];
  /** One of MERGE_STRATEGIES (typed as string: it comes from requests; checked at run time, 400 `merge.strategy`). */
  strategy: string;
  /** Fraction of values kept, in (0, 1]; required by ties/dare/magnitude_prune (and *_svd). */
  density?: number;
  /** ties/dare_ties: "total" (default) or "frequency". */
  majoritySignMethod?: MajoritySignMethod;
  /** svd variants: output rank (default: the largest input rank). */
  svdRank?: number;
  /** svd variants: PEFT `svd_clamp` quantile in [0, 1] (default none). */
  svdClamp?: number;
  /** dare variants: PRNG seed (default 0), see strategies.ts `substream`. */
  seed?: number;
}

/** What `materializeMerge` wrote. */
export interface MergeResult {
  dir: string;
  /** The effective strategy (`linear` when one adapter was given). */
  strategy: MergeStrategy;
  rank: number;
  alpha: number;
  /** Full names of the modules written, layer-major. */
  modules: string[];
  /** `canonicalMergeKey(spec)`. */
  key: string;
}

const bad = (msg: string, param: string): never => {
  throw new AdapterError(msg, 'invalid_merge', { param });
};
const labelOf = (a: MergeInput, i: number) => a.name ?? (a.dir ? basename(resolve(a.dir)) : a.parsed ? basename(a.parsed.dir) : `#${i}`);

/** Validate the numeric/enum fields (no I/O). @throws AdapterError `invalid_merge` naming the field. */
export function validateMergeSpec(spec: MergeSpec, info: ModelInfo): MergeStrategy {
  if (!Array.isArray(spec.adapters) || spec.adapters.length === 0) bad('adapters: at least one adapter is required to merge', 'adapters');
  spec.adapters.forEach((a, i) => {
    if (!a.dir && !a.parsed) bad(`adapters[${i}]: needs dir or parsed`, `adapters[${i}]`);
    if (typeof a.weight !== 'number' || !Number.isFinite(a.weight)) bad(`adapters[${i}].weight: expected a finite number, got ${String(a.weight)}`, `adapters[${i}].weight`);
  });
  if (!(MERGE_STRATEGIES as readonly string[]).includes(spec.strategy)) {
    bad(`merge.strategy: expected one of ${MERGE_STRATEGIES.join(', ')}, got ${JSON.stringify(spec.strategy)}`, 'merge.strategy');
  }
  // PEFT: "if there is only one adapter, we can only use linear merging".
  const strategy = (spec.adapters.length === 1 ? 'linear' : spec.strategy) as MergeStrategy;
  if (spec.density !== undefined && !(typeof spec.density === 'number' && spec.density > 0 && spec.density <= 1)) {
    bad(`merge.density: expected a number in (0, 1], got ${String(spec.density)}`, 'merge.density');
  }
  if (NEEDS_DENSITY.has(strategy) && spec.density === undefined) {
    bad(`merge.density is required by merge strategy ${strategy} (a number in (0, 1]; 1 keeps everything)`, 'merge.density');
  }
  if (spec.majoritySignMethod !== undefined && spec.majoritySignMethod !== 'total' && spec.majoritySignMethod !== 'frequency') {
    bad(`merge.majority_sign_method: expected "total" or "frequency", got ${JSON.stringify(spec.majoritySignMethod)}`, 'merge.majority_sign_method');
  }
  if (spec.svdRank !== undefined && !(Number.isInteger(spec.svdRank) && spec.svdRank >= 1 && spec.svdRank <= info.maxLoraRank)) {
    bad(`merge.svd_rank: expected an integer in [1, ${info.maxLoraRank}] (the engine's max LoRA rank), got ${String(spec.svdRank)}`, 'merge.svd_rank');
  }
  if (spec.svdClamp !== undefined && !(typeof spec.svdClamp === 'number' && spec.svdClamp >= 0 && spec.svdClamp <= 1)) {
    bad(`merge.svd_clamp: expected a quantile in [0, 1], got ${String(spec.svdClamp)}`, 'merge.svd_clamp');
  }
  if (spec.seed !== undefined && !Number.isSafeInteger(spec.seed)) bad(`merge.seed: expected an integer, got ${String(spec.seed)}`, 'merge.seed');
  return strategy;
}

const num = (x: number) => (Object.is(x, -0) ? 0 : x); // JSON.stringify gives the shortest round-trip form

/**
 * A stable cache key for a merge: SHA-256 (hex) of a canonical JSON of the fields that affect the
 * result: effective strategy, inputs in order (resolved folder, weight), and only the options the
 * strategy reads (density, majority_sign_method, svd_rank, svd_clamp, seed, with their defaults
 * filled in). Input order is kept: it changes float summation order and the DARE streams.
 * NOTE: the key names folders, not file contents; callers that let adapter files change in place
 * should add their mtime/etag to the key.
 */
export function canonicalMergeKey(spec: MergeSpec): string {
  const strategy = (spec.adapters.length === 1 ? 'linear' : spec.strategy) as MergeStrategy;
  const svd = strategy.endsWith('svd');
  const canon = {
    v: 1,
    strategy,
    adapters: spec.adapters.map((a) => [resolve(a.dir ?? a.parsed!.dir), num(a.weight)]),
    density: NEEDS_DENSITY.has(strategy) ? num(spec.density ?? 1) : null,
    majority_sign_method: USES_SIGN.has(strategy) ? (spec.majoritySignMethod ?? 'total') : null,
    svd_rank: svd ? (spec.svdRank ?? null) : null,
    svd_clamp: svd ? (spec.svdClamp ?? null) : null,
    seed: USES_SEED.has(strategy) ? num(spec.seed ?? 0) : null,
  };
  return createHash('sha256').update(JSON.stringify(canon)).digest('hex');
}

/** PEFT's adapters_ranks entry: r, or the largest of r and rank_pattern values. */
const maxRank = (p: ParsedAdapter) => Math.max(p.config.r, ...Object.values(p.config.rank_pattern ?? {}));

/**
 * Merge `spec.adapters` and write the result as a PEFT folder in `outDir` (created if needed).
 * Files are written under temporary names in `outDir` and renamed into place, weights first, so
 * a reader never sees a partial adapter (adapter_config.json appears last).
 * @throws AdapterError `invalid_merge` (naming `adapters[i]` / `merge.*`) for bad specs, unequal ranks
 *   where the strategy needs equal ranks, mixed target_modules kinds, ranks above the engine's
 *   limit; AdapterError for invalid input adapter folders.
 */
export async function materializeMerge(spec: MergeSpec, info: ModelInfo, outDir: string): Promise<MergeResult> {
  const strategy = validateMergeSpec(spec, info);
  const names = spec.adapters.map(labelOf);
  const parsed: ParsedAdapter[] = [];
  for (const a of spec.adapters) parsed.push(a.parsed ?? (await parseAdapterDir(resolve(a.dir!), info)));

  // _check_add_weighted_adapter: ranks, target_modules kinds.
  const ranks = parsed.map(maxRank);
  let rank: number;
  if (EQUAL_RANKS.has(strategy)) {
    const j = ranks.findIndex((r) => r !== ranks[0]);
    if (j > 0) {
      bad(`adapters[${j}] (${names[j]}) has rank ${ranks[j]} but adapters[0] (${names[0]}) has rank ${ranks[0]}: merge strategy ${strategy} needs equal ranks (PEFT add_weighted_adapter); use cat, svd or a *_svd strategy`, `adapters[${j}]`);
    }
    rank = ranks[0]!;
  } else if (strategy === 'cat') {
    rank = ranks.reduce((a, b) => a + b, 0);
    if (rank > info.maxLoraRank) bad(`merge strategy cat gives rank ${rank} (sum of ${ranks.join(' + ')}), above the engine's max LoRA rank ${info.maxLoraRank}; use svd with merge.svd_rank`, 'adapters');
  } else {
    rank = spec.svdRank ?? Math.max(...ranks);
    if (rank > info.maxLoraRank) bad(`merge rank ${rank} (the largest input rank) is above the engine's max LoRA rank ${info.maxLoraRank}; set merge.svd_rank`, 'merge.svd_rank');
  }
  // PEFT refuses to mix a regex-string target_modules with list ones (a missing list is PEFT's default list).
  const isRegex = parsed.map((p) => typeof p.config.target_modules === 'string' && p.config.target_modules !== 'all-linear');
  const k = isRegex.findIndex((x) => x !== isRegex[0]);
  if (k > 0) {
    bad(`adapters[${k}] (${names[k]}) and adapters[0] (${names[0]}) mix a regex-string target_modules with a list: PEFT add_weighted_adapter does not combine them`, `adapters[${k}]`);
  }

  const specs = [];
  for (const p of parsed) specs.push(await buildLoadSpec(p, info));
  const readers: AdapterTensors[] = [];
  try {
    for (let i = 0; i < parsed.length; i++) readers.push(await AdapterTensors.open(parsed[i]!, specs[i]!));
    // Union of targets, in base order (layer-major, modulesOf(info) order).
    const modules = baseModules(info).filter((m) => readers.some((r) => r.has(m.name)));
    // Rank of each merged module. cat / svd: `rank` everywhere. The task-arithmetic strategies
    // stack the inputs' A and B per module, so a module keeps the rank its inputs have there
    // (rank_pattern); PEFT assigns the stacked result in place (`target_lora_A.data = ...`), so
    // its merged module has that rank with scaling lora_alpha / r = 1: written below as
    // rank_pattern / alpha_pattern entries, which reload to exactly PEFT's in-memory result.
    const moduleRank = new Map<string, number>();
    for (const m of modules) {
      if (!EQUAL_RANKS.has(strategy)) {
        moduleRank.set(m.name, rank);
        continue;
      }
      // Per-module ranks must agree across inputs: PEFT would fail stacking the tensors.
      const rs = parsed.map((p) => p.targets.find((t) => t.name === m.name)?.rank);
      const present = rs.map((r, i) => [r, i] as const).filter(([r]) => r !== undefined);
      const bad1 = present.find(([r]) => r !== present[0]![0]);
      if (bad1) bad(`adapters[${bad1[1]}] (${names[bad1[1]]}) has rank ${bad1[0]} at ${m.name} but adapters[${present[0]![1]}] has ${present[0]![0]}: ${strategy} needs equal ranks`, `adapters[${bad1[1]}]`);
      moduleRank.set(m.name, present[0]![0]!);
    }
    const rankOf = (m: { name: string }) => moduleRank.get(m.name)!;
    const dims = (m: { module: LoraModule }) => moduleDims(info, m.module); // shapes come from the base
    const decls: TensorDecl[] = [];
    for (const m of modules) {
      const d = dims(m);
      const key = `base_model.model.${m.name}`;
      decls.push({ name: `${key}.lora_A.weight`, shape: [rankOf(m), d.in] }, { name: `${key}.lora_B.weight`, shape: [d.out, rankOf(m)] });
    }
    // PEFT get_pattern_key keys are regexes: the module's full name with its dots escaped.
    const pattern: Record<string, number> = {};
    for (const m of modules) if (rankOf(m) !== rank) pattern[m.name.replace(/\./g, '\\.')] = rankOf(m);

    await mkdir(outDir, { recursive: true });
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const tmpWeights = join(outDir, `.adapter_model.safetensors.${tag}.tmp`);
    const tmpConfig = join(outDir, `.adapter_config.json.${tag}.tmp`);
    const writer = await SafetensorsWriter.create(tmpWeights, decls, { format: 'pt', openlora_merge: strategy });
    try {
      for (const m of modules) {
        const d = dims(m);
        const present: Array<{ pair: LoraPair; w: number; i: number }> = [];
        for (let i = 0; i < readers.length; i++) {
          const pair = await readers[i]!.read(m.name);
          if (pair) present.push({ pair, w: spec.adapters[i]!.weight, i });
        }
        const { A, B } = mergeModule(strategy, m.name, present, rankOf(m), d, spec);
        const key = `base_model.model.${m.name}`;
        await writer.write(`${key}.lora_A.weight`, A);
        await writer.write(`${key}.lora_B.weight`, B);
        await yieldToLoop(); // NOTE: chunked per module; see the header about a worker thread
      }
      await writer.close();
    } catch (err) {
      await writer.abort();
      await rm(tmpWeights, { force: true });
      throw err;
    }

    const kinds = modulesOf(info).filter((mod) => modules.some((m) => m.module === mod));
    const full = modules.length === kinds.length * info.numHiddenLayers;
    const config = {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: rank,
      lora_alpha: rank,
      // Kinds when every layer has them, else the exact module names (PEFT list suffix matching).
      target_modules: full ? kinds : modules.map((m) => m.name),
      use_rslora: false,
      bias: 'none',
      fan_in_fan_out: false,
      lora_dropout: 0,
      rank_pattern: pattern,
      alpha_pattern: pattern,
      inference_mode: true,
      openlora_merge: {
        strategy, adapters: spec.adapters.map((a, i) => ({ name: names[i], weight: a.weight })),
        density: spec.density ?? null, majority_sign_method: spec.majoritySignMethod ?? null,
        svd_rank: spec.svdRank ?? null, svd_clamp: spec.svdClamp ?? null, seed: spec.seed ?? null,
      },
    };
    try {
      await writeFile(tmpConfig, JSON.stringify(config, null, 2) + '\n');
      await rename(tmpWeights, join(outDir, 'adapter_model.safetensors'));
      await rename(tmpConfig, join(outDir, 'adapter_config.json'));
    } catch (err) {
      await rm(tmpWeights, { force: true });
      await rm(tmpConfig, { force: true });
      throw err;
    }
    return { dir: outDir, strategy, rank, alpha: rank, modules: modules.map((m) => m.name), key: canonicalMergeKey(spec) };
  } finally {
    for (const r of readers) await r.close();
  }
}

/**
 * One module of the new adapter: A [rank, in], B [out, rank].
 * `present` holds the inputs that target this module, with their request weight and index.
 */
export function mergeModule(
  strategy: MergeStrategy, moduleName: string, present: Array<{ pair: LoraPair; w: number; i: number }>, rank: number,
  d: { in: number; out: number }, o: Pick<MergeSpec, 'density' | 'majoritySignMethod' | 'seed' | 'svdClamp'>,
): { A: Float32Array; B: Float32Array } {
  const seed = o.seed ?? 0;
  const opts = { density: o.density, majoritySignMethod: o.majoritySignMethod };
  if (strategy === 'cat') {
    // A rows / B columns of adapter i at its offset; absent adapters leave zeros (PEFT zero-fills).
    const A = new Float32Array(rank * d.in);
    const B = new Float32Array(d.out * rank);
    let off = 0;
    for (const { pair, w } of present) {
      const c = w * pair.scaling;
      for (let k = 0; k < pair.rank * d.in; k++) A[off * d.in + k] = pair.A[k]! * c;
      for (let r = 0; r < d.out; r++) for (let k = 0; k < pair.rank; k++) B[r * rank + off + k] = pair.B[r * pair.rank + k]!;
      off += pair.rank;
    }
    return { A, B };
  }
  if (strategy === 'svd') {
    // delta = sum_i (w_i s_i) (s_i B_i A_i), as PEFT: its SVD from the factors, never dense.
    const terms = present.map(({ pair, w }) => ({ B: pair.B, A: pair.A, r: pair.rank, c: w * pair.scaling * pair.scaling }));
    return lowRankSvdFactors(terms, d.out, d.in, rank, o.svdClamp);
  }
  if (strategy.endsWith('svd')) {
    const kind = strategy.slice(0, -4) as TaskMerge;
    const deltas = present.map(({ pair }) => deltaWeight(pair.B, pair.A, d.out, pair.rank, d.in, pair.scaling));
    const weights = present.map(({ pair, w }) => w * pair.scaling);
    const rngs = present.map(({ i }) => substream(seed, `${moduleName}.delta#${i}`));
    const delta = mergeTaskTensors(kind, deltas, weights, { ...opts, rngs });
    return svdFactors(delta, d.out, d.in, rank, o.svdClamp);
  }
  const kind = strategy as TaskMerge;
  const { a, b } = abWeights(present.map((p) => p.w), present.map((p) => p.pair.scaling));
  const rngsA = present.map(({ i }) => substream(seed, `${moduleName}.lora_A#${i}`));
  const rngsB = present.map(({ i }) => substream(seed, `${moduleName}.lora_B#${i}`));
  const A = mergeTaskTensors(kind, present.map((p) => p.pair.A), a, { ...opts, rngs: rngsA });
  const B = mergeTaskTensors(kind, present.map((p) => p.pair.B), b, { ...opts, rngs: rngsB });
  return { A, B };
}
