/**
 * Issue 11 item 4: no 5xx from merge input. A materialised task-arithmetic merge of adapters with
 * `rank_pattern` gives PEFT's result (each module keeps its rank, scaling 1), and a fixed-seed
 * fuzz over strategies × weights × density × sign method × svd options × adapters (rank and
 * alpha patterns, rsLoRA, mixed ranks, F32/BF16) either writes an adapter that loads or refuses
 * with a 4xx naming a field: never a plain Error (a 500).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { materializeMerge, MERGE_STRATEGIES, type MergeSpec } from '../../adapters/merge/materialize.ts';
import { abWeights, deltaWeight } from '../../adapters/merge/strategies.ts';
import { readAdapterTensors, type LoraPair } from '../../adapters/merge/tensors.ts';
import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { toOpenAIError } from '../../plugin/errors.ts';
import { rng, writeRandomAdapter, type GenOptions } from '../adapters/gen.ts';
import { tinyInfo } from '../adapters/helpers.ts';

// A small base shape keeps the SVD strategies cheap; the merge code only reads the dims.
const info = tinyInfo({ hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 8 });
let tmp: string;
const dirs: Record<string, string> = {};

/** The adapters the merges draw from: every feature the issue lists. */
const ADAPTERS: Record<string, Omit<GenOptions, 'seed'>> = {
  plain4: { rank: 4, modules: ['q_proj', 'v_proj'], dtype: 'F32' },
  pattern4: { rank: 4, modules: ['q_proj', 'v_proj'], dtype: 'F32', rankPattern: { q_proj: 2 }, alphaPattern: { v_proj: 3 } },
  pattern4b: { rank: 4, modules: ['q_proj', 'v_proj', 'o_proj'], dtype: 'BF16', rankPattern: { q_proj: 2 } },
  rs4: { rank: 4, modules: ['v_proj', 'down_proj'], dtype: 'BF16', rslora: true, alpha: 6 },
  mixed8: { rank: 8, modules: ['q_proj'], dtype: 'F32', rankPattern: { q_proj: 8 }, alpha: 4 },
  rank2: { rank: 2, modules: ['k_proj', 'q_proj'], dtype: 'BF16' },
};

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'openlora-merge-fuzz-'));
  let seed = 11;
  for (const [name, o] of Object.entries(ADAPTERS)) {
    dirs[name] = join(tmp, name);
    await writeRandomAdapter(dirs[name]!, info, { ...o, seed: seed++ });
  }
});
after(() => rm(tmp, { recursive: true, force: true }));

async function pairs(dir: string): Promise<Map<string, LoraPair>> {
  const parsed = await parseAdapterDir(dir, info);
  return readAdapterTensors(parsed, await buildLoadSpec(parsed, info));
}

const delta = (p: LoraPair, out: number, inF: number) => deltaWeight(p.B, p.A, out, p.rank, inF, p.scaling);

function assertClose(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / (1e-6 + Math.abs(b[i]!)));
  assert.ok(worst < 1e-3, `${what}: relative error ${worst}`);
}

