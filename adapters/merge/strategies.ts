/**
 * The math of PEFT's adapter merges, on flat Float32Array tensors: one function per function of
 * huggingface/peft `src/peft/utils/merge_utils.py`, plus the SVD step of
 * `LoraModel._svd_generalized_task_arithmetic_weighted_adapter` (`src/peft/tuners/lora/model.py`).
 *
 * Conventions:
 * - A "task tensor" is one adapter's lora_A [r, in], lora_B [out, r] or full delta [out, in],
 *   row-major, flattened. All task tensors of one call have the same length; the element-wise
 *   functions never need the shape (only `svdFactors` does, and takes it).
 * - PEFT stacks the task tensors on a new dim 0; here they are a `Float32Array[]` in adapter order.
 * - Arithmetic is done in float64 per element and stored as float32 (PEFT computes in the float32
 *   adapter weights: results agree to float32 rounding, not bit for bit).
 * - Pure: inputs are never modified; every function returns new arrays.
 *
 * Documented differences from PEFT:
 * - `random_pruning` draws its Bernoulli(density) mask from `torch.bernoulli`; here it comes from a
 *   seeded PRNG (`mulberry32`, one sub-stream per tensor, see `substream`), so a merge is
 *   reproducible for a given seed but not bit-identical to torch's random stream.
 * - `torch.topk` does not specify which of equal magnitudes it keeps; `magnitudeBasedPruning`
 *   keeps the lower flat index.
 */
import { gramCols, gramRows, lowRankTruncatedSvd, matmul, matmulTN, randomizedTruncatedSvd, symEig, type TruncatedSvd } from './linalg.ts';

/** `majority_sign_method` of PEFT `calculate_majority_sign_mask`. */
export type MajoritySignMethod = 'total' | 'frequency';

/** A uniform [0, 1) generator. */
export type Rng = () => number;

/**
 * mulberry32: a small, fast 32-bit PRNG (Tommy Ettinger's public-domain generator). Good enough for
 * Bernoulli masks; not cryptographic.
 * @param seed any integer (taken mod 2^32)
 */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * An independent stream for one tensor: mulberry32 seeded by FNV-1a(`label`) mixed with `seed`.
 * Labels name the tensor (e.g. `model.layers.0.self_attn.q_proj.lora_A#1`), so the draws of one
 * tensor do not depend on how many other tensors were pruned before it.
 */
export function substream(seed: number, label: string): Rng {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  h = Math.imul(h ^ Math.floor(seed / 4294967296), 0x01000193) >>> 0; // high bits of a safe-integer seed
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  return mulberry32(h);
}

/**
 * PEFT `magnitude_based_pruning`: keep the k = int(density * numel) entries of largest |value|,
 * zero the rest. Ties in |value| keep the lower index (torch.topk leaves this unspecified).
 * NOTE(why): the k-th largest |value| comes from a selection (`kthSmallest`, O(n)) instead of a
 * sort of indices with a comparator (O(n log n) calls: ~1 s for a 960 x 2560 delta).
 */
export function magnitudeBasedPruning(t: Float32Array, density: number): Float32Array {
  const k = Math.trunc(density * t.length); // Python int() truncates toward zero
  const out = new Float32Array(t.length);
  if (k <= 0) return out;
  const mags = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) mags[i] = Math.abs(t[i]!);
  const thr = kthSmallest(mags, t.length - k);  // the k-th largest |value|
  let above = 0;
  for (let i = 0; i < t.length; i++) if (Math.abs(t[i]!) > thr) above++;
  let ties = k - above;  // entries equal to the threshold kept, lowest index first
  for (let i = 0; i < t.length; i++) {
    const m = Math.abs(t[i]!);
    if (m > thr || (m === thr && ties-- > 0)) out[i] = t[i]!;
  }
  return out;
}

