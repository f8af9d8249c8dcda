/**
 * Batch independence: a request's tokens do not depend on what else runs in the same steps
 * (other prompts, other adapters, prefills mixed with decodes, sampled neighbours).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import type { SequenceParams } from '../../native/types.ts';
import { adapterSpec, loadReference, modelDir, params, testThreads } from './helpers.ts';

const ref = loadReference();

describe('batch independence', () => {
  let engine: Engine;
  const slot: Record<string, number> = {};
  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads });
    for (const n of ['shout', 'whisper', 'romeo', 'rs']) slot[n] = await engine.loadAdapter(adapterSpec(n));
  });
  after(() => engine.dispose());

  const subjects = (): SequenceParams[] => [
    params(ref.prompts[1].input_ids, { adapters: [{ slot: slot.shout, weight: 1 }], maxTokens: 24, logprobs: 3 }),
    params(ref.prompts[4].input_ids, { adapters: [{ slot: slot.whisper, weight: 0.7 }, { slot: slot.rs, weight: 1 }], maxTokens: 24, temperature: 0.8, topP: 0.9, seed: 1234 }),
  ];
  const others = (): SequenceParams[] =>
    ref.prompts.flatMap((p, i) => [
      params(p.input_ids, { adapters: [{ slot: slot.romeo, weight: 1 }], maxTokens: 10 + i }),
      params(p.input_ids, { adapters: [{ slot: slot.shout, weight: 0.5 }, { slot: slot.whisper, weight: 0.5 }], maxTokens: 30, temperature: 1, seed: i }),
      params(p.input_ids, { maxTokens: 5 + 3 * i, temperature: 0.7, topK: 40, seed: 100 + i }),
    ]);

  test('tokens and logprobs are identical alone and inside a mixed batch', async () => {
    const alone = [];
    for (const s of subjects()) alone.push(await engine.generate(s).done);

    // Same time as the others (prefills batched together).
    const crowd = others().map((p) => engine.generate(p).done);
    const together = subjects().map((s) => engine.generate(s).done);
    const resTogether = await Promise.all(together);
    await Promise.all(crowd);

    // Joining mid-flight: prefill of the subjects mixed with decodes of the others.
    let firstEvent!: () => void;
    const started = new Promise<void>((resolve) => (firstEvent = resolve));
    const crowd2 = others().map((p) => engine.generate(p, () => firstEvent()));
    await started;  // the crowd has prefilled and is decoding (romeo: 10+ tokens, the merge: 30)
    const late = await Promise.all(subjects().map((s) => engine.generate(s).done));
    await Promise.all(crowd2.map((h) => h.done));

    for (let i = 0; i < alone.length; i++) {
      assert.deepEqual(resTogether[i].tokens, alone[i].tokens, `subject ${i} in a batch`);
      assert.deepEqual(late[i].tokens, alone[i].tokens, `subject ${i} joining mid-flight`);
      assert.deepEqual(resTogether[i].logprobs, alone[i].logprobs);
    }
    // The greedy subject also matches the reference.
    const expect = ref.prompts[1].results.shout.greedy.tokens.slice(0, 24);
    assert.deepEqual(alone[0].tokens, expect);
  });
});