test('linear merge of rank_pattern adapters is PEFT result: per-module rank, scaling 1', async () => {
  const out = join(tmp, 'lin-pattern');
  const res = await materializeMerge({ adapters: [{ dir: dirs.pattern4!, weight: 0.7 }], strategy: 'linear' }, info, out);
  assert.equal(res.rank, 4);
  const src = await pairs(dirs.pattern4!);
  const got = await pairs(out);
  assert.deepEqual([...got.keys()].sort(), [...src.keys()].sort());
  for (const [name, p] of src) {
    const q = got.get(name)!;
    assert.equal(q.rank, p.rank, `${name} keeps its rank`);
    assert.equal(q.scaling, 1, `${name}: PEFT's merged scaling is lora_alpha / r = 1`);
    const dim = { out: p.B.length / p.rank, in: p.A.length / p.rank };
    // one adapter: A' = sqrt(w s) A, B' = sqrt(w s) B, so delta' = w * delta
    const want = delta(p, dim.out, dim.in).map((x) => 0.7 * x);
    assertClose(delta(q, dim.out, dim.in), want, name);
  }

  // two adapters with equal per-module ranks: A' = sum a_i A_i, B' = sum b_i B_i (PEFT's factors)
  const out2 = join(tmp, 'lin-pattern-2');
  const weights = [0.6, -0.3];
  await materializeMerge({ adapters: [{ dir: dirs.pattern4!, weight: weights[0]! }, { dir: dirs.pattern4b!, weight: weights[1]! }], strategy: 'linear' }, info, out2);
  const other = await pairs(dirs.pattern4b!);
  const merged = await pairs(out2);
  for (const [name, q] of merged) {
    const inputs = [src.get(name), other.get(name)];
    const present = inputs.map((p, i) => ({ p, w: weights[i]! })).filter((x) => x.p !== undefined) as Array<{ p: LoraPair; w: number }>;
    const { a, b } = abWeights(present.map((x) => x.w), present.map((x) => x.p.scaling));
    const A = new Float32Array(q.A.length);
    const B = new Float32Array(q.B.length);
    present.forEach(({ p }, i) => {
      for (let k = 0; k < A.length; k++) A[k]! += a[i]! * p.A[k]!;
      for (let k = 0; k < B.length; k++) B[k]! += b[i]! * p.B[k]!;
    });
    assertClose(q.A, A, `${name} A`);
    assertClose(q.B, B, `${name} B`);
    assert.equal(q.scaling, 1);
  }
});

test('fuzz (seed 2026, 60 specs): every merge loads or is a 4xx naming a field', async () => {
  const r = rng(2026);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const names = Object.keys(ADAPTERS);
  // each field mostly valid, sometimes hostile, so that both outcomes are common
  const field = <T>(valid: readonly T[], hostile: readonly T[]): T => (r() < 0.12 ? pick(hostile) : pick(valid));
  const outcomes: Record<string, number> = {};
  for (let i = 0; i < 60; i++) {
    const n = 1 + Math.floor(r() * 3);
    const spec: MergeSpec = {
      adapters: Array.from({ length: n }, () => ({ dir: dirs[pick(names)]!, weight: field([1, 0.5, -0.7, 0, 3], [1e-30, 1e6, Number.NaN, Infinity]) })),
      strategy: field(MERGE_STRATEGIES, ['ensemble', 'bogus', '']),
      density: field([undefined, 0.3, 1, 0.8], [0, 1.5, Number.NaN, -0.1]),
      majoritySignMethod: field([undefined, 'total', 'frequency'], ['most']) as MergeSpec['majoritySignMethod'],
      svdRank: field([undefined, 1, 3, 8], [64, 65, 0, 2.5]),
      svdClamp: field([undefined, 0.5, 1], [0, 2, Number.NaN]),
      seed: field([undefined, 0, 7], [-1, 2 ** 40]),
    };
    const out = join(tmp, `fuzz-${i}`);
    const label = JSON.stringify({ ...spec, adapters: spec.adapters.map((a) => [a.dir!.slice(tmp.length + 1), a.weight]) });
    try {
      const res = await materializeMerge(spec, info, out);
      const got = await pairs(out); // the written folder must load like any adapter
      assert.equal([...got.keys()].length, res.modules.length, label);
      outcomes.ok = (outcomes.ok ?? 0) + 1;
    } catch (err) {
      // what the client would get: a 4xx naming a field, never the 500 of an unexpected error
      const { status, body } = toOpenAIError(err);
      assert.ok(status >= 400 && status < 500, `${label}: status ${status}: ${String((err as Error).stack ?? err)}`);
      assert.ok(body.error.param, `${label}: the error names a field (${body.error.message})`);
      outcomes[status] = (outcomes[status] ?? 0) + 1;
    }
  }
  assert.ok((outcomes.ok ?? 0) >= 5, `some merges succeed: ${JSON.stringify(outcomes)}`);
  assert.ok((outcomes['400'] ?? 0) >= 5, `some merges are refused: ${JSON.stringify(outcomes)}`);
});