/** The value of rank `j` (0-based) in ascending order of `a` (Hoare's quickselect, median of three); reorders `a`. */
function kthSmallest(a: Float32Array, j: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    const x = a[lo]!, y = a[mid]!, z = a[hi]!;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let e = hi;
    while (i <= e) {
      while (a[i]! < pivot) i++;
      while (a[e]! > pivot) e--;
      if (i <= e) {
        const tmp = a[i]!;
        a[i] = a[e]!;
        a[e] = tmp;
        i++;
        e--;
      }
    }
    if (j <= e) hi = e;
    else if (j >= i) lo = i;
    else return a[j]!;
  }
  return a[j]!;
}

/**
 * PEFT `random_pruning`: keep each entry with probability `density` (PEFT: torch.bernoulli; here
 * `rng() < density`), then divide by density when `rescale` (DARE's expectation-preserving rescale).
 */
export function randomPruning(t: Float32Array, density: number, rescale: boolean, rng: Rng): Float32Array {
  const out = new Float32Array(t.length);
  for (let i = 0; i < t.length; i++) {
    const keep = rng() < density;
    if (keep) out[i] = rescale ? t[i]! / density : t[i]!;
  }
  return out;
}

/**
 * PEFT `prune`: density >= 1 returns the tensor unchanged (no rescale); density < 0 is an error.
 * @param rng required for method "random"
 */
export function prune(t: Float32Array, density: number, method: 'magnitude' | 'random', rescale = false, rng?: Rng): Float32Array {
  if (density >= 1) return t;
  if (density < 0) throw new RangeError(`Density should be >= 0, got ${density}`);
  if (method === 'magnitude') return magnitudeBasedPruning(t, density);
  if (!rng) throw new TypeError('random pruning needs an rng');
  return randomPruning(t, density, rescale, rng);
}

const sign = (x: number): number => (x > 0 ? 1 : x < 0 ? -1 : 0);

/**
 * PEFT `calculate_majority_sign_mask` on the stacked (pruned, *unweighted*) task tensors:
 * "total" elects the sign of sum_i t_i, "frequency" the sign of sum_i sign(t_i); a sum of 0
 * elects +1. mask_i[j] = sign(t_i[j]) == elected[j], so zeros are never in the mask.
 * @returns one 0/1 mask per task tensor
 */
export function calculateMajoritySignMask(tensors: Float32Array[], method: MajoritySignMethod = 'total'): Uint8Array[] {
  const n = tensors[0]!.length;
  const masks = tensors.map(() => new Uint8Array(n));
  const total = method === 'total';
  for (let j = 0; j < n; j++) {  // NOTE(why): plain loops, no closures: this runs per element of every dense delta
    let s = 0;
    for (let i = 0; i < tensors.length; i++) s += total ? tensors[i]![j]! : sign(tensors[i]![j]!);
    const elected = s >= 0 ? 1 : -1;
    for (let i = 0; i < tensors.length; i++) masks[i]![j] = sign(tensors[i]![j]!) === elected ? 1 : 0;
  }
  return masks;
}

/** PEFT `disjoint_merge`: sum_i mask_i * t_i / max(sum_i mask_i, 1), element-wise. */
export function disjointMerge(tensors: Float32Array[], masks: Uint8Array[]): Float32Array {
  const n = tensors[0]!.length;
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    let c = 0;
    for (let i = 0; i < tensors.length; i++) {
      if (masks[i]![j]) {
        s += tensors[i]![j]!;
        c++;
      }
    }
    out[j] = s / Math.max(c, 1);
  }
  return out;
}

/** t_i * w_i, element-wise (PEFT `task_tensors * reshape_weight_task_tensors(weights)`). */
function weighted(tensors: Float32Array[], weights: readonly number[]): Float32Array[] {
  return tensors.map((t, i) => {
    const w = weights[i]!;
    const out = new Float32Array(t.length);
    for (let j = 0; j < t.length; j++) out[j] = t[j]! * w;
    return out;
  });
}

/** sum_i t_i. */
function sum(tensors: Float32Array[]): Float32Array {
  const out = new Float32Array(tensors[0]!.length);
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (const t of tensors) s += t[j]!;
    out[j] = s;
  }
  return out;
}

