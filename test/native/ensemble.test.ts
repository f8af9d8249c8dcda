/**
 * Ensemble generation (SequenceParams.ensemble): the per-step mixture
 * p = sum_i w_i softmax(l_i / T) of the members' next-token distributions (DESIGN.md "ensemble";
 * a mixture of experts at the distribution level, which PEFT has no counterpart for).
 * Checked against reference.json's `ensemble.last_probs` (shout@0.5 + whisper@0.5, computed by
 * the independent PyTorch reference), against single-adapter runs (an ensemble of one adapter
 * twice is that adapter), and for sampling, finish reasons, cancel and validation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine, type GenerationResult } from '../../native/engine.ts';
import { NativeError } from '../../native/errors.ts';
import type { EnsembleMember, SequenceParams } from '../../native/types.ts';
import { adapterSpec, loadReference, modelDir, params, testThreads } from './helpers.ts';

/** reference.json's per-prompt ensemble entry. */
interface EnsembleRef {
  last_probs: number[];  // [vocab] p at the last prompt position
  argmax: number;
  prob_margin: number;   // p[argmax] - second largest p
}

const PROB_TOL = 1e-4;
const ref = loadReference();
const ensRef = (i: number) => (ref.prompts[i] as unknown as { ensemble: EnsembleRef }).ensemble;
const refMembers = (ref as unknown as { ensemble: { members: Array<{ adapter: string; weight: number }> } }).ensemble.members;

