/**
 * Truncated SVDs for the svd merges (./strategies.ts), on row-major Float64Array matrices.
 *
 * - `lowRankTruncatedSvd`: delta = Bc Ac with Bc [out, R], Ac [R, in] given as factors, never
 *   formed. Exact (up to the Gram step's rounding, below): O((out + in) R^2 + R^3).
 * - `randomizedTruncatedSvd`: a dense delta [out, in], by Halko, Martinsson & Tropp (2011),
 *   "Finding structure with randomness", Algorithm 4.4 (randomized subspace iteration: q power
 *   iterations, re-orthonormalized after every product) followed by Algorithm 5.1 (direct SVD of
 *   the small B = Q^T A). O(out in (k + p) (2q + 2)). Gaussian test matrix from a fixed seed, so
 *   a merge is deterministic.
 *
 * NOTE(why): the small SVDs go through the eigendecomposition of a k x k Gram matrix (ml-matrix,
 * tridiagonal QL): singular values come out as sqrt(eigenvalues), accurate to ~1e-8 of the largest
 * (double precision), which is what a rank-k truncation keeps; components below that are noise.
 */
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { mulberry32 } from './strategies.ts';

/** A truncated SVD: U [m, k] and V [n, k] row-major with orthonormal columns, S descending, k <= requested. */
export interface TruncatedSvd {
  U: Float64Array;
  S: Float64Array;
  V: Float64Array;
  k: number;
}

/** C = A B for A [m, n], B [n, p] row-major -> [m, p] (i-k-j order: contiguous inner loop). */
export function matmul(A: ArrayLike<number>, B: ArrayLike<number>, m: number, n: number, p: number): Float64Array {
  const C = new Float64Array(m * p);
  for (let i = 0; i < m; i++) {
    const ci = i * p;
    for (let k = 0; k < n; k++) {
      const a = A[i * n + k]!;
      if (a === 0) continue;
      const bk = k * p;
      for (let j = 0; j < p; j++) C[ci + j]! += a * B[bk + j]!;
    }
  }
  return C;
}

/** C = A^T B for A [m, n], B [m, p] row-major -> [n, p]. */
export function matmulTN(A: ArrayLike<number>, B: ArrayLike<number>, m: number, n: number, p: number): Float64Array {
  const C = new Float64Array(n * p);
  for (let r = 0; r < m; r++) {
    const br = r * p;
    for (let i = 0; i < n; i++) {
      const a = A[r * n + i]!;
      if (a === 0) continue;
      const ci = i * p;
      for (let j = 0; j < p; j++) C[ci + j]! += a * B[br + j]!;
    }
  }
  return C;
}

