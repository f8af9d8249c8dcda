/**
 * Paged KV cache, prefix caching, chunked prefill and preemption (engine.h, scheduler.cc):
 * the reference still holds with tiny blocks, a tight KV budget that forces preemption and a
 * small step budget that forces chunked prefill; a request's tokens do not depend on any of it;
 * prefix caching hits and changes nothing; no KV block leaks.
 *
 * Block accounting (native/types.ts EngineStats): with no running sequence every block is
 * free or cached (kept for prefix hits, evictable), so kvBlocksFree + kvBlocksCached ===
 * kvBlocksTotal; with prefix caching off, kvBlocksFree === kvBlocksTotal.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine, type GenerationResult } from '../../native/engine.ts';
import type { AdapterRef, EngineOptions, SequenceParams } from '../../native/types.ts';
import { adapterSpec, loadReference, modelDir, params, testThreads } from './helpers.ts';

const TOL = 1e-3;
const ref = loadReference();
const configNames = Object.keys(ref.configs);
const adapterNames = ['shout', 'whisper', 'romeo', 'rs'];

/** An engine with the four adapters loaded; slots by name. */
async function open(options: EngineOptions): Promise<{ engine: Engine; slot: Record<string, number> }> {
  const engine = await Engine.load(modelDir, { threads: testThreads, ...options });
  const slot: Record<string, number> = {};
  for (const n of adapterNames) slot[n] = await engine.loadAdapter(adapterSpec(n));
  return { engine, slot };
}

const refsFor = (slot: Record<string, number>, config: string): AdapterRef[] =>
  ref.configs[config].map(({ adapter, weight }) => ({ slot: slot[adapter], weight }));

/** No sequence holds a block: every block is free or cached. */
function assertNoLeak(engine: Engine, where: string): void {
  const s = engine.stats();
  assert.equal(s.running, 0, `${where}: running`);
  assert.equal(s.waiting, 0, `${where}: waiting`);
  assert.equal(s.kvBlocksFree + s.kvBlocksCached, s.kvBlocksTotal, `${where}: free ${s.kvBlocksFree} + cached ${s.kvBlocksCached} != total ${s.kvBlocksTotal}`);
}

/** Greedy of every prompt x config with logprobs, all at once; checked against reference.json. */
async function checkReference(engine: Engine, slot: Record<string, number>, maxTokens: number): Promise<number> {
  const runs: Array<{ p: (typeof ref.prompts)[number]; config: string; done: Promise<GenerationResult> }> = [];
  for (const p of ref.prompts) {
    for (const config of configNames) {
      runs.push({ p, config, done: engine.generate(params(p.input_ids, { adapters: refsFor(slot, config), maxTokens, logprobs: 0 })).done });
    }
  }
  let compared = 0;
  for (const run of runs) {
    const res = await run.done;
    const where = `${run.p.id} [${run.config}]`;
    const expect = run.p.results[run.config].greedy;
    assert.equal(res.finishReason, 'length', `${where}: ${res.error ?? ''}`);
    for (let k = 0; k < maxTokens; k++) {
      if (expect.steps[k].margin < TOL) break;
      assert.equal(res.tokens[k], expect.tokens[k], `${where} step ${k}`);
      assert.ok(Math.abs(res.logprobs[k] - expect.steps[k].logprob) < TOL, `${where} step ${k} logprob`);
      compared++;
    }
  }
  return compared;
}

describe('paged KV cache: reference fidelity under pressure', () => {
  test('blockSize 4, a KV budget that forces preemption, 24-token steps (chunked prefill)', async (t) => {
    // The longest sequence (58 prompt + 24 generated) needs 21 blocks of 4; 40 blocks hold
    // about two at once while 42 run: preemption is certain.
    const { engine, slot } = await open({ blockSize: 4, numKvBlocks: 40, maxNumSeqs: 16, maxNumBatchedTokens: 24 });
    try {
      const compared = await checkReference(engine, slot, 24);
      const s = engine.stats();
      t.diagnostic(`${compared} greedy steps compared; ${s.preemptions} preemptions, ${s.prefixHitTokens} prefix-hit tokens, ${s.steps} steps`);
      assert.ok(compared > 42 * 12);
      assert.ok(s.preemptions > 0, 'the budget should have forced preemption');
      assertNoLeak(engine, 'after the run');
    } finally {
      await engine.dispose();
    }
  });

  test('prefix caching on with many sequences sharing prompts (and off: same results)', async (t) => {
    for (const enablePrefixCaching of [true, false]) {
      // A 16-token step budget admits the copies over several steps, so later ones hit.
      const { engine, slot } = await open({ blockSize: 4, maxNumSeqs: 16, maxNumBatchedTokens: 16, enablePrefixCaching });
      try {
        const compared = await checkReference(engine, slot, 16);
        const second = await checkReference(engine, slot, 8);  // every prompt again: cached blocks
        const s = engine.stats();
        t.diagnostic(`prefix caching ${enablePrefixCaching}: ${compared + second} steps compared, ${s.prefixHitTokens} prefix-hit tokens`);
        if (enablePrefixCaching) assert.ok(s.prefixHitTokens > 0);
        else assert.equal(s.prefixHitTokens, 0);
        assertNoLeak(engine, `prefix caching ${enablePrefixCaching}`);
        if (!enablePrefixCaching) assert.equal(s.kvBlocksCached, 0);
      } finally {
        await engine.dispose();
      }
    }
  });
});

