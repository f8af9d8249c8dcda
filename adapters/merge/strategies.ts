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
import { EigenvalueDecomposition, Matrix, QrDecomposition, SingularValueDecomposition } from 'ml-matrix';

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
 */
export function magnitudeBasedPruning(t: Float32Array, density: number): Float32Array {
  const k = Math.trunc(density * t.length); // Python int() truncates toward zero
  const out = new Float32Array(t.length);
  if (k <= 0) return out;
  const idx = Array.from({ length: t.length }, (_, i) => i);
  idx.sort((a, b) => Math.abs(t[b]!) - Math.abs(t[a]!) || a - b);
  for (let j = 0; j < k; j++) out[idx[j]!] = t[idx[j]!]!;
  return out;
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
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (const t of tensors) s += method === 'total' ? t[j]! : sign(t[j]!);
    const elected = s >= 0 ? 1 : -1;
    tensors.forEach((t, i) => void (masks[i]![j] = sign(t[j]!) === elected ? 1 : 0));
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
    tensors.forEach((t, i) => {
      if (masks[i]![j]) {
        s += t[j]!;
        c++;
      }
    });
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
 * The SVD step of PEFT `_svd_generalized_task_arithmetic_weighted_adapter` (after kohya-ss
 * sd-scripts `svd_merge_lora.py`): delta = U S V^T; B = U[:, :r] diag(S[:r]) -> [out, rank],
 * A = V^T[:r, :] -> [rank, in]. With `clamp` (PEFT `svd_clamp`, default None) both are clamped to
 * +-quantile(concat(B, A), clamp). When rank > min(out, in), the extra rows of A / columns of B are
 * zero (PEFT would keep the smaller tensors; the product is the same).
 * Singular vectors are unique only up to sign, so B and A may differ from torch's by a sign per
 * component; B A does not.
 * @param delta [out, in] row-major
 */
export function svdFactors(delta: Float32Array, out: number, inF: number, rank: number, clamp?: number): { A: Float32Array; B: Float32Array } {
  // NOTE(why): the singular pairs come from the eigenvectors of the Gram matrix of the smaller
  // side (D^T D [in, in] when in <= out, else D D^T): ml-matrix's one-sided SVD of a 704x256
  // module took ~2.3 s, this ~0.6 s with B A equal to it within 1e-9 relative (double precision;
  // only components below ~1e-8 of the largest singular value lose accuracy, and they are noise).
  const tall = inF <= out;
  const n = tall ? inF : out;  // Gram size
  const G = new Matrix(n, n);
  const g = new Float64Array(n * n);
  if (tall) {
    for (let o = 0; o < out; o++) {
      const row = o * inF;
      for (let i = 0; i < inF; i++) {
        const di = delta[row + i]!;
        if (di === 0) continue;
        for (let j = i; j < inF; j++) g[i * n + j]! += di * delta[row + j]!;
      }
    }
  } else {
    for (let a = 0; a < out; a++) {
      for (let b = a; b < out; b++) {
        let acc = 0;
        for (let i = 0; i < inF; i++) acc += delta[a * inF + i]! * delta[b * inF + i]!;
        g[a * n + b] = acc;
      }
    }
  }
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) G.set(i, j, g[i * n + j]!).set(j, i, g[i * n + j]!);
  const eig = new EigenvalueDecomposition(G, { assumeSymmetric: true });
  const lambda = eig.realEigenvalues;
  const vecs = eig.eigenvectorMatrix;
  const order = lambda.map((_, i) => i).sort((a, b) => lambda[b]! - lambda[a]! || a - b);
  const k = Math.min(rank, n);
  const B = new Float32Array(out * rank);
  const A = new Float32Array(rank * inF);
  const top = Math.sqrt(Math.max(lambda[order[0]!]!, 0));
  for (let j = 0; j < k; j++) {
    const c = order[j]!;
    const sigma = Math.sqrt(Math.max(lambda[c]!, 0));
    if (tall) {
      // v = eigenvector: A row = v^T, B column = D v (= sigma u)
      for (let i = 0; i < inF; i++) A[j * inF + i] = vecs.get(i, c);
      for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let i = 0; i < inF; i++) acc += delta[o * inF + i]! * vecs.get(i, c);
        B[o * rank + j] = acc;
      }
    } else if (sigma > 1e-12 * top) {
      // u = eigenvector: B column = sigma u, A row = u^T D / sigma
      for (let o = 0; o < out; o++) B[o * rank + j] = vecs.get(o, c) * sigma;
      for (let i = 0; i < inF; i++) {
        let acc = 0;
        for (let o = 0; o < out; o++) acc += vecs.get(o, c) * delta[o * inF + i]!;
        A[j * inF + i] = acc / sigma;
      }
    }
  }
  clampFactors(A, B, out, inF, rank, k, clamp);
  return { A, B };
}

