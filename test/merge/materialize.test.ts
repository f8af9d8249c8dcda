/**
 * materializeMerge on the demo adapters: PEFT's refusals, the written folder loads through the
 * normal PEFT path, and (when the addon is built) in the real engine.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { canonicalMergeKey, materializeMerge } from '../../adapters/merge/materialize.ts';
import { readAdapterTensors } from '../../adapters/merge/tensors.ts';
import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { Engine } from '../../native/engine.ts';
import { EXAMPLES, tinyInfo } from '../adapters/helpers.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const info = tinyInfo();
const ad = (name: string, weight: number) => ({ dir: join(EXAMPLES, name), weight });
const load = async (dir: string) => {
  const parsed = await parseAdapterDir(dir, info);
  return { parsed, spec: await buildLoadSpec(parsed, info) };
};

let tmp: string;
before(async () => void (tmp = await mkdtemp(join(tmpdir(), 'openlora-merge-'))));
after(async () => rm(tmp, { recursive: true, force: true }));

const refuses = async (p: Promise<unknown>, param: string, re: RegExp) => {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AdapterError, String(err));
    assert.equal(err.code, 'invalid_merge');
    assert.equal(err.param, param);
    assert.match(err.message, re);
    return true;
  });
};

describe('materializeMerge: refusals', () => {
  test('linear needs equal ranks (shout r16, whisper r8), naming adapters[1]', async () => {
    await refuses(materializeMerge({ adapters: [ad('shout', 0.5), ad('whisper', 0.5)], strategy: 'linear' }, info, join(tmp, 'x')),
      'adapters[1]', /adapters\[1\] \(whisper\) has rank 8 but adapters\[0\] \(shout\) has rank 16/);
  });
  test('density outside (0, 1], missing where needed; bad sign method; svd_rank above the limit', async () => {
    const two = [ad('whisper', 0.5), ad('romeo', 0.5)];
    await refuses(materializeMerge({ adapters: two, strategy: 'ties', density: 1.5 }, info, join(tmp, 'x')), 'merge.density', /merge\.density/);
    await refuses(materializeMerge({ adapters: two, strategy: 'ties', density: 0 }, info, join(tmp, 'x')), 'merge.density', /\(0, 1\]/);
    await refuses(materializeMerge({ adapters: two, strategy: 'dare_ties' }, info, join(tmp, 'x')), 'merge.density', /required/);
    await refuses(materializeMerge({ adapters: two, strategy: 'ties', density: 0.5, majoritySignMethod: 'most' as never }, info, join(tmp, 'x')),
      'merge.majority_sign_method', /total/);
    await refuses(materializeMerge({ adapters: two, strategy: 'svd', svdRank: 65 }, info, join(tmp, 'x')), 'merge.svd_rank', /64/);
    await refuses(materializeMerge({ adapters: two, strategy: 'bogus' }, info, join(tmp, 'x')), 'merge.strategy', /linear/);
    await refuses(materializeMerge({ adapters: [ad('romeo', Number.NaN)], strategy: 'linear' }, info, join(tmp, 'x')), 'adapters[0].weight', /finite/);
    assert.equal(existsSync(join(tmp, 'x')), false, 'nothing written on refusal');
  });
});

describe('materializeMerge: output', () => {
  test('linear(whisper@0.5, romeo@0.5) loads as a plain PEFT adapter; modules romeo lacks come from whisper alone', async () => {
    const out = join(tmp, 'lin');
    const res = await materializeMerge({ adapters: [ad('whisper', 0.5), ad('romeo', 0.5)], strategy: 'linear' }, info, out);
    assert.equal(res.rank, 8);
    assert.equal(res.modules.length, 4 * 7);
    assert.deepEqual((await readdir(out)).sort(), ['adapter_config.json', 'adapter_model.safetensors'], 'no temp files left');
    const cfg = JSON.parse(await readFile(join(out, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.r, 8);
    assert.equal(cfg.lora_alpha, 8); // PEFT: lora_alpha = new rank -> scaling 1
    assert.equal(cfg.use_rslora, false);
    const merged = await load(out);
    assert.ok(merged.spec.modules.every((m) => m.scaling === 1));
    const t = await readAdapterTensors(merged.parsed, merged.spec);
    const w = await load(join(EXAMPLES, 'whisper'));
    const r = await load(join(EXAMPLES, 'romeo'));
    const tw = await readAdapterTensors(w.parsed, w.spec);
    const tr = await readAdapterTensors(r.parsed, r.spec);
    // whisper: alpha 16 / r 8 = 2, weight 0.5 -> c = 1 -> factor 1; romeo: 8/8 = 1, 0.5 -> factor sqrt(0.5).
    const k = 'model.layers.1.self_attn.k_proj'; // whisper only
    assert.deepEqual(t.get(k)!.A, tw.get(k)!.A);
    assert.deepEqual(t.get(k)!.B, tw.get(k)!.B);
    const q = 'model.layers.2.self_attn.q_proj'; // both
    const s = Math.sqrt(0.5);
    t.get(q)!.A.forEach((x, j) => assert.ok(Math.abs(x - (tw.get(q)!.A[j]! + s * tr.get(q)!.A[j]!)) < 1e-6));
    t.get(q)!.B.forEach((x, j) => assert.ok(Math.abs(x - (tw.get(q)!.B[j]! + s * tr.get(q)!.B[j]!)) < 1e-6));
  });

  test('ties_svd(romeo@0.7, rs@0.3) (ranks 8 and 4, disjoint targets) loads with the max rank 8 on the union of modules', async () => {
    const out = join(tmp, 'svd');
    const res = await materializeMerge({ adapters: [ad('romeo', 0.7), ad('rs', 0.3)], strategy: 'ties_svd', density: 0.8 }, info, out);
    assert.equal(res.rank, 8);
    const merged = await load(out);
    assert.equal(merged.spec.modules.length, 16); // q,v (romeo) + o,down (rs), 4 layers
  });

  test('one adapter merges as linear (PEFT); canonicalMergeKey is stable and sensitive', () => {
    const k1 = canonicalMergeKey({ adapters: [ad('romeo', 0.5)], strategy: 'ties', density: 0.3 });
    const k2 = canonicalMergeKey({ adapters: [ad('romeo', 0.50)], strategy: 'linear' });
    assert.equal(k1, k2);
    const base = { adapters: [ad('whisper', 0.5), ad('romeo', 0.5)], strategy: 'dare_ties', density: 0.5 };
    assert.equal(canonicalMergeKey(base), canonicalMergeKey({ ...base, seed: 0, majoritySignMethod: 'total', svdRank: 9 }));
    assert.notEqual(canonicalMergeKey(base), canonicalMergeKey({ ...base, seed: 1 }));
    assert.notEqual(canonicalMergeKey(base), canonicalMergeKey({ ...base, density: 0.6 }));
    assert.notEqual(canonicalMergeKey(base), canonicalMergeKey({ ...base, adapters: [ad('whisper', 0.5), ad('romeo', 0.4)] }));
    assert.match(canonicalMergeKey(base), /^[0-9a-f]{64}$/);
  });
});

const built = existsSync(`${root}build/Release/openlora.node`);
test('a materialised merge runs in the real engine: logits differ from the base, two loads give the same greedy tokens',
  { skip: built ? false : 'native addon not built', timeout: 120_000 }, async () => {
    const out = join(tmp, 'engine');
    await materializeMerge({ adapters: [ad('whisper', 0.5), ad('romeo', 0.5)], strategy: 'linear' }, info, out);
    const engine = await Engine.load(`${root}examples/models/tiny-shakespeare`, { backend: 'cpu', threads: 2, maxLoras: 2 });
    try {
      const { spec } = await load(out);
      const s1 = await engine.loadAdapter(spec);
      const s2 = await engine.loadAdapter(spec);
      assert.notEqual(s1, s2);
      const prompt = [72, 101, 108, 108, 111];
      const base = await engine.forward(prompt, []);
      const m = await engine.forward(prompt, [{ slot: s1, weight: 1 }]);
      let diff = 0;
      for (let i = 0; i < m.logits.length; i++) diff = Math.max(diff, Math.abs(m.logits[i]! - base.logits[i]!));
      assert.ok(diff > 0.1, `merged adapter changes the logits (max abs diff ${diff})`);
      const greedy = async (slot: number) =>
        (
          await engine.generate({
            promptIds: prompt, adapters: [{ slot, weight: 1 }], maxTokens: 12, temperature: 0, topP: 1, topK: 0,
            presencePenalty: 0, frequencyPenalty: 0, logitBias: [], stopTokenIds: [], seed: 0, logprobs: -1,
          }).done
        ).tokens;
      const g1 = await greedy(s1);
      const g2 = await greedy(s2);
      assert.equal(g1.length, 12);
      assert.deepEqual(g1, g2);
    } finally {
      await engine.dispose();
    }
  });
