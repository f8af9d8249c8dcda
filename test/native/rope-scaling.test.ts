/**
 * RoPE scaling against the PyTorch reference (modeling_rope_utils.py restated in
 * test/reference/model.py), and the context length derived from it as vLLM does:
 * - dynamic NTK (llama-dynamic: max_position_embeddings 32, factor 2): prompts shorter and
 *   longer than 32 positions, whose base HF recomputes from the sequence length; one forward each
 *   (the reference recomputes every position per length, as HF without a KV cache, so greedy
 *   decoding is not compared here);
 * - yarn (llama-yarn) is covered with adapters and greedy by families.test.ts;
 * - longrope (phi4-partial: original_max_position_embeddings 32) with chunked prefill: prompts
 *   longer than 32 prefilled in 16-token chunks use long_factor from their first chunk, as HF
 *   prefilling the whole prompt in one forward (the length that picks the factor is the prompt's,
 *   not the chunk's end), and never reuse prefix-cached keys of a shorter prompt rotated with
 *   short_factor;
 * - max_model_len: 32 x 2 = 64 for dynamic; yarn 1024 x 4 = 4096.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { materializeFixture, type Fixture } from './family-fixtures.ts';
import { params, testThreads } from './helpers.ts';

const TOL = 1e-3;

describe('rope_scaling dynamic', () => {
  let fx: Fixture;
  let engine: Engine;
  before(async () => {
    fx = materializeFixture('llama-dynamic');
    engine = await Engine.load(fx.modelDir, { threads: testThreads });
  });
  after(async () => {
    await engine?.dispose();
    fx?.dispose();
  });

  test('max_model_len is max_position_embeddings x factor; logits within 1e-3 below and past max_position_embeddings', async (t) => {
    assert.equal(engine.info().maxPositionEmbeddings, 32);
    assert.equal(engine.info().maxModelLen, 64);
    let maxErr = 0;
    let past = 0;
    for (const p of fx.ref.prompts) {
      if (p.input_ids.length > 64) continue;
      past += p.input_ids.length > 32 ? 1 : 0;
      const r = p.results.base!;
      const out = await engine.forward(p.input_ids);
      const V = out.vocabSize;
      const last = out.logits.subarray((out.numTokens - 1) * V, out.numTokens * V);
      r.last_logit_ids.forEach((id, i) => (maxErr = Math.max(maxErr, Math.abs(last[id]! - r.last_logits[i]!))));
    }
    assert.ok(past >= 1, 'a prompt longer than max_position_embeddings is compared');
    t.diagnostic(`llama-dynamic: max |logit - reference| = ${maxErr.toExponential(2)}`);
    assert.ok(maxErr < TOL, `max abs logit error ${maxErr}`);
  });
});

describe('rope_scaling longrope with chunked prefill', () => {
  test('prompts past original_max_position_embeddings in 16-token chunks: greedy equal to the reference', async (t) => {
    const fx = materializeFixture('phi4-partial');
    const engine = await Engine.load(fx.modelDir, { threads: testThreads, maxNumBatchedTokens: 16, maxNumSeqs: 16 });
    try {
      let compared = 0;
      let longPrompts = 0;
      for (const p of fx.ref.prompts) {
        if (p.input_ids.length <= 32) continue;
        longPrompts++;
        // Its first 24 tokens first: short_factor keys whose full blocks enter the prefix cache;
        // the whole prompt must not reuse them (Engine::prefixSeed).
        await engine.generate(params(p.input_ids.slice(0, 24), { maxTokens: 2 })).done;
        const ref = p.results.base!.greedy;
        const r = await engine.generate(params(p.input_ids, { maxTokens: ref.tokens.length, logprobs: 0 })).done;
        for (let k = 0; k < ref.tokens.length && ref.steps[k]!.margin >= TOL; k++, compared++) {
          assert.equal(r.tokens[k], ref.steps[k]!.token, `${p.id} step ${k}`);
          assert.ok(Math.abs(r.logprobs[k]! - ref.steps[k]!.logprob) < TOL, `${p.id} step ${k}: logprob ${r.logprobs[k]} vs ${ref.steps[k]!.logprob}`);
        }
      }
      t.diagnostic(`phi4-partial chunked: ${compared} greedy tokens compared over ${longPrompts} prompts`);
      assert.ok(longPrompts >= 2 && compared >= longPrompts * 4, `only ${compared} tokens compared`);
    } finally {
      await engine.dispose();
      fx.dispose();
    }
  });
});

describe('rope_scaling yarn', () => {
  test('max_model_len is original_max_position_embeddings x factor', async () => {
    const fx = materializeFixture('llama-yarn');
    const engine = await Engine.load(fx.modelDir, { threads: testThreads, kvCacheBytes: 1 << 22 });
    try {
      assert.equal(engine.info().maxModelLen, 4096);
    } finally {
      await engine.dispose();
      fx.dispose();
    }
  });
});
