/**
 * Fidelity against the independent float32 PyTorch reference (test/fixtures/.../reference.json):
 * last-position logits, per-position argmax, and greedy generation for every prompt and every
 * configuration (base, four adapters, two `cat` merges), the greedy runs all in one mixed batch.
 * Tolerances: the fixture README's float32 column (1e-3; margins below 1e-3 are not compared).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine, type GenerationResult } from '../../native/engine.ts';
import type { AdapterRef } from '../../native/types.ts';
import { adapterSpec, argmax, loadReference, logsumexp, modelDir, params, testThreads } from './helpers.ts';

const TOL = 1e-3;
const ref = loadReference();
const configNames = Object.keys(ref.configs);

describe('fidelity vs reference.json', () => {
  let engine: Engine;
  const slots = new Map<string, number>();
  const refsFor = (config: string): AdapterRef[] =>
    ref.configs[config].map(({ adapter, weight }) => ({ slot: slots.get(adapter)!, weight }));

  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 64 });
    for (const name of ['shout', 'whisper', 'romeo', 'rs']) slots.set(name, await engine.loadAdapter(adapterSpec(name)));
  });
  after(() => engine.dispose());

  test('the reference covers base, 4 adapters and 2 cat merges', () => {
    assert.deepEqual(configNames.sort(), ['base', 'cat_shout0.5_whisper0.5', 'cat_shout1.0_romeo0.7', 'romeo', 'rs', 'shout', 'whisper'].sort());
  });

  for (const config of ['base', 'shout', 'whisper', 'romeo', 'rs', 'cat_shout0.5_whisper0.5', 'cat_shout1.0_romeo0.7']) {
    test(`forward(): last logits, logsumexp and argmax per position [${config}]`, async (t) => {
      let maxErr = 0;
      for (const p of ref.prompts) {
        const r = p.results[config];
        const out = await engine.forward(p.input_ids, refsFor(config));
        assert.equal(out.numTokens, p.input_ids.length);
        const V = out.vocabSize;
        const last = out.logits.subarray((out.numTokens - 1) * V, out.numTokens * V);
        for (let i = 0; i < V; i++) maxErr = Math.max(maxErr, Math.abs(last[i] - r.last_logits[i]));
        assert.ok(Math.abs(logsumexp(last) - r.last_logsumexp) < TOL, `${p.id}: logsumexp ${logsumexp(last)} vs ${r.last_logsumexp}`);
        for (let pos = 0; pos < out.numTokens; pos++) {
          if (r.position_margins[pos] < TOL) continue;
          assert.equal(argmax(out.logits.subarray(pos * V, (pos + 1) * V)), r.argmax[pos], `${p.id} position ${pos}`);
        }
      }
      t.diagnostic(`max |logit - reference| over ${ref.prompts.length} prompts: ${maxErr.toExponential(2)}`);
      assert.ok(maxErr < TOL, `max abs logit error ${maxErr} >= ${TOL}`);
    });
  }

  test('greedy generation of every prompt x config, all concurrently in one mixed-adapter batch', async (t) => {
    const runs: Array<{ prompt: string; config: string; handle: Promise<GenerationResult> }> = [];
    for (const p of ref.prompts) {
      for (const config of configNames) {
        const h = engine.generate(params(p.input_ids, { adapters: refsFor(config), maxTokens: 32, logprobs: 6 }));
        runs.push({ prompt: p.id, config, handle: h.done });
      }
    }
    assert.ok(engine.stats().waiting + engine.stats().running > 1, 'sequences should be in flight together');
    let compared = 0;
    let maxLogprobErr = 0;
    for (const run of runs) {
      const res = await run.handle;
      const expect = ref.prompts.find((p) => p.id === run.prompt)!.results[run.config].greedy;
      const where = `${run.prompt} [${run.config}]`;
      assert.equal(res.finishReason, 'length', where);
      assert.equal(res.tokens.length, 32, where);
      for (let k = 0; k < 32; k++) {
        const step = expect.steps[k];
        if (step.margin < TOL) break;  // a legitimately different choice may follow
        assert.equal(res.tokens[k], expect.tokens[k], `${where} step ${k}`);
        const lpErr = Math.abs(res.logprobs[k] - step.logprob);
        maxLogprobErr = Math.max(maxLogprobErr, lpErr);
        assert.ok(lpErr < TOL, `${where} step ${k}: logprob ${res.logprobs[k]} vs ${step.logprob}`);
        const ours = res.topLogprobs[k];
        for (let i = 0; i < 5; i++) {
          assert.ok(Math.abs(ours[i].logprob - step.top5[i][1]) < TOL, `${where} step ${k} top${i} logprob`);
          // Ids are comparable only where the rank is not a near tie with a neighbour.
          const gapPrev = i === 0 ? Infinity : ours[i - 1].logprob - ours[i].logprob;
          const gapNext = ours[i].logprob - ours[i + 1].logprob;
          if (gapPrev >= TOL && gapNext >= TOL) assert.equal(ours[i].token, step.top5[i][0], `${where} step ${k} top${i} id`);
        }
        compared++;
      }
    }
    t.diagnostic(`${runs.length} sequences, ${compared} greedy steps compared, max logprob error ${maxLogprobErr.toExponential(2)}`);
    assert.ok(compared > runs.length * 16);
  });
});
