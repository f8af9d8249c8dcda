/**
 * The fast SVD paths of the svd merges (adapters/merge/linalg.ts, strategies.ts) against the exact
 * dense reference (`exactSvdFactors`) on small shapes:
 * - randomized (Halko et al. 2011 Alg. 4.4) on dense `*_svd` deltas: the rank-k error within 1.01x
 *   of the optimal truncation's, deterministic;
 * - the exact low-rank path of plain `svd`: the same B A as the dense SVD, also with dependent factors;
 * - magnitude pruning by selection keeps exactly what the sort-based reference keeps.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { matmul, randomizedTruncatedSvd } from '../../adapters/merge/linalg.ts';
import {
  deltaWeight, EXACT_SVD_MAX_DIM, exactSvdFactors, lowRankSvdFactors, magnitudeBasedPruning, substream, svdFactors, ties,
} from '../../adapters/merge/strategies.ts';

const frob = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((s, v) => s + v * v, 0));
const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a, (v, i) => v - b[i]!);
const product = (f: { A: Float32Array; B: Float32Array }, out: number, rank: number, inF: number) => matmul(f.B, f.A, out, rank, inF);

/** A ties-merged delta of two rank-r products (what ties_svd decomposes): full rank, dominant top-2r spectrum. */
function tiesDelta(out: number, inF: number, r: number, seed: number): Float32Array {
  const rnd = substream(seed, 'svd-test');
  const mk = () => deltaWeight(
    Float32Array.from({ length: out * r }, () => rnd() - 0.5), Float32Array.from({ length: r * inF }, () => rnd() - 0.5), out, r, inF, 1,
  );
  return ties([mk(), mk()], [0.5, 0.5], 0.5);
}

describe('randomized truncated SVD (dense *_svd deltas)', () => {
  test('the rank-k error is within 1.01x of the optimal truncation, tall and wide', () => {
    for (const [out, inF, k] of [[220, 160, 8], [150, 260, 16], [200, 200, 4]] as const) {
      const d = tiesDelta(out, inF, 8, out + inF);
      const best = frob(diff(d, product(exactSvdFactors(d, out, inF, k), out, k, inF)));
      const t = randomizedTruncatedSvd(d, out, inF, k);
      const approx = new Float64Array(out * inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) {
        let s = 0;
        for (let j = 0; j < t.k; j++) s += t.U[o * t.k + j]! * t.S[j]! * t.V[i * t.k + j]!;
        approx[o * inF + i] = s;
      }
      const err = frob(diff(d, approx));
      assert.ok(err <= 1.01 * best, `${out}x${inF} k=${k}: ${err} vs optimal ${best}`);
      // svdFactors takes this path past EXACT_SVD_MAX_DIM and agrees with it
      assert.ok(Math.min(out, inF) > EXACT_SVD_MAX_DIM);
      const f = svdFactors(d, out, inF, k);
      assert.ok(frob(diff(d, product(f, out, k, inF))) <= 1.01 * best);
    }
  });

  test('deterministic: the same delta gives the same factors', () => {
    const d = tiesDelta(140, 180, 4, 3);
    const a = svdFactors(d, 140, 180, 6);
    const b = svdFactors(d, 140, 180, 6);
    assert.deepEqual(a.A, b.A);
    assert.deepEqual(a.B, b.B);
  });

  test('an exactly low-rank dense delta is recovered near-exactly', () => {
    const out = 180;
    const inF = 150;
    const rnd = substream(9, 'exact');
    const d = deltaWeight(Float32Array.from({ length: out * 5 }, () => rnd() - 0.5), Float32Array.from({ length: 5 * inF }, () => rnd() - 0.5), out, 5, inF, 1);
    const f = svdFactors(d, out, inF, 8);  // rank 8 > the delta's 5: the extra components are zero
    assert.ok(frob(diff(d, product(f, out, 8, inF))) <= 1e-5 * frob(d));
  });
});

describe('exact low-rank SVD (plain svd: sum of weighted LoRA products)', () => {
  const out = 300;
  const inF = 170;
  const rnd = substream(21, 'lowrank');
  const mk = (r: number, c: number) => ({ r, c, B: Float32Array.from({ length: out * r }, () => rnd() - 0.5), A: Float32Array.from({ length: r * inF }, () => rnd() - 0.5) });
  const dense = (terms: ReturnType<typeof mk>[]) => {
    const d = new Float32Array(out * inF);
    for (const t of terms) deltaWeight(t.B, t.A, out, t.r, inF, t.c).forEach((x, j) => (d[j]! += x));
    return d;
  };

  test('same B A and singular values as the dense exact SVD', () => {
    const terms = [mk(8, 0.7), mk(16, -1.3), mk(4, 2)];
    const d = dense(terms);
    for (const k of [1, 8, 28, 32]) {
      const low = product(lowRankSvdFactors(terms, out, inF, k), out, k, inF);
      const ref = product(exactSvdFactors(d, out, inF, k), out, k, inF);
      assert.ok(frob(diff(low, ref)) <= 1e-5 * frob(ref), `rank ${k}`);
    }
    // all 28 components: the delta itself
    assert.ok(frob(diff(product(lowRankSvdFactors(terms, out, inF, 28), out, 28, inF), d)) <= 1e-5 * frob(d));
  });

  test('dependent factors (the same adapter twice) and more factor columns than min(out, in)', () => {
    const t = mk(8, 1);
    const twice = [t, { ...t, c: 0.5 }];
    const d = dense(twice);
    assert.ok(frob(diff(product(lowRankSvdFactors(twice, out, inF, 8), out, 8, inF), d)) <= 1e-5 * frob(d));
    const wide = [mk(120, 1), mk(100, -1)];  // R = 220 > in = 170
    const dw = dense(wide);
    const ref = product(exactSvdFactors(dw, out, inF, 12), out, 12, inF);
    assert.ok(frob(diff(product(lowRankSvdFactors(wide, out, inF, 12), out, 12, inF), ref)) <= 1e-5 * frob(ref));
  });
});

test('magnitude pruning by selection keeps what a stable sort by |value| keeps (ties: lower index)', () => {
  const rnd = substream(4, 'prune');
  // few distinct magnitudes: many ties at the threshold
  const t = Float32Array.from({ length: 5000 }, () => (Math.floor(rnd() * 9) - 4) / 4);
  for (const density of [0.01, 0.3, 0.5, 0.77, 0.999]) {
    const k = Math.trunc(density * t.length);
    const idx = Array.from({ length: t.length }, (_, i) => i).sort((a, b) => Math.abs(t[b]!) - Math.abs(t[a]!) || a - b);
    const want = new Float32Array(t.length);
    for (let j = 0; j < k; j++) want[idx[j]!] = t[idx[j]!]!;
    assert.deepEqual(magnitudeBasedPruning(t, density), want, `density ${density}`);
  }
});