/** G = X^T X for X [m, n] row-major -> [n, n] (symmetric; upper triangle computed, mirrored). */
export function gramCols(X: ArrayLike<number>, m: number, n: number): Float64Array {
  const G = new Float64Array(n * n);
  for (let r = 0; r < m; r++) {
    const xr = r * n;
    for (let i = 0; i < n; i++) {
      const a = X[xr + i]!;
      if (a === 0) continue;
      const gi = i * n;
      for (let j = i; j < n; j++) G[gi + j]! += a * X[xr + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) G[i * n + j] = G[j * n + i]!;
  return G;
}

/** G = X X^T for X [m, n] row-major -> [m, m] (row dot products). */
export function gramRows(X: ArrayLike<number>, m: number, n: number): Float64Array {
  const G = new Float64Array(m * m);
  for (let a = 0; a < m; a++) {
    for (let b = a; b < m; b++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += X[a * n + i]! * X[b * n + i]!;
      G[a * m + b] = s;
      G[b * m + a] = s;
    }
  }
  return G;
}

/**
 * Eigenpairs of a symmetric G [n, n], largest first: values (clamped at 0) and vectors as the
 * columns of [n, n] row-major.
 */
export function symEig(G: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const M = new Matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) M.set(i, j, G[i * n + j]!);
  const eig = new EigenvalueDecomposition(M, { assumeSymmetric: true });
  const lambda = eig.realEigenvalues;
  const vecs = eig.eigenvectorMatrix;
  const order = lambda.map((_, i) => i).sort((a, b) => lambda[b]! - lambda[a]! || a - b);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((c, j) => {
    values[j] = Math.max(lambda[c]!, 0);
    for (let i = 0; i < n; i++) vectors[i * n + j] = vecs.get(i, c);
  });
  return { values, vectors };
}

/**
 * Orthonormalize the columns of Y [m, l] row-major in place (classical Gram-Schmidt applied twice,
 * "CGS2": orthogonal to working precision). A column that vanishes (dependent on the previous ones)
 * is set to zero. @returns Y
 */
export function orthonormalizeCols(Y: Float64Array, m: number, l: number): Float64Array {
  const col = new Float64Array(m);
  const h = new Float64Array(l);
  for (let j = 0; j < l; j++) {
    for (let r = 0; r < m; r++) col[r] = Y[r * l + j]!;
    let n0 = 0;
    for (let r = 0; r < m; r++) n0 += col[r]! * col[r]!;
    const norm0 = Math.sqrt(n0);
    for (let pass = 0; pass < 2; pass++) {
      h.fill(0, 0, j);
      for (let r = 0; r < m; r++) {
        const c = col[r]!;
        if (c === 0) continue;
        const yr = r * l;
        for (let i = 0; i < j; i++) h[i]! += Y[yr + i]! * c;
      }
      for (let r = 0; r < m; r++) {
        const yr = r * l;
        let s = 0;
        for (let i = 0; i < j; i++) s += Y[yr + i]! * h[i]!;
        col[r]! -= s;
      }
    }
    let n2 = 0;
    for (let r = 0; r < m; r++) n2 += col[r]! * col[r]!;
    const norm = Math.sqrt(n2);
    const inv = norm > 1e-12 * norm0 ? 1 / norm : 0;  // 0 > 0 is false: a zero column stays zero
    for (let r = 0; r < m; r++) Y[r * l + j] = col[r]! * inv;
  }
  return Y;
}

/** Standard normal deviates (Box-Muller) from a seeded mulberry32 stream. */
export function gaussian(n: number, seed: number): Float64Array {
  const rng = mulberry32(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = 1 - rng();  // (0, 1]
    const v = rng();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/**
 * SVD of a short-and-wide B [l, n] (l small) via the eigenvectors of B B^T [l, l]:
 * B = W diag(S) Vt with V = B^T W diag(1/S). Components with S <= 1e-12 S_max are dropped.
 * @returns W [l, k], S [k], V [n, k] (k <= min(kMax, l))
 */
function smallSvd(Bs: Float64Array, l: number, n: number, kMax: number): { W: Float64Array; S: Float64Array; V: Float64Array; k: number } {
  const { values, vectors } = symEig(gramRows(Bs, l, n), l);
  const top = Math.sqrt(values[0] ?? 0);
  let k = 0;
  while (k < Math.min(kMax, l) && Math.sqrt(values[k]!) > 1e-12 * top && top > 0) k++;
  const W = new Float64Array(l * k);
  const S = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    S[j] = Math.sqrt(values[j]!);
    for (let i = 0; i < l; i++) W[i * k + j] = vectors[i * l + j]!;
  }
  const V = matmulTN(Bs, W, l, n, k);  // [n, k] = B^T W
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) V[i * k + j]! /= S[j]!;
  return { W, S, V, k };
}

/**
 * Exact truncated SVD of delta = Bc Ac without forming it (Halko et al. 2011 sec. 5.1 with the
 * range known exactly): Gb = Bc^T Bc = Vb diag(lb) Vb^T gives Bc = Qb Pb^T with Qb = Bc Vb lb^-1/2
 * orthonormal and Pb = Vb lb^1/2, so delta = Qb T with T = Pb^T Ac [R', in]; the SVD of T
 * (smallSvd) = W S V^T gives U = Qb W = Bc (Vb lb^-1/2 W).
 * Directions of Bc with lb <= 1e-14 lb_max (numerically dependent columns) are dropped: the product
 * loses ~1e-7 of its norm at most.
 * @param Bc [out, R] row-major, @param Ac [R, in] row-major
 * @param k the rank kept (components past the numerical rank are not returned)
 */
export function lowRankTruncatedSvd(Bc: Float64Array, Ac: Float64Array, out: number, R: number, inF: number, k: number): TruncatedSvd {
  const { values, vectors } = symEig(gramCols(Bc, out, R), R);
  let r = 0;
  while (r < R && values[r]! > 1e-14 * values[0]! && values[0]! > 0) r++;
  // Pb^T [r, R]: row j = sqrt(lb_j) * Vb[:, j]^T; Mb [R, r]: column j = Vb[:, j] / sqrt(lb_j).
  const PbT = new Float64Array(r * R);
  const Mb = new Float64Array(R * r);
  for (let j = 0; j < r; j++) {
    const s = Math.sqrt(values[j]!);
    for (let i = 0; i < R; i++) {
      PbT[j * R + i] = vectors[i * R + j]! * s;
      Mb[i * r + j] = vectors[i * R + j]! / s;
    }
  }
  const T = matmul(PbT, Ac, r, R, inF);  // [r, in]
  const { W, S, V, k: kk } = smallSvd(T, r, inF, k);
  const U = matmul(Bc, matmul(Mb, W, R, r, kk), out, R, kk);  // [out, kk]
  return { U, S, V, k: kk };
}

/** Options of randomizedTruncatedSvd. */
export interface RandomizedSvdOptions {
  /** Oversampling p (Halko et al. sec. 4.2: 5-10 is enough; default 10). */
  oversample?: number;
  /** Power iterations q (Algorithm 4.4; default 1). */
  powerIters?: number;
  /** Seed of the Gaussian test matrix (default 0). */
  seed?: number;
}

/**
 * Randomized truncated SVD of a dense D [out, in] (row-major, float32 or float64): Halko,
 * Martinsson & Tropp 2011, Algorithm 4.4 (Y0 = D Omega, Q0 = orth(Y0); for j = 1..q:
 * Qt = orth(D^T Q), Q = orth(D Qt)) with l = min(k + p, out, in) columns, then Algorithm 5.1
 * (B = Q^T D [l, in], B = W S V^T, U = Q W), truncated to k.
 * Deterministic for a given seed.
 */
export function randomizedTruncatedSvd(D: ArrayLike<number>, out: number, inF: number, k: number, o: RandomizedSvdOptions = {}): TruncatedSvd {
  const l = Math.min(k + (o.oversample ?? 10), out, inF);
  const q = o.powerIters ?? 1;
  const omega = gaussian(inF * l, o.seed ?? 0);  // [in, l]
  let Q = orthonormalizeCols(matmul(D, omega, out, inF, l), out, l);  // [out, l]
  for (let it = 0; it < q; it++) {
    const Qt = orthonormalizeCols(matmulTN(D, Q, out, inF, l), inF, l);  // [in, l]
    Q = orthonormalizeCols(matmul(D, Qt, out, inF, l), out, l);
  }
  // B = Q^T D [l, in], computed as (D^T Q)^T.
  const DtQ = matmulTN(D, Q, out, inF, l);  // [in, l]
  const Bs = new Float64Array(l * inF);
  for (let i = 0; i < inF; i++) for (let j = 0; j < l; j++) Bs[j * inF + i] = DtQ[i * l + j]!;
  const { W, S, V, k: kk } = smallSvd(Bs, l, inF, k);
  return { U: matmul(Q, W, out, l, kk), S, V, k: kk };
}