/** PEFT `task_arithmetic`: sum_i w_i t_i. */
export function taskArithmetic(tensors: Float32Array[], weights: readonly number[]): Float32Array {
  return sum(weighted(tensors, weights));
}

/** PEFT `magnitude_prune`: sum_i w_i magnitude_prune(t_i, density). */
export function magnitudePrune(tensors: Float32Array[], weights: readonly number[], density: number): Float32Array {
  return sum(weighted(tensors.map((t) => prune(t, density, 'magnitude')), weights));
}

/**
 * PEFT `ties`: magnitude-prune each t_i, elect signs on the pruned (unweighted) tensors, then
 * disjoint-merge the weighted pruned tensors.
 */
export function ties(tensors: Float32Array[], weights: readonly number[], density: number, method: MajoritySignMethod = 'total'): Float32Array {
  const pruned = tensors.map((t) => prune(t, density, 'magnitude'));
  const masks = calculateMajoritySignMask(pruned, method);
  return disjointMerge(weighted(pruned, weights), masks);
}

/** PEFT `dare_linear`: sum_i w_i random_prune(t_i, density, rescale). `rngs[i]` drives tensor i. */
export function dareLinear(tensors: Float32Array[], weights: readonly number[], density: number, rngs: Rng[]): Float32Array {
  return sum(weighted(tensors.map((t, i) => prune(t, density, 'random', true, rngs[i])), weights));
}

/** PEFT `dare_ties`: random-prune with rescale, elect signs, disjoint-merge the weighted tensors. */
export function dareTies(
  tensors: Float32Array[], weights: readonly number[], density: number, method: MajoritySignMethod, rngs: Rng[],
): Float32Array {
  const pruned = tensors.map((t, i) => prune(t, density, 'random', true, rngs[i]));
  const masks = calculateMajoritySignMask(pruned, method);
  return disjointMerge(weighted(pruned, weights), masks);
}

/** The five task-arithmetic family members PEFT applies to A/B or to full deltas. */
export type TaskMerge = 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';

/** Options of `mergeTaskTensors`. `density` is needed by all but linear; `rngs` by the dare ones. */
export interface TaskMergeOptions {
  density?: number;
  majoritySignMethod?: MajoritySignMethod;
  rngs?: Rng[];
}

/**
 * The dispatch of PEFT `_generalized_task_arithmetic_weighted_adapter` (and of the `*_svd`
 * variants before their SVD): linear -> task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune.
 */
export function mergeTaskTensors(kind: TaskMerge, tensors: Float32Array[], weights: readonly number[], o: TaskMergeOptions = {}): Float32Array {
  const density = o.density ?? 1;
  const method = o.majoritySignMethod ?? 'total';
  switch (kind) {
    case 'linear': return taskArithmetic(tensors, weights);
    case 'ties': return ties(tensors, weights, density, method);
    case 'magnitude_prune': return magnitudePrune(tensors, weights, density);
    case 'dare_linear': return dareLinear(tensors, weights, density, o.rngs ?? []);
    case 'dare_ties': return dareTies(tensors, weights, density, method, o.rngs ?? []);
  }
}

/**
 * PEFT's per-adapter factors of the A/B merges: with c_i = w_i * s_i (weight times the adapter's
 * scaling), A gets sign(c_i) * sqrt(|c_i|) and B gets sqrt(|c_i|) (model.py
 * `_generalized_task_arithmetic_weighted_adapter`; the sign goes on one side only, so negative
 * weights subtract).
 */
export function abWeights(weights: readonly number[], scalings: readonly number[]): { a: number[]; b: number[] } {
  const c = weights.map((w, i) => w * scalings[i]!);
  return { a: c.map((x) => (x >= 0 ? 1 : -1) * Math.sqrt(Math.abs(x))), b: c.map((x) => Math.sqrt(Math.abs(x))) };
}

/**
 * PEFT `LoraLayer.get_delta_weight`: scaling * B A for B [out, r], A [r, in] -> [out, in].
 */
