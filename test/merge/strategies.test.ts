/**
 * PEFT merge math (adapters/merge/strategies.ts) on small matrices whose expected values are worked
 * out by hand from huggingface/peft merge_utils.py / lora/model.py (derivations in the comments).
 */
import assert from 'node:assert/strict';
import { Matrix, SingularValueDecomposition } from 'ml-matrix';
import { describe, test } from 'node:test';
import { mergeModule } from '../../adapters/merge/materialize.ts';
import {
  calculateMajoritySignMask, dareLinear, dareTies, deltaWeight, lowRankSvdFactors, magnitudePrune, mergeTaskTensors, substream, svdFactors, ties,
  type Rng,
} from '../../adapters/merge/strategies.ts';
import type { LoraPair } from '../../adapters/merge/tensors.ts';

const f = (xs: number[]) => Float32Array.from(xs);
const close = (got: ArrayLike<number>, want: number[], tol = 1e-6, msg = '') => {
  assert.equal(got.length, want.length, `${msg} length`);
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= tol, `${msg}[${i}]: got ${got[i]}, want ${want[i]}`);
};
/** An rng that replays `xs`. */
const replay = (xs: number[]): Rng => {
  let i = 0;
  return () => xs[i++]!;
};
/** [out, r] x [r, in] naive product. */
const matmul = (B: ArrayLike<number>, A: ArrayLike<number>, out: number, r: number, inF: number) => {
  const d: number[] = [];
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
    let s = 0;
    for (let k = 0; k < r; k++) s += B[o * r + k]! * A[k * inF + i]!;
    d.push(s);
  }
  return d;
};

// Two rank-2 adapters of a 3 -> 3 module: A [2, 3], B [3, 2].
//   A1 = [[1, 2, 3], [4, 5, 6]]    B1 = [[1, 0], [0, 1], [1, 1]]    scaling 1, weight 1 -> c1 = 1
//   A2 = [[-1, 0, 2], [3, -3, 1]]  B2 = [[2, 1], [-1, 0], [0, 3]]   scaling 2, weight 2 -> c2 = 4
// PEFT weights A by sign(c) sqrt|c| and B by sqrt|c|: factors 1 and 2 for both.
const A1 = [1, 2, 3, 4, 5, 6];
const A2 = [-1, 0, 2, 3, -3, 1];
const B1 = [1, 0, 0, 1, 1, 1];
const B2 = [2, 1, -1, 0, 0, 3];
const pair = (A: number[], B: number[], scaling: number): LoraPair => ({
  name: 'm', layer: 0, module: 'q_proj', rank: 2, in: 3, out: 3, scaling, A: f(A), B: f(B),
});
const two = (w2 = 2) => [
  { pair: pair(A1, B1, 1), w: 1, i: 0 },
  { pair: pair(A2, B2, 2), w: w2, i: 1 },
];
const d33 = { in: 3, out: 3 };