describe('paged KV cache: batch independence and prefix hits', () => {
  let plain: Awaited<ReturnType<typeof open>>;
  before(async () => {
    plain = await open({ enablePrefixCaching: false });
  });
  after(() => plain.engine.dispose());

  // A greedy request with an adapter and a seeded sample over a two-adapter merge.
  const subjects = (slot: Record<string, number>): SequenceParams[] => [
    params(ref.prompts[4].input_ids, { adapters: [{ slot: slot.shout, weight: 1 }], maxTokens: 24, logprobs: 2 }),
    params(ref.prompts[1].input_ids, { adapters: [{ slot: slot.whisper, weight: 0.7 }, { slot: slot.rs, weight: 1 }], maxTokens: 24, temperature: 0.8, topP: 0.9, seed: 1234 }),
  ];
  const crowd = (slot: Record<string, number>): SequenceParams[] =>
    ref.prompts.flatMap((p, i) => [
      params(p.input_ids, { adapters: [{ slot: slot.shout, weight: 1 }], maxTokens: 10 + i }),  // shares prompts with subject 0's adapter
      params(p.input_ids, { adapters: [{ slot: slot.romeo, weight: 1 }], maxTokens: 30, temperature: 1, seed: i }),
      params(p.input_ids, { maxTokens: 5 + 3 * i, temperature: 0.7, topK: 40, seed: 100 + i }),
    ]);

  test('tokens are identical alone, in a big mixed batch, under preemption and with prefix hits', async () => {
    const alone: GenerationResult[] = [];
    for (const s of subjects(plain.slot)) alone.push(await plain.engine.generate(s).done);

    const tight = await open({ blockSize: 4, numKvBlocks: 48, maxNumSeqs: 16, maxNumBatchedTokens: 32 });
    try {
      // Warm the prefix cache with the subjects' own prompts and adapters (different lengths).
      await Promise.all(subjects(tight.slot).map((s) => tight.engine.generate({ ...s, maxTokens: 3 }).done));
      const hitsBefore = tight.engine.stats().prefixHitTokens;
      const others = crowd(tight.slot).map((p) => tight.engine.generate(p).done);
      const together = await Promise.all(subjects(tight.slot).map((s) => tight.engine.generate(s).done));
      await Promise.all(others);
      const s = tight.engine.stats();
      assert.ok(s.preemptions > 0, 'expected preemption');
      assert.ok(s.prefixHitTokens > hitsBefore, 'expected prefix hits');
      for (let i = 0; i < alone.length; i++) {
        assert.deepEqual(together[i].tokens, alone[i].tokens, `subject ${i}`);
        together[i].logprobs.forEach((lp, k) => assert.ok(Math.abs(lp - alone[i].logprobs[k]) < 1e-4, `subject ${i} logprob ${k}`));
      }
      assertNoLeak(tight.engine, 'tight engine');
    } finally {
      await tight.engine.dispose();
    }
  });

  test('a prefix hit gives the same tokens and logprobs as computing the prefix', async () => {
    const { engine, slot } = await open({ blockSize: 4 });
    try {
      const p = params(ref.prompts[4].input_ids, { adapters: [{ slot: slot.romeo, weight: 1 }], maxTokens: 12, logprobs: 5 });
      const expect = await plain.engine.generate(p).done;
      const first = await engine.generate(p).done;
      const hits0 = engine.stats().prefixHitTokens;
      const second = await engine.generate(p).done;
      const hits = engine.stats().prefixHitTokens - hits0;
      // Prompt and generated blocks were cached; the hit stops short of the last prompt token.
      assert.equal(hits, Math.floor((p.promptIds.length - 1) / 4) * 4);
      for (const r of [first, second]) {
        assert.deepEqual(r.tokens, expect.tokens);
        r.logprobs.forEach((lp, k) => assert.ok(Math.abs(lp - expect.logprobs[k]) < 1e-4, `logprob ${k}`));
      }
      // Another adapter set (or weight) over the same prompt never hits.
      await engine.generate({ ...p, adapters: [{ slot: slot.romeo, weight: 0.5 }] }).done;
      await engine.generate({ ...p, adapters: [] }).done;
      assert.equal(engine.stats().prefixHitTokens - hits0, hits);
    } finally {
      await engine.dispose();
    }
  });

  test('a slot reloaded with another adapter never matches the KV cached for the old one', async () => {
    const engine = await Engine.load(modelDir, { threads: testThreads, blockSize: 4 });
    try {
      const prompt = ref.prompts[4].input_ids;
      const s1 = await engine.loadAdapter(adapterSpec('shout'));
      await engine.generate(params(prompt, { adapters: [{ slot: s1, weight: 1 }], maxTokens: 4 })).done;
      engine.unloadAdapter(s1);
      const s2 = await engine.loadAdapter(adapterSpec('whisper'));
      assert.equal(s2, s1, 'the freed slot is reused');
      const hits0 = engine.stats().prefixHitTokens;
      const r = await engine.generate(params(prompt, { adapters: [{ slot: s2, weight: 1 }], maxTokens: 16, logprobs: 0 })).done;
      assert.equal(engine.stats().prefixHitTokens, hits0, 'no hit on the previous adapter\'s blocks');
      const expect = await plain.engine.generate(params(prompt, { adapters: [{ slot: plain.slot.whisper, weight: 1 }], maxTokens: 16, logprobs: 0 })).done;
      assert.deepEqual(r.tokens, expect.tokens);
    } finally {
      await engine.dispose();
    }
  });
});

