/**
 * Quantized base weights (EngineOptions.quantization): "int8" (per-row symmetric int8 for the
 * decoder's linear layers, lm_head and embedding) and "int4" (4-bit groups of 32 for the same
 * matrices), both with int8 activations (native/cpu/gemm_quant.h).
 * Fidelity: max |logit - float32 PyTorch reference| (reference.json, base config) and
 * perplexity on the held-out text (the last 10% of the Shakespeare corpus: see
 * test/fixtures/tiny-shakespeare/HELDOUT-PROVENANCE.txt) over the first 12 windows of 256
 * tokens; `node --import tsx bench/perplexity.ts` gives the full-text figure.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import type { EngineOptions } from '../../native/types.ts';
import { adapterSpec, loadReference, modelDir, testThreads } from './helpers.ts';
import { heldoutTokens, perplexity } from './perplexity.ts';

const ref = loadReference();

describe('int8 weight-only quantization', () => {
  let fp32: Engine;
  let int8: Engine;
  before(async () => {
    fp32 = await Engine.load(modelDir, { threads: testThreads });
    int8 = await Engine.load(modelDir, { threads: testThreads, quantization: 'int8' });
  });
  after(async () => {
    await fp32.dispose();
    await int8.dispose();
  });

  test('info() reports the storage', () => {
    assert.equal(fp32.info().quantization, 'none');
    assert.equal(int8.info().quantization, 'int8');
  });

  test('an unknown quantization is rejected, naming the option', async () => {
    await assert.rejects(Engine.load(modelDir, { quantization: 'int3' } as unknown as EngineOptions), /EngineOptions\.quantization/);
    await assert.rejects(Engine.load(modelDir, { quantization: 8 } as unknown as EngineOptions), /EngineOptions\.quantization/);
  });

  test('max logit error against the float32 reference stays small; confident argmaxes are kept', async (t) => {
    let maxErr = 0;
    let sameArgmax = 0;
    let compared = 0;
    for (const p of ref.prompts) {
      const r = p.results.base;
      const out = await int8.forward(p.input_ids);
      const V = out.vocabSize;
      const last = out.logits.subarray((out.numTokens - 1) * V);
      for (let i = 0; i < V; i++) maxErr = Math.max(maxErr, Math.abs(last[i] - r.last_logits[i]));
      for (let pos = 0; pos < out.numTokens; pos++) {
        if (r.position_margins[pos] < 0.2) continue;  // near ties may flip under quantization noise
        const row = out.logits.subarray(pos * V, (pos + 1) * V);
        let best = 0;
        for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
        sameArgmax += best === r.argmax[pos] ? 1 : 0;
        compared++;
      }
    }
    t.diagnostic(`int8: max |logit - reference| ${maxErr.toExponential(2)}; argmax kept at ${sameArgmax}/${compared} positions (margin >= 0.2)`);
    assert.ok(maxErr < 0.25, `max logit error ${maxErr}`);
    assert.equal(sameArgmax, compared);
  });

  test('adapters apply on top of int8 weights (LoRA stays float32)', async () => {
    const slot = await int8.loadAdapter(adapterSpec('shout'));
    const p = ref.prompts[0];
    const out = await int8.forward(p.input_ids, [{ slot, weight: 1 }]);
    const last = out.logits.subarray((out.numTokens - 1) * out.vocabSize);
    let maxErr = 0;
    for (let i = 0; i < out.vocabSize; i++) maxErr = Math.max(maxErr, Math.abs(last[i] - p.results.shout.last_logits[i]));
    assert.ok(maxErr < 0.25, `shout on int8: max logit error ${maxErr}`);
    int8.unloadAdapter(slot);
  });

  test('held-out perplexity: int8 <= 1.005 x float32 (first 12 windows of 256)', async (t) => {
    const { ids, bos } = await heldoutTokens();
    const a = await perplexity(fp32, ids, bos, 256, 12);
    const b = await perplexity(int8, ids, bos, 256, 12);
    t.diagnostic(`perplexity over ${a.tokens} held-out tokens: fp32 ${a.ppl.toFixed(4)}, int8 ${b.ppl.toFixed(4)} (ratio ${(b.ppl / a.ppl).toFixed(4)})`);
    assert.ok(b.ppl <= 1.005 * a.ppl, `int8 ppl ${b.ppl} > 1.005 x fp32 ppl ${a.ppl}`);
  });
});

describe('int4 (4-bit groups of 32) quantization', () => {
  let fp32: Engine;
  let int4: Engine;
  before(async () => {
    fp32 = await Engine.load(modelDir, { threads: testThreads });
    int4 = await Engine.load(modelDir, { threads: testThreads, quantization: 'int4' });
  });
  after(async () => {
    await fp32.dispose();
    await int4.dispose();
  });

  test('info() reports the storage', () => {
    assert.equal(int4.info().quantization, 'int4');
  });

  test('logits stay near the float32 reference; adapters apply on top', async (t) => {
    let maxErr = 0;
    for (const p of ref.prompts) {
      const out = await int4.forward(p.input_ids);
      const last = out.logits.subarray((out.numTokens - 1) * out.vocabSize);
      for (let i = 0; i < out.vocabSize; i++) maxErr = Math.max(maxErr, Math.abs(last[i] - p.results.base.last_logits[i]));
    }
    const slot = await int4.loadAdapter(adapterSpec('shout'));
    const p = ref.prompts[0];
    const out = await int4.forward(p.input_ids, [{ slot, weight: 1 }]);
    const last = out.logits.subarray((out.numTokens - 1) * out.vocabSize);
    let adErr = 0;
    for (let i = 0; i < out.vocabSize; i++) adErr = Math.max(adErr, Math.abs(last[i] - p.results.shout.last_logits[i]));
    int4.unloadAdapter(slot);
    t.diagnostic(`int4: max |logit - reference| ${maxErr.toExponential(2)}, with shout ${adErr.toExponential(2)}`);
    assert.ok(maxErr < 1.5, `max logit error ${maxErr}`);
    assert.ok(adErr < 1.5, `shout on int4: max logit error ${adErr}`);
  });

  test('held-out perplexity: int4 <= 1.03 x float32 (first 12 windows of 256)', async (t) => {
    const { ids, bos } = await heldoutTokens();
    const a = await perplexity(fp32, ids, bos, 256, 12);
    const b = await perplexity(int4, ids, bos, 256, 12);
    t.diagnostic(`perplexity over ${a.tokens} held-out tokens: fp32 ${a.ppl.toFixed(4)}, int4 ${b.ppl.toFixed(4)} (ratio ${(b.ppl / a.ppl).toFixed(4)})`);
    assert.ok(b.ppl <= 1.03 * a.ppl, `int4 ppl ${b.ppl} > 1.03 x fp32 ppl ${a.ppl}`);
  });
});