export function deltaWeight(B: Float32Array, A: Float32Array, out: number, r: number, inF: number, scaling: number): Float32Array {
  const d = new Float64Array(out * inF);
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < r; k++) {
      const b = B[o * r + k]!;
      if (b === 0) continue;
      const row = k * inF;
      const base = o * inF;
      for (let i = 0; i < inF; i++) d[base + i]! += b * A[row + i]!;
    }
  }
  const res = new Float32Array(out * inF);
  for (let j = 0; j < res.length; j++) res[j] = d[j]! * scaling;
  return res;
}

/** torch.quantile(x, q) with its default linear interpolation. */
export function quantile(x: Float32Array | number[], q: number): number {
  const s = Float64Array.from(x).sort();
  const pos = q * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/**
 * Dense matrices up to this min(out, in) get the exact SVD (`exactSvdFactors`); larger ones the
 * randomized one. NOTE(why): the exact path's Gram eigendecomposition is O(min(out, in)^3) in
 * JavaScript (0.6 s at 704 x 256, several seconds at 960 x 960, per module), the randomized one
 * O(out in (rank + 10) (2q + 2)).
 */
export const EXACT_SVD_MAX_DIM = 128;

/**
 * The SVD step of PEFT `_svd_generalized_task_arithmetic_weighted_adapter` (after kohya-ss
 * sd-scripts `svd_merge_lora.py`) on a dense delta (the `*_svd` strategies: the pruned / sign-elected
 * delta is full rank): delta ~= U S V^T truncated to `rank`; B = U diag(S) -> [out, rank],
 * A = V^T -> [rank, in]. Exact (`exactSvdFactors`) when min(out, in) <= EXACT_SVD_MAX_DIM, else
 * the randomized truncated SVD (linalg.ts `randomizedTruncatedSvd`: Halko, Martinsson & Tropp 2011,
 * Algorithm 4.4, p = 10, q = 1, seed 0: deterministic). With `clamp` (PEFT `svd_clamp`) both are
 * clamped to +-quantile(concat(B, A), clamp). Components past the matrix's rank are zero.
 * @param delta [out, in] row-major float32
 * @returns A [rank, in], B [out, rank] row-major float32
 */
export function svdFactors(delta: Float32Array, out: number, inF: number, rank: number, clamp?: number): { A: Float32Array; B: Float32Array } {
  if (Math.min(out, inF) <= EXACT_SVD_MAX_DIM) return exactSvdFactors(delta, out, inF, rank, clamp);
  return factorsOf(randomizedTruncatedSvd(delta, out, inF, rank, { seed: 0 }), out, inF, rank, clamp);
}

/**
 * The exact truncated SVD of a dense delta [out, in] (row-major float32), from the eigenvectors of
 * the smaller Gram matrix (D^T D [in, in] when in <= out, else D D^T); B = U diag(S) [out, rank],
 * A = V^T [rank, in], as svdFactors. The reference the faster paths are tested against.
 * Singular vectors are unique only up to sign, so B and A may differ from torch's by a sign per
 * component; B A does not.
 */
export function exactSvdFactors(delta: Float32Array, out: number, inF: number, rank: number, clamp?: number): { A: Float32Array; B: Float32Array } {
  // NOTE(why): ml-matrix's one-sided SVD of a 704x256 module took ~2.3 s, this ~0.6 s with B A equal
  // to it within 1e-9 relative (double precision; only components below ~1e-8 of the largest
  // singular value lose accuracy, and they are noise).
  const tall = inF <= out;
  const n = tall ? inF : out;  // Gram size
  const { values, vectors } = symEig(tall ? gramCols(delta, out, inF) : gramRows(delta, out, inF), n);
  const top = Math.sqrt(values[0]!);
  let k = 0;
  while (k < Math.min(rank, n) && top > 0 && Math.sqrt(values[k]!) > 1e-12 * top) k++;
  const S = new Float64Array(k);
  const E = new Float64Array(n * k);  // the top k eigenvectors as columns
  for (let j = 0; j < k; j++) {
    S[j] = Math.sqrt(values[j]!);
    for (let i = 0; i < n; i++) E[i * k + j] = vectors[i * n + j]!;
  }
  // tall: V = E, U = D V / S; wide: U = E, V = D^T U / S.
  const other = tall ? matmul(delta, E, out, inF, k) : matmulTN(delta, E, out, inF, k);
  for (let i = 0; i < other.length; i++) other[i]! /= S[i % k]!;
  return factorsOf(tall ? { U: other, S, V: E, k } : { U: E, S, V: other, k }, out, inF, rank, clamp);
}

/**
 * svdFactors of delta = sum_j c_j B_j A_j (B_j [out, r_j], A_j [r_j, in]) without forming delta
 * (plain `svd`: its delta is a sum of low-rank products): the factors are stacked,
 * Bc = [c_1 B_1 .. c_n B_n] [out, R] and Ac = [A_1; ..; A_n] [R, in] (R = sum r_j), and
 * linalg.ts `lowRankTruncatedSvd` takes the exact SVD of Bc Ac through R x R matrices
 * (Halko et al. 2011 sec. 5.1 with the range known exactly): O((out + in) R^2 + R^3) instead of
 * the dense SVD's O(out in min(out, in)).
 * @param terms each { B: [out, r] row-major, A: [r, in] row-major, r, c } contributes c * B A.
 * @returns A [rank, in], B [out, rank] row-major float32, as svdFactors
 */
export function lowRankSvdFactors(
  terms: Array<{ B: Float32Array; A: Float32Array; r: number; c: number }>, out: number, inF: number, rank: number, clamp?: number,
): { A: Float32Array; B: Float32Array } {
  const R = terms.reduce((n, t) => n + t.r, 0);
  if (R === 0) return { A: new Float32Array(rank * inF), B: new Float32Array(out * rank) };
  const Bc = new Float64Array(out * R);
  const Ac = new Float64Array(R * inF);
  let off = 0;
  for (const t of terms) {
    for (let o = 0; o < out; o++) for (let k = 0; k < t.r; k++) Bc[o * R + off + k] = t.c * t.B[o * t.r + k]!;
    Ac.set(t.A, off * inF);
    off += t.r;
  }
  return factorsOf(lowRankTruncatedSvd(Bc, Ac, out, R, inF, rank), out, inF, rank, clamp);
}

/** B = U diag(S) [out, rank], A = V^T [rank, in] (float32), zero past k; then svd_clamp (see svdFactors). */
function factorsOf(t: TruncatedSvd, out: number, inF: number, rank: number, clamp?: number): { A: Float32Array; B: Float32Array } {
  const k = Math.min(rank, t.k);
  const B = new Float32Array(out * rank);
  const A = new Float32Array(rank * inF);
  for (let o = 0; o < out; o++) for (let j = 0; j < k; j++) B[o * rank + j] = t.U[o * t.k + j]! * t.S[j]!;
  for (let j = 0; j < k; j++) for (let i = 0; i < inF; i++) A[j * inF + i] = t.V[i * t.k + j]!;
  clampFactors(A, B, out, inF, rank, k, clamp);
  return { A, B };
}

/** PEFT's svd_clamp on the first k components of B [out, rank] and A [rank, in], in place (no-op without clamp). */
function clampFactors(A: Float32Array, B: Float32Array, out: number, inF: number, rank: number, k: number, clamp?: number): void {
  if (clamp == null) return;
  const dist: number[] = []; // PEFT: cat(U[:, :k].flatten(), Vh[:k].flatten()), without our zero padding
  for (let o = 0; o < out; o++) for (let j = 0; j < k; j++) dist.push(B[o * rank + j]!);
  for (let j = 0; j < k * inF; j++) dist.push(A[j]!);
  const hi = quantile(dist, clamp);
  const lo = -hi;
  const c = (x: number) => Math.min(Math.max(x, lo), hi); // torch.clamp(min=lo, max=hi)
  for (let j = 0; j < B.length; j++) B[j] = c(B[j]!);
  for (let j = 0; j < A.length; j++) A[j] = c(A[j]!);
}