describe('paged KV cache: leaks, limits and options', () => {
  test('no block leak after cancellations, preemptions, stops and ensembles', async () => {
    for (const enablePrefixCaching of [true, false]) {
      const { engine, slot } = await open({ blockSize: 4, numKvBlocks: 40, maxNumSeqs: 12, maxNumBatchedTokens: 20, enablePrefixCaching });
      try {
        const greedy = ref.prompts[0].results.base.greedy.tokens;
        const runs: Array<Promise<GenerationResult>> = [];
        ref.prompts.forEach((p, i) => {
          runs.push(engine.generate(params(p.input_ids, { adapters: [{ slot: slot.shout, weight: 1 }], maxTokens: 40, temperature: 1, seed: i })).done);
          runs.push(engine.generate(params(p.input_ids, { maxTokens: 40, stopTokenIds: [greedy[2]] })).done);
          runs.push(engine.generate(params(p.input_ids, {
            ensemble: [{ adapters: [{ slot: slot.romeo, weight: 1 }], weight: 1 }, { adapters: [], weight: 1 }], maxTokens: 20, temperature: 1, seed: i,
          })).done);
          let n = 0;
          const h = engine.generate(params(p.input_ids, { maxTokens: 200, temperature: 1, seed: 50 + i }), () => {
            if (++n === 3 + i) h.cancel();
          });
          runs.push(h.done);
        });
        const late = engine.generate(params(ref.prompts[4].input_ids, { maxTokens: 200 }));
        setTimeout(() => late.cancel(), 5);  // cancelled while waiting or mid-prefill
        runs.push(late.done);
        const results = await Promise.all(runs);
        const reasons = new Set(results.map((r) => r.finishReason));
        for (const r of ['length', 'stop', 'cancelled']) assert.ok(reasons.has(r), `expected a "${r}" finish`);
        assert.ok(!reasons.has('error'), results.find((r) => r.error)?.error);
        assert.ok(engine.stats().preemptions > 0, 'expected preemption');
        assertNoLeak(engine, `prefix caching ${enablePrefixCaching}`);
        if (!enablePrefixCaching) assert.equal(engine.stats().kvBlocksFree, engine.stats().kvBlocksTotal);
      } finally {
        await engine.dispose();
      }
    }
  });

  test('a KV pool smaller than the context serves what it holds: longer prompts are refused, sequences end at it; the engine keeps serving', async () => {
    const engine = await Engine.load(modelDir, { threads: testThreads, blockSize: 4, numKvBlocks: 6 });
    try {
      assert.equal(engine.info().maxModelLen, 24, '6 blocks of 4 tokens');
      assert.equal(engine.info().derivedMaxModelLen, 512);
      assert.throws(() => engine.generate(params(ref.prompts[1].input_ids, { maxTokens: 4 })), /32 tokens; the model's context \(max_model_len\) is 24/);
      const grows = await engine.generate(params(ref.prompts[0].input_ids, { maxTokens: 100 })).done;  // 5 tokens, grows to 24
      assert.equal(grows.finishReason, 'length');
      assert.equal(grows.tokens.length, 24 - 5, 'up to the context served');
      assert.deepEqual(grows.tokens.slice(0, 8), ref.prompts[0].results.base.greedy.tokens.slice(0, 8));
      const ok = await engine.generate(params(ref.prompts[0].input_ids, { maxTokens: 8 })).done;
      assert.deepEqual(ok.tokens, ref.prompts[0].results.base.greedy.tokens.slice(0, 8));
      assertNoLeak(engine, 'after errors');
    } finally {
      await engine.dispose();
    }
  });

  test('a slot reloaded with other weights never serves KV cached for its previous adapter (issue 11 item 2)', async () => {
    // The prefix cache keys a block by (slot, load generation, weight) of each adapter, not by
    // slot alone: a new load into the same slot is a new generation, so no stale KV is reused.
    const engine = await Engine.load(modelDir, { threads: testThreads, blockSize: 4 });
    const fresh = await Engine.load(modelDir, { threads: testThreads, blockSize: 4, enablePrefixCaching: false });
    try {
      const prompt = ref.prompts[1].input_ids;
      const first = await engine.loadAdapter(adapterSpec('shout'));
      const warm = await engine.generate(params(prompt, { adapters: [{ slot: first, weight: 1 }], maxTokens: 4 })).done;
      const again = await engine.generate(params(prompt, { adapters: [{ slot: first, weight: 1 }], maxTokens: 4 })).done;
      assert.deepEqual(again.tokens, warm.tokens);
      const hits = engine.stats().prefixHitTokens;
      assert.ok(hits > 0, 'the same adapter hits its cached prefix');
      engine.unloadAdapter(first);
      const second = await engine.loadAdapter(adapterSpec('whisper'));
      assert.equal(second, first, 'the new adapter lands in the freed slot');
      const got = await engine.generate(params(prompt, { adapters: [{ slot: second, weight: 1 }], maxTokens: 8 })).done;
      assert.equal(engine.stats().prefixHitTokens, hits, 'no prefix hit on the previous adapter\'s blocks');
      const ws = await fresh.loadAdapter(adapterSpec('whisper'));
      const want = await fresh.generate(params(prompt, { adapters: [{ slot: ws, weight: 1 }], maxTokens: 8 })).done;
      assert.deepEqual(got.tokens, want.tokens);
      engine.unloadAdapter(second);
    } finally {
      await engine.dispose();
      await fresh.dispose();
    }
  });

  test('options are checked, naming the field', async () => {
    await assert.rejects(Engine.load(modelDir, { maxNumSeqs: 64, maxNumBatchedTokens: 32 }), /maxNumBatchedTokens \(32\) must be >= maxNumSeqs \(64\)/);
    await assert.rejects(Engine.load(modelDir, { blockSize: 0 }), /EngineOptions\.blockSize must be in \[1, 1024\]/);
    await assert.rejects(Engine.load(modelDir, { kvCacheBytes: 1000 }), /kvCacheBytes \(1000\) is smaller than one KV block \(65536 bytes/);
    await assert.rejects(Engine.load(modelDir, { enablePrefixCaching: 1 as unknown as boolean }), /EngineOptions\.enablePrefixCaching/);
    const e = await Engine.load(modelDir, { threads: 1, kvCacheBytes: 10 * 65536 + 5, maxNumSeqs: 2 });
    assert.deepEqual([e.stats().kvBlocksTotal, e.stats().kvBlocksFree, e.stats().kvBlocksCached], [10, 10, 0]);
    await e.dispose();
    const d = await Engine.load(modelDir, { threads: 1 });
    assert.equal(d.stats().kvBlocksTotal, 64 * 512 / 16, 'default: maxNumSeqs full-length sequences (under the 256 MiB cap)');
    await d.dispose();
  });
});