describe('A/B strategies (PEFT _generalized_task_arithmetic_weighted_adapter)', () => {
  test('linear: A = 1*A1 + 2*A2, B = 1*B1 + 2*B2', () => {
    const { A, B } = mergeModule('linear', 'm', two(), 2, d33, {});
    // A1 + 2 A2 = [1-2, 2+0, 3+4, 4+6, 5-6, 6+2]
    close(A, [-1, 2, 7, 10, -1, 8]);
    // B1 + 2 B2 = [1+4, 0+2, 0-2, 1+0, 1+0, 1+6]
    close(B, [5, 2, -2, 1, 1, 7]);
  });

  test('linear with a negative weight: the sign goes on A only', () => {
    // w2 = -2 -> c2 = -4: A factor -2, B factor +2.
    const { A, B } = mergeModule('linear', 'm', two(-2), 2, d33, {});
    close(A, [3, 2, -1, -2, 11, 4]); // A1 - 2 A2
    close(B, [5, 2, -2, 1, 1, 7]); // B1 + 2 B2
  });

  test('ties, density 0.5, total', () => {
    // k = int(0.5 * 6) = 3. A1 keeps |6|,|5|,|4| -> P1 = [0,0,0,4,5,6]; A2 keeps |3| (idx 3), |-3| (idx 4), |2| -> P2 = [0,0,2,3,-3,0].
    // total: P1 + P2 = [0,0,2,7,2,6] -> elected +1 everywhere (a sum of 0 elects +1).
    // masks: P1 [0,0,0,1,1,1], P2 [0,0,1,1,0,0]; weighted W1 = P1, W2 = 2 P2 = [0,0,4,6,-6,0].
    // disjoint: [0, 0, 4/1, (4+6)/2, 5/1, 6/1]
    const { A } = mergeModule('ties', 'm', two(), 2, d33, { density: 0.5 });
    close(A, [0, 0, 4, 5, 5, 6]);
    close(ties([f(A1), f(A2)], [1, 2], 0.5, 'total'), [0, 0, 4, 5, 5, 6]);
  });

  test('magnitude_prune, density 0.5', () => {
    // P1 + 2 P2 = [0, 0, 4, 4+6, 5-6, 6]
    close(magnitudePrune([f(A1), f(A2)], [1, 2], 0.5), [0, 0, 4, 10, -1, 6]);
    const { A } = mergeModule('magnitude_prune', 'm', two(), 2, d33, { density: 0.5 });
    close(A, [0, 0, 4, 10, -1, 6]);
  });

  test('majority_sign_method total vs frequency differ', () => {
    // Three tensors of 2 values: t1 = [10, 1], t2 = [-1, 1], t3 = [-1, -5], weights 1, density 1 (no pruning).
    // total: sums [8, -3] -> elected [+1, -1]; masks t1 [1,0], t2 [0,0], t3 [0,1] -> [10/1, -5/1].
    // frequency: sign sums [-1, +1] -> elected [-1, +1]; masks t1 [0,1], t2 [1,1], t3 [1,0] -> [(-1-1)/2, (1+1)/2].
    const ts = [f([10, 1]), f([-1, 1]), f([-1, -5])];
    assert.deepEqual(calculateMajoritySignMask(ts, 'total').map((m) => [...m]), [[1, 0], [0, 0], [0, 1]]);
    assert.deepEqual(calculateMajoritySignMask(ts, 'frequency').map((m) => [...m]), [[0, 1], [1, 1], [1, 0]]);
    close(ties(ts, [1, 1, 1], 1, 'total'), [10, -5]);
    close(ties(ts, [1, 1, 1], 1, 'frequency'), [-1, 1]);
  });

  // DARE with replayed random draws (keep when draw < density = 0.5):
  //   draws for A1: [.1,.9,.3,.7,.2,.6] keep idx 0,2,4 -> P1 = [1,0,3,0,5,0] / 0.5 = [2,0,6,0,10,0]
  //   draws for A2: [.1,.9,.1,.1,.9,.9] keep idx 0,2,3 -> P2 = [-1,0,2,3,0,0] / 0.5 = [-2,0,4,6,0,0]
  const draws = () => [replay([0.1, 0.9, 0.3, 0.7, 0.2, 0.6]), replay([0.1, 0.9, 0.1, 0.1, 0.9, 0.9])];
  test('dare_linear, density 0.5, fixed draws', () => {
    // P1 + 2 P2 = [2-4, 0, 6+8, 12, 10, 0]
    close(dareLinear([f(A1), f(A2)], [1, 2], 0.5, draws()), [-2, 0, 14, 12, 10, 0]);
  });

  test('dare_ties, density 0.5, fixed draws', () => {
    // total: P1 + P2 = [0,0,10,6,10,0] -> +1; masks P1 [1,0,1,0,1,0], P2 [0,0,1,1,0,0].
    // W2 = 2 P2 = [-4,0,8,12,0,0]; disjoint: [2/1, 0, (6+8)/2, 12/1, 10/1, 0]
    close(dareTies([f(A1), f(A2)], [1, 2], 0.5, 'total', draws()), [2, 0, 7, 12, 10, 0]);
  });

  test('DARE: a fixed seed is reproducible, another seed differs, density 1 is plain task arithmetic', () => {
    const ts = [Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1)), Float32Array.from({ length: 64 }, (_, i) => Math.cos(i))];
    const rngs = (seed: number) => [substream(seed, 'x#0'), substream(seed, 'x#1')];
    const a = dareLinear(ts, [0.7, 0.3], 0.5, rngs(42));
    const b = dareLinear(ts, [0.7, 0.3], 0.5, rngs(42));
    const c = dareLinear(ts, [0.7, 0.3], 0.5, rngs(43));
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
    // every kept value is rescaled by 1/density: each entry is 0 or sum of w_i t_i / 0.5 over kept i
    const lin = mergeTaskTensors('linear', ts, [0.7, 0.3]);
    assert.deepEqual(dareLinear(ts, [0.7, 0.3], 1, rngs(1)), lin);
    assert.deepEqual(mergeModule('dare_linear', 'm', two(), 2, d33, { density: 1, seed: 5 }), mergeModule('linear', 'm', two(), 2, d33, {}));
  });
});