/**
 * svdFactors of delta = sum_j B_j A_j (B_j [out, r_j], A_j [r_j, in], coefficients folded in)
 * without forming delta: with Bc = [B_1 .. B_n] [out, R] and Ac = [A_1; ..; A_n] [R, in]
 * (R = sum r_j), QR gives Bc = Qb Rb and Ac^T = Qa Ra, so delta = Qb (Rb Ra^T) Qa^T and the SVD
 * of the R x R core C = Uc S Vc^T gives U = Qb Uc, V = Qa Vc (the low-rank SVD of Halko et al.
 * 2011, sec. 5.1, exact here because the rank is known). O((out + in) R^2 + R^3) instead of the
 * dense SVD's O(out in min(out, in)): at 704 x 256 with R = 12, milliseconds instead of ~0.65 s.
 * Falls back to svdFactors when R > min(out, in) (the delta's rank is then at most min(out, in)).
 * @param terms each { B: [out, r] row-major, A: [r, in] row-major, r, c } contributes c * B A.
 */
export function lowRankSvdFactors(
  terms: Array<{ B: Float32Array; A: Float32Array; r: number; c: number }>, out: number, inF: number, rank: number, clamp?: number,
): { A: Float32Array; B: Float32Array } {
  const R = terms.reduce((n, t) => n + t.r, 0);
  if (R === 0) return { A: new Float32Array(rank * inF), B: new Float32Array(out * rank) };
  if (R > Math.min(out, inF)) {
    const delta = new Float32Array(out * inF);
    for (const t of terms) {
      const d = deltaWeight(t.B, t.A, out, t.r, inF, t.c);
      for (let j = 0; j < d.length; j++) delta[j]! += d[j]!;
    }
    return svdFactors(delta, out, inF, rank, clamp);
  }
  const Bc = new Matrix(out, R);
  const AcT = new Matrix(inF, R);
  let off = 0;
  for (const t of terms) {
    for (let o = 0; o < out; o++) for (let k = 0; k < t.r; k++) Bc.set(o, off + k, t.c * t.B[o * t.r + k]!);
    for (let k = 0; k < t.r; k++) for (let i = 0; i < inF; i++) AcT.set(i, off + k, t.A[k * inF + i]!);
    off += t.r;
  }
  const qb = new QrDecomposition(Bc);
  const qa = new QrDecomposition(AcT);
  const core = qb.upperTriangularMatrix.mmul(qa.upperTriangularMatrix.transpose());  // [R, R]
  const svd = new SingularValueDecomposition(core);
  const U = qb.orthogonalMatrix.mmul(svd.leftSingularVectors);  // [out, R]
  const V = qa.orthogonalMatrix.mmul(svd.rightSingularVectors);  // [in, R]
  return factorsOf(U, svd.diagonal, V, out, inF, rank, clamp);
}

/** B = U[:, :k] diag(S[:k]), A = V[:, :k]^T with k = min(rank, |S|), zero-padded to rank; then svd_clamp (see svdFactors). */
function factorsOf(U: Matrix, S: number[], V: Matrix, out: number, inF: number, rank: number, clamp?: number): { A: Float32Array; B: Float32Array } {
  const k = Math.min(rank, S.length);
  const B = new Float32Array(out * rank);
  const A = new Float32Array(rank * inF);
  for (let o = 0; o < out; o++) for (let j = 0; j < k; j++) B[o * rank + j] = U.get(o, j) * S[j]!;
  for (let j = 0; j < k; j++) for (let i = 0; i < inF; i++) A[j * inF + i] = V.get(i, j);
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
