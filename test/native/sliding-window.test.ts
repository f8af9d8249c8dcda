/**
 * Sliding-window attention (Mistral v0.1 style: every layer sees the last `sliding_window`
 * positions; Qwen2 `use_sliding_window` on layers >= max_window_layers), against the PyTorch
 * reference with prompts several windows long, and the paged KV cache: a sequence whose every
 * layer slides gives back the blocks wholly outside the window, so the blocks it holds (read from
 * the engine's KV metrics) stop growing however long it generates.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { materializeFixture, type Fixture } from './family-fixtures.ts';
import { params, testThreads } from './helpers.ts';

const TOL = 1e-3;

for (const name of ['mistral-sw', 'qwen2-sw']) {
  describe(`sliding window: ${name}`, () => {
    let fx: Fixture;
    let engine: Engine;
    const blockSize = 4;

    before(async () => {
      fx = materializeFixture(name);
      engine = await Engine.load(fx.modelDir, { threads: testThreads, blockSize, maxNumSeqs: 16, enablePrefixCaching: false });
    });
    after(async () => {
      await engine?.dispose();
      fx?.dispose();
    });

    test('prompts several windows long: last logits within 1e-3 and greedy equal to the reference', async (t) => {
      assert.ok(fx.ref.layer_types.includes('sliding_attention'), 'the fixture has sliding layers');
      let maxErr = 0;
      const runs = fx.ref.prompts.map((p) => ({ p, done: engine.generate(params(p.input_ids, { maxTokens: fx.ref.greedy_new_tokens, logprobs: 0 })).done }));
      for (const p of fx.ref.prompts) {
        const r = p.results.base!;
        const out = await engine.forward(p.input_ids);
        const V = out.vocabSize;
        const last = out.logits.subarray((out.numTokens - 1) * V, out.numTokens * V);
        r.last_logit_ids.forEach((id, i) => (maxErr = Math.max(maxErr, Math.abs(last[id]! - r.last_logits[i]!))));
      }
      for (const { p, done } of runs) {
        const g = await done;
        for (const [k, step] of p.results.base!.greedy.steps.entries()) {
          if (step.margin < TOL) break;
          assert.equal(g.tokens[k], step.token, `${p.id} step ${k}`);
        }
      }
      t.diagnostic(`${name}: max |logit - reference| = ${maxErr.toExponential(2)}`);
      assert.ok(maxErr < TOL, `max abs logit error ${maxErr}`);
    });

    test('KV blocks in use per sequence stop growing past the window (KV metrics)', async (t) => {
      const everyLayer = fx.ref.layer_types.every((x) => x === 'sliding_attention');
      const prompt = fx.ref.prompts.reduce((a, b) => (b.input_ids.length > a.input_ids.length ? b : a)).input_ids;
      const inUse: number[] = [];
      const s0 = engine.stats();
      const idle = s0.kvBlocksTotal - s0.kvBlocksFree - s0.kvBlocksCached;
      const res = await engine.generate(params(prompt, { maxTokens: 160 }), () => {
        const s = engine.stats();
        inUse.push(s.kvBlocksTotal - s.kvBlocksFree - s.kvBlocksCached - idle);
      }).done;
      assert.equal(res.tokens.length, 160);
      const total = Math.ceil((prompt.length + 160) / blockSize);
      const late = inUse.slice(-40);
      t.diagnostic(`${name}: blocks in use over the last 40 tokens ${Math.min(...late)}..${Math.max(...late)}; without freeing ${total}`);
      if (everyLayer) {
        // window 8, blockSize 4: the window spans at most 3 blocks, plus the block being written.
        assert.ok(Math.max(...late) <= 4, `in use ${Math.max(...late)} blocks`);
        assert.equal(Math.max(...late), Math.max(...inUse.slice(-80, -40)), 'no growth');
      } else {
        // A global layer reads every position: nothing can be freed.
        assert.ok(Math.max(...late) >= total - 1, `in use ${Math.max(...late)} of ${total}`);
      }
    });
  });
}

test('a KV pool that holds the window (plus one chunk) serves the whole context when every layer slides; one that does not is shortened', async () => {
  const fx: Fixture = materializeFixture('mistral-sw');
  // window 8, maxNumBatchedTokens 16, blockSize 4: a sequence holds at most (8 + 16) / 4 + 2 = 8 blocks
  const load = (numKvBlocks: number) => Engine.load(fx.modelDir, { threads: 1, blockSize: 4, maxNumSeqs: 16, maxNumBatchedTokens: 16, numKvBlocks });
  const roomy = await load(8);
  const tight = await load(7);
  try {
    assert.equal(roomy.info().maxModelLen, roomy.info().derivedMaxModelLen);
    assert.equal(tight.info().maxModelLen, 7 * 4);
    const prompt = fx.ref.prompts[0]!.input_ids;
    const res = await roomy.generate(params(prompt, { maxTokens: 60 })).done;
    assert.equal(res.tokens.length, 60, 'runs past what 8 blocks would hold without the window');
  } finally {
    await roomy.dispose();
    await tight.dispose();
  }
});