describe('ensemble generation', () => {
  let engine: Engine;
  const slot: Record<string, number> = {};
  const member = (name: string, weight: number): EnsembleMember => ({ adapters: [{ slot: slot[name], weight: 1 }], weight });
  const ens = (promptIds: number[], members: EnsembleMember[], over: Partial<SequenceParams> = {}) =>
    params(promptIds, { ensemble: members, ...over });

  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 64 });
    for (const n of ['shout', 'whisper', 'romeo']) slot[n] = await engine.loadAdapter(adapterSpec(n));
  });
  after(() => engine.dispose());

  test('shout@0.5 + whisper@0.5 matches reference ensemble.last_probs, batched with plain sequences', async (t) => {
    assert.deepEqual(refMembers, [{ adapter: 'shout', weight: 0.5 }, { adapter: 'whisper', weight: 0.5 }]);
    const members = refMembers.map((m) => member(m.adapter, m.weight));
    const ensembles = ref.prompts.map((p) => engine.generate(ens(p.input_ids, members, { maxTokens: 1, logprobs: 20 })).done);
    const plain: Array<{ i: number; config: string; done: Promise<GenerationResult> }> = [];
    ref.prompts.forEach((p, i) => {
      for (const config of ['base', 'shout', 'whisper']) {
        const adapters = config === 'base' ? [] : [{ slot: slot[config], weight: 1 }];
        plain.push({ i, config, done: engine.generate(params(p.input_ids, { adapters, maxTokens: 12 })).done });
      }
    });
    assert.ok(engine.stats().waiting + engine.stats().running > 1, 'sequences should be in flight together');

    let maxErr = 0;
    for (const [i, done] of ensembles.entries()) {
      const r = await done;
      const e = ensRef(i);
      const where = ref.prompts[i].id;
      assert.equal(r.finishReason, 'length', where);
      assert.equal(r.promptTokens, ref.prompts[i].input_ids.length, where);
      assert.equal(r.completionTokens, 1, where);
      assert.equal(r.tokens.length, 1, where);
      if (e.prob_margin >= PROB_TOL) assert.equal(r.tokens[0], e.argmax, `${where}: greedy token is argmax p`);
      const checks: Array<[number, number]> = [[r.tokens[0], r.logprobs[0]], ...r.topLogprobs[0].map((x): [number, number] => [x.token, x.logprob])];
      assert.equal(r.topLogprobs[0].length, 20, where);
      for (const [tok, lp] of checks) {
        const err = Math.abs(Math.exp(lp) - e.last_probs[tok]);
        maxErr = Math.max(maxErr, err);
        assert.ok(err < PROB_TOL, `${where}: p[${tok}] = ${Math.exp(lp)} vs reference ${e.last_probs[tok]}`);
      }
      // The top 20 are the 20 largest p of the reference (up to near ties).
      const sorted = [...e.last_probs].sort((a, b) => b - a);
      r.topLogprobs[0].forEach((x, k) => assert.ok(Math.abs(Math.exp(x.logprob) - sorted[k]) < PROB_TOL, `${where} top${k}`));
    }
    for (const run of plain) {
      const r = await run.done;
      const greedy = ref.prompts[run.i].results[run.config].greedy;
      for (let k = 0; k < 12 && greedy.steps[k].margin >= 1e-3; k++) {
        assert.equal(r.tokens[k], greedy.tokens[k], `${ref.prompts[run.i].id} [${run.config}] step ${k}`);
      }
    }
    t.diagnostic(`max |p - reference last_probs| over ${ref.prompts.length} prompts x 21 tokens: ${maxErr.toExponential(2)}`);
  });

  test('an ensemble of one adapter twice equals that adapter alone (greedy, sampled, penalised)', async () => {
    const p = ref.prompts[1].input_ids;
    const variants: Array<Partial<SequenceParams>> = [
      { maxTokens: 24, logprobs: 5 },
      { maxTokens: 24, logprobs: 5, temperature: 1, seed: 42 },
      { maxTokens: 24, logprobs: 5, temperature: 0.8, topK: 40, topP: 0.9, seed: 7 },
      { maxTokens: 24, logprobs: 5, frequencyPenalty: 0.6, presencePenalty: 0.4, logitBias: [[500, 2]] },
    ];
    for (const over of variants) {
      const [alone, twice] = await Promise.all([
        engine.generate(params(p, { adapters: [{ slot: slot.shout, weight: 1 }], ...over })).done,
        engine.generate(ens(p, [member('shout', 0.3), member('shout', 0.7)], over)).done,
      ]);
      const what = JSON.stringify(over);
      assert.deepEqual(twice.tokens, alone.tokens, what);
      alone.logprobs.forEach((lp, k) => assert.ok(Math.abs(twice.logprobs[k] - lp) < 1e-5, `${what} step ${k} logprob`));
      alone.topLogprobs.forEach((top, k) =>
        top.forEach((x, j) => assert.ok(Math.abs(twice.topLogprobs[k][j].logprob - x.logprob) < 1e-5, `${what} step ${k} top${j}`)),
      );
    }
  });

  test('weights [1, 1e-9] approach member 0 alone', async () => {
    const p = ref.prompts[2].input_ids;
    const alone = await engine.generate(params(p, { adapters: [{ slot: slot.romeo, weight: 1 }], maxTokens: 16, logprobs: 3 })).done;
    const mix = await engine.generate(ens(p, [member('romeo', 1), member('whisper', 1e-9)], { maxTokens: 16, logprobs: 3 })).done;
    assert.deepEqual(mix.tokens, alone.tokens);
    alone.logprobs.forEach((lp, k) => assert.ok(Math.abs(mix.logprobs[k] - lp) < 1e-4, `step ${k}`));
  });

  test('seeded sampling is reproducible; topK filters the mixture; logit_bias and stop tokens apply', async () => {
    const p = ref.prompts[0].input_ids;
    const members = [member('shout', 0.5), member('whisper', 0.5)];
    const run = (over: Partial<SequenceParams>) => engine.generate(ens(p, members, over)).done;
    const [a, b, c] = await Promise.all([
      run({ temperature: 1, seed: 42, maxTokens: 24 }),
      run({ temperature: 1, seed: 42, maxTokens: 24 }),
      run({ temperature: 1, seed: 43, maxTokens: 24 }),
    ]);
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.tokens, c.tokens);

    const k3 = await run({ temperature: 1, topK: 3, seed: 1, maxTokens: 12, logprobs: 3 });
    k3.tokens.forEach((tok, k) => assert.ok(k3.topLogprobs[k].some((x) => x.token === tok), `step ${k}: ${tok} not in the mixture's top 3`));

    for (const temperature of [0, 1]) assert.deepEqual((await run({ temperature, seed: 3, maxTokens: 4, logitBias: [[500, 100]] })).tokens, [500, 500, 500, 500]);

    const greedy = await run({ maxTokens: 12 });
    const stop = greedy.tokens[3];
    const firstAt = greedy.tokens.indexOf(stop);
    const stopped = await run({ maxTokens: 12, stopTokenIds: [stop], logprobs: 0 });
    assert.equal(stopped.finishReason, 'stop');
    assert.deepEqual(stopped.tokens, greedy.tokens.slice(0, firstAt + 1));
    assert.equal(stopped.completionTokens, firstAt + 1);
    assert.equal(stopped.promptTokens, p.length);
    assert.equal(stopped.logprobs.length, stopped.tokens.length);
  });

  test('cancel finishes the whole group "cancelled" and frees every member', async () => {
    const s = await engine.loadAdapter(adapterSpec('romeo'));
    let events = 0;
    const seen = new Set<number>();
    const h = engine.generate(
      params(ref.prompts[0].input_ids, { ensemble: [{ adapters: [{ slot: s, weight: 1 }], weight: 1 }, member('shout', 1), { adapters: [], weight: 2 }], maxTokens: 400, temperature: 1, seed: 5 }),
      (ev) => {
        seen.add(ev.seqId);
        if (++events === 2) h.cancel();
      },
    );
    assert.throws(() => engine.unloadAdapter(s), /in use/);
    const r = await h.done;
    assert.equal(r.finishReason, 'cancelled');
    assert.ok(r.completionTokens < 400);
    assert.deepEqual([...seen], [h.seqId], 'one stream of events under one seqId');
    assert.deepEqual(engine.stats().running, 0);
    engine.unloadAdapter(s);  // every member's pin was released
  });

  test('invalid ensembles are refused by the engine, naming the field, leaving no pins behind', async () => {
    const small = await Engine.load(modelDir, { threads: 1, maxNumSeqs: 3 });
    try {
      const s = await small.loadAdapter(adapterSpec('shout'));
      const m = (weight: number, slotId = s): EnsembleMember => ({ adapters: [{ slot: slotId, weight: 1 }], weight });
      const p = ref.prompts[0].input_ids;
      const bad: Array<[Partial<SequenceParams>, RegExp, string?]> = [
        [{ ensemble: [m(1)] }, /ensemble must have 2 to 16 members/],
        [{ ensemble: Array.from({ length: 17 }, () => m(1)) }, /ensemble must have 2 to 16 members/],
        [{ ensemble: [m(1), m(-1)] }, /ensemble\[1\]\.weight must be a finite number > 0/],
        [{ ensemble: [m(NaN), m(1)] }, /ensemble\[0\]\.weight/],
        [{ ensemble: [m(1), m(1), m(1), m(1)] }, /maxNumSeqs/],
        [{ ensemble: [m(1), m(1)], adapters: [{ slot: s, weight: 1 }] }, /adapters must be empty/],
        [{ ensemble: [m(1), m(1, 5)] }, /ensemble\[1\]\.adapters: adapter slot 5 is not loaded/, 'not_found'],
        [{ ensemble: [m(1), m(1, 99)] }, /ensemble\[1\]\.adapters: adapter slot 99 is out of range/],
        [{ ensemble: [m(1), { adapters: [], weight: 'x' as unknown as number }] }, /SequenceParams\.ensemble\[1\]\.weight/],
      ];
      for (const [over, re, code = 'invalid_argument'] of bad) {
        assert.throws(() => small.generate(params(p, over)), (e: unknown) => e instanceof NativeError && e.code === code && re.test(e.message), re.source);
      }
      small.unloadAdapter(s); // a refused ensemble left no pins behind
    } finally {
      await small.dispose();
    }
  });
});