describe('svd strategies (PEFT _svd_generalized_task_arithmetic_weighted_adapter)', () => {
  // Rank-1 adapters of a 3 -> 2 module:
  //   adapter 1: B = [[1],[0]], A = [[1,0,0]], scaling 2, weight 1   -> delta1 = 2 B A = [[2,0,0],[0,0,0]], weight c1 = 1*2
  //   adapter 2: B = [[0],[1]], A = [[0,3,0]], scaling 1, weight 0.5 -> delta2 = [[0,0,0],[0,3,0]],       weight c2 = 0.5*1
  // task_arithmetic: 2*delta1 + 0.5*delta2 = [[4,0,0],[0,1.5,0]]: singular values 4 and 1.5.
  const p1: LoraPair = { name: 'm', layer: 0, module: 'q_proj', rank: 1, in: 3, out: 2, scaling: 2, A: f([1, 0, 0]), B: f([1, 0]) };
  const p2: LoraPair = { name: 'm', layer: 0, module: 'q_proj', rank: 1, in: 3, out: 2, scaling: 1, A: f([0, 3, 0]), B: f([0, 1]) };
  const present = [{ pair: p1, w: 1, i: 0 }, { pair: p2, w: 0.5, i: 1 }];
  const d23 = { in: 3, out: 2 };

  test('svd, rank 2 (full): B A = [[4,0,0],[0,1.5,0]]', () => {
    const { A, B } = mergeModule('svd', 'm', present, 2, d23, {});
    close(matmul(B, A, 2, 2, 3), [4, 0, 0, 0, 1.5, 0], 1e-5);
  });

  test('svd, rank 1 keeps the largest singular value: B A = [[4,0,0],[0,0,0]], B = U S', () => {
    const { A, B } = mergeModule('svd', 'm', present, 1, d23, {});
    close(matmul(B, A, 2, 1, 3), [4, 0, 0, 0, 0, 0], 1e-5);
    close(B.map(Math.abs), [4, 0], 1e-5); // S folded into B (PEFT: U @ diag(S))
    close(A.map(Math.abs), [1, 0, 0], 1e-5); // rows of V^T are unit vectors
  });

  test('ties_svd, density 1 equals svd (no pruning; one sign per entry here)', () => {
    const a = mergeModule('ties_svd', 'm', present, 2, d23, { density: 1 });
    close(matmul(a.B, a.A, 2, 2, 3), [4, 0, 0, 0, 1.5, 0], 1e-5);
  });

  test('svd at full rank reproduces sum_i (w_i s_i) (s_i B_i A_i) within 1e-5', () => {
    const out = 6;
    const inF = 5;
    const r = 2;
    const rnd = substream(7, 'svd-test');
    const mk = (scaling: number): LoraPair => ({
      name: 'm', layer: 0, module: 'q_proj', rank: r, in: inF, out, scaling,
      A: Float32Array.from({ length: r * inF }, () => rnd() - 0.5), B: Float32Array.from({ length: out * r }, () => rnd() - 0.5),
    });
    const q1 = mk(2);
    const q2 = mk(0.5);
    const ws = [0.6, -0.9];
    const { A, B } = mergeModule('svd', 'm', [{ pair: q1, w: ws[0]!, i: 0 }, { pair: q2, w: ws[1]!, i: 1 }], 5, { in: inF, out }, {});
    // Independent naive reference: c_i * s_i * B_i A_i with c_i = w_i s_i.
    const want = matmul(q1.B, q1.A, out, r, inF).map((x, j) => ws[0]! * 2 * 2 * x + ws[1]! * 0.5 * 0.5 * matmul(q2.B, q2.A, out, r, inF)[j]!);
    close(matmul(B, A, out, 5, inF), want, 1e-5);
    close(deltaWeight(q1.B, q1.A, out, r, inF, 2), matmul(q1.B, q1.A, out, r, inF).map((x) => 2 * x), 1e-6);
  });

  test('lowRankSvdFactors (QR of the stacked factors) gives the dense SVD\'s truncation: same B A, same singular values', () => {
    const rnd = substream(11, 'lowrank');
    const out = 40;
    const inF = 24;
    const terms = [3, 5, 2].map((r, j) => ({
      r, c: [0.7, -1.3, 2][j]!,
      B: Float32Array.from({ length: out * r }, () => rnd() - 0.5), A: Float32Array.from({ length: r * inF }, () => rnd() - 0.5),
    }));
    const delta = new Float32Array(out * inF);
    for (const t of terms) deltaWeight(t.B, t.A, out, t.r, inF, t.c).forEach((x, j) => (delta[j]! += x));
    for (const rank of [10, 6, 1, 16]) {
      const dense = svdFactors(delta, out, inF, rank);
      const low = lowRankSvdFactors(terms, out, inF, rank);
      close(matmul(low.B, low.A, out, rank, inF), matmul(dense.B, dense.A, out, rank, inF), 1e-4);
      // column norms of B are the singular values (A's rows are unit vectors)
      const norms = (B: Float32Array) => Array.from({ length: rank }, (_, j) => Math.hypot(...Array.from({ length: out }, (_, o) => B[o * rank + j]!)));
      close(norms(low.B), norms(dense.B), 1e-4);
    }
    // More factor columns than min(out, in): the dense fallback, same result.
    const wide = [{ r: 30, c: 1, B: Float32Array.from({ length: out * 30 }, () => rnd() - 0.5), A: Float32Array.from({ length: 30 * inF }, () => rnd() - 0.5) }];
    const dw = deltaWeight(wide[0]!.B, wide[0]!.A, out, 30, inF, 1);
    close(matmul(lowRankSvdFactors(wide, out, inF, 8).B, lowRankSvdFactors(wide, out, inF, 8).A, out, 8, inF), matmul(svdFactors(dw, out, inF, 8).B, svdFactors(dw, out, inF, 8).A, out, 8, inF), 1e-4);
  });

  test('svdFactors (Gram eigenvectors) truncates as ml-matrix\'s SVD does, tall and wide, with a clamp', () => {
    const rnd = substream(5, 'gram');
    for (const [out, inF] of [[30, 12], [12, 30]] as const) {
      const d = Float32Array.from({ length: out * inF }, () => rnd() - 0.5);
      const m = new Matrix(out, inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) m.set(o, i, d[o * inF + i]!);
      const ref = new SingularValueDecomposition(m, { autoTranspose: true });
      for (const rank of [4, 12]) {
        const { A, B } = svdFactors(d, out, inF, rank);
        const want = ref.leftSingularVectors.subMatrix(0, out - 1, 0, rank - 1).mulRowVector(ref.diagonal.slice(0, rank)).mmul(ref.rightSingularVectors.subMatrix(0, inF - 1, 0, rank - 1).transpose());
        close(matmul(B, A, out, rank, inF), Array.from(want.to1DArray()), 1e-5, `${out}x${inF} rank ${rank}`);
      }
      const clamped = svdFactors(d, out, inF, 4, 0.9);
      const hi = Math.max(...clamped.B.map(Math.abs), ...clamped.A.map(Math.abs));
      assert.ok(hi < Math.max(...svdFactors(d, out, inF, 4).B.map(Math.abs)), 'the clamp cuts the largest entries');
    }
  });

  test('svdFactors pads zero components past min(out, in)', () => {
    const { A, B } = svdFactors(f([4, 0, 0, 0, 1.5, 0]), 2, 3, 3);
    assert.equal(A.length, 9);
    assert.equal(B.length, 6);
    close(matmul(B, A, 2, 3, 3), [4, 0, 0, 0, 1.5, 0], 1e-5);
    close([A[6]!, A[7]!, A[8]!, B[2]!, B[5]!], [0, 0, 0, 0, 0]);
  });
});

describe('cat (PEFT combination_type="cat")', () => {
  test('B A is exactly sum_i w_i s_i B_i A_i; rank is the sum', () => {
    const { A, B } = mergeModule('cat', 'm', two(), 4, d33, {});
    // c1 = 1, c2 = 4: want B1 A1 + 4 B2 A2
    const b1a1 = matmul(B1, A1, 3, 2, 3);
    const b2a2 = matmul(B2, A2, 3, 2, 3);
    close(matmul(B, A, 3, 4, 3), b1a1.map((x, j) => x + 4 * b2a2[j]!), 1e-5);
  });
});
