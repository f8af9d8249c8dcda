/**
 * Constrained decoding (SequenceParams.constrained, setTokenMask, stop): per-sequence
 * allowed-token bitmasks in the continuous batch, with hand-made masks (the grammar engine is
 * not needed to check the engine side). Checks: every sampled token is allowed; greedy is the
 * argmax over the allowed set; logprobs are the model's unmasked ones (against a forward pass);
 * a sequence never samples before its mask arrives while its unconstrained neighbours run on
 * unchanged; ensembles mask the mixture; stop(); bad masks are refused with a code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { loadNativeAddon } from '../../native/binding.ts';
import { Engine, type GenerationHandle, type GenerationResult } from '../../native/engine.ts';
import { NativeError } from '../../native/errors.ts';
import { tokenAllowed, tokenMaskOf, tokenMaskWords } from '../../native/token-mask.ts';
import type { SequenceEvent, SequenceParams } from '../../native/types.ts';
import { adapterSpec, argmax, loadReference, logsumexp, modelDir, params, testThreads } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[0].input_ids;
/** A fixed allowed set the unconstrained greedy continuation does not stay in. */
const allowed = [40, 41, 42, 43, 44, 45, 46, 47, 97, 98, 99, 100, 101, 300, 301, 302, 700, 701, 1023];

describe('constrained decoding (token masks)', () => {
  let engine: Engine;
  let vocab: number;
  let mask: Int32Array;
  const slot: Record<string, number> = {};

  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 32 });
    vocab = engine.info().vocabSize;
    mask = tokenMaskOf(vocab, allowed);
    for (const n of ['shout', 'whisper']) slot[n] = await engine.loadAdapter(adapterSpec(n));
  });
  after(() => engine.dispose());

  /**
   * Generate under masks: `maskAt(k)` is the mask of generated token k, sent (like a grammar
   * matcher would) after token k - 1's event; the first one with the request unless `lateFirst`.
   */
  const constrained = (over: Partial<SequenceParams>, maskAt: (k: number) => Int32Array = () => mask, lateFirst = false) => {
    let k = 0;
    const events: SequenceEvent[] = [];
    // eslint-disable-next-line prefer-const
    let h: GenerationHandle;
    h = engine.generate(params(prompt, { constrained: true, ...(lateFirst ? {} : { tokenMask: maskAt(0) }), ...over }), (ev) => {
      events.push(ev);
      if (ev.token >= 0) k++;
      if (ev.token >= 0 && !ev.finishReason) h.setTokenMask(maskAt(k));
    });
    return { h, events };
  };

  test('greedy: every token is allowed, each is the argmax over the allowed set, logprobs are unmasked', async () => {
    const r = await constrained({ maxTokens: 12, logprobs: 3 }).h.done;
    assert.equal(r.finishReason, 'length');
    assert.equal(r.tokens.length, 12);
    // One forward over prompt + generated gives the logits at every generated position.
    const fw = await engine.forward([...prompt, ...r.tokens.slice(0, -1)]);
    r.tokens.forEach((tok, k) => {
      assert.ok(allowed.includes(tok), `token ${k} = ${tok} is not allowed`);
      const row = fw.logits.subarray((prompt.length - 1 + k) * vocab, (prompt.length + k) * vocab);
      const sorted = allowed.map((t) => row[t]).sort((a, b) => b - a);
      if (sorted[0] - sorted[1] > 1e-3) assert.equal(tok, allowed[argmax(allowed.map((t) => row[t]))], `step ${k}: argmax over the allowed set`);
      const lp = row[tok] - logsumexp(row);  // log_softmax over the whole vocabulary: the model's own
      assert.ok(Math.abs(r.logprobs[k] - lp) < 1e-3, `step ${k}: logprob ${r.logprobs[k]} vs unmasked ${lp}`);
      assert.equal(r.topLogprobs[k][0].token, argmax(row), `step ${k}: top logprobs are of the unmasked distribution`);
    });
    const free = await engine.generate(params(prompt, { maxTokens: 12 })).done;
    assert.ok(free.tokens.some((t) => !allowed.includes(t)), 'the unconstrained continuation leaves the set (the mask did something)');
  });

  test('sampling with temperature, top-k, top-p and logit_bias never leaves the allowed set', async () => {
    const runs = [
      { temperature: 1.5, seed: 11 },
      { temperature: 1, topK: 3, seed: 12 },
      { temperature: 0.8, topP: 0.5, seed: 13 },
      { temperature: 1, seed: 14, logitBias: [[5, 100]] as Array<[number, number]>, frequencyPenalty: 1 },
    ];
    const results = await Promise.all(runs.map((over) => constrained({ maxTokens: 24, ...over }).h.done));
    for (const r of results) {
      assert.equal(r.tokens.length, 24);
      for (const t of r.tokens) assert.ok(allowed.includes(t), `${t} is not allowed`);
    }
    assert.ok(new Set(results[0].tokens).size > 1, 'temperature 1.5 samples more than one token');
  });

  test('a mask per position (changing sets) is followed token by token', async () => {
    const sets = [[40, 41], [300], [97, 98, 99], [1023, 700]];
    const r = await constrained({ maxTokens: 8, temperature: 1, seed: 3 }, (k) => tokenMaskOf(vocab, sets[k % sets.length])).h.done;
    r.tokens.forEach((t, k) => assert.ok(sets[k % sets.length].includes(t), `token ${k} = ${t} not in ${sets[k % sets.length]}`));
  });

  test('unconstrained neighbours in a mixed batch equal running alone', async () => {
    const plain = (i: number) =>
      params(ref.prompts[i % ref.prompts.length].input_ids, {
        maxTokens: 16,
        adapters: i % 3 === 0 ? [] : [{ slot: slot[i % 3 === 1 ? 'shout' : 'whisper'], weight: 1 }],
        ...(i % 2 ? { temperature: 1, seed: 100 + i } : {}),
      });
    const alone: GenerationResult[] = [];
    for (let i = 0; i < 6; i++) alone.push(await engine.generate(plain(i)).done);
    const mixed = Array.from({ length: 6 }, (_, i) => engine.generate(plain(i)).done);
    const cons = [0, 1, 2].map((i) => constrained({ maxTokens: 16, temperature: i ? 1 : 0, seed: i }).h.done);
    const got = await Promise.all(mixed);
    got.forEach((r, i) => assert.deepEqual(r.tokens, alone[i].tokens, `neighbour ${i}`));
    for (const r of await Promise.all(cons)) r.tokens.forEach((t) => assert.ok(allowed.includes(t)));
  });

  test('a sequence never samples before its mask; its neighbours do not wait for it', async () => {
    const c = constrained({ maxTokens: 4 }, () => mask, true);  // no tokenMask at submit
    const neighbour = await engine.generate(params(prompt, { maxTokens: 12 })).done;
    assert.equal(neighbour.tokens.length, 12);
    assert.equal(c.events.length, 0, 'the constrained sequence produced nothing without a mask');
    assert.equal(engine.stats().running, 1, 'it is held, not dropped');
    c.h.setTokenMask(mask);
    const r = await c.h.done;
    assert.equal(r.tokens.length, 4);
    r.tokens.forEach((t) => assert.ok(allowed.includes(t)));
    // The same tokens as with the mask at submit (holding changes nothing but the timing).
    assert.deepEqual(r.tokens, (await constrained({ maxTokens: 4 }).h.done).tokens);
  });

  test('ensembles apply the mask to the mixture', async () => {
    const members = [
      { adapters: [{ slot: slot.shout, weight: 1 }], weight: 0.7 },
      { adapters: [{ slot: slot.whisper, weight: 1 }], weight: 0.3 },
    ];
    const r = await constrained({ ensemble: members, maxTokens: 6, logprobs: 0 }).h.done;
    const ctx = [...prompt, ...r.tokens.slice(0, -1)];
    const rows = await Promise.all(members.map((m) => engine.forward(ctx, m.adapters)));
    r.tokens.forEach((tok, k) => {
      assert.ok(allowed.includes(tok));
      // p = sum_i w_i softmax(l_i) over the whole vocabulary, then restricted to the allowed set.
      const p = allowed.map((t) =>
        members.reduce((sum, m, i) => {
          const row = rows[i].logits.subarray((prompt.length - 1 + k) * vocab, (prompt.length + k) * vocab);
          return sum + m.weight * Math.exp(row[t] - logsumexp(row));
        }, 0),
      );
      const sorted = [...p].sort((a, b) => b - a);
      if (sorted[0] / sorted[1] > 1 + 1e-3) assert.equal(tok, allowed[argmax(p)], `step ${k}: argmax of the masked mixture`);
    });
  });

  test('stop() ends a constrained sequence with "stop" and no further token', async () => {
    let n = 0;
    // eslint-disable-next-line prefer-const
    let h: GenerationHandle;
    h = engine.generate(params(prompt, { constrained: true, tokenMask: mask, maxTokens: 50 }), (ev) => {
      if (ev.token < 0 || ev.finishReason) return;
      if (++n === 3) h.stop();  // the grammar terminated: no mask is owed
      else h.setTokenMask(mask);
    });
    const r = await h.done;
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.tokens.length, 3);
    assert.equal(r.completionTokens, 3);
    assert.equal(engine.stats().running, 0);
  });

  test('bad masks are refused with code invalid_argument naming tokenMask; protocol errors finish the sequence "error"', async () => {
    const refused = (fn: () => unknown, re: RegExp) =>
      assert.throws(fn, (e: NativeError) => e instanceof NativeError && e.code === 'invalid_argument' && e.param === 'tokenMask' && re.test(e.message));
    const words = tokenMaskWords(vocab);
    refused(() => engine.generate(params(prompt, { constrained: true, tokenMask: new Int32Array(words - 1) })), /31 words.*32 32-bit words/);
    refused(() => engine.generate(params(prompt, { constrained: true, tokenMask: new Int32Array(words) })), /allows no token/);
    refused(() => engine.generate(params(prompt, { tokenMask: mask })), /only accepted with constrained: true/);
    refused(() => engine.setTokenMask(1, [1, 2] as unknown as Int32Array), /Int32Array/);
    // The native side checks too (for callers of the raw addon), and names the field.
    const raw = await loadNativeAddon().loadModel(modelDir, { threads: 1 });
    try {
      assert.throws(
        () => raw.addSequence(params(prompt, { constrained: true, tokenMask: new Int32Array(words + 1) })),
        (e: Error & { code?: string; field?: string }) =>
          /tokenMask has 33 words/.test(e.message) && e.code === 'invalid_argument' && e.field === 'SequenceParams.tokenMask',
      );
      assert.throws(() => raw.addSequence(params(prompt, { constrained: true, tokenMask: new Int32Array(words) })), /tokenMask allows no token/);
      assert.throws(() => raw.addSequence(params(prompt, { tokenMask: mask })), /only accepted with constrained: true/);
      assert.throws(() => raw.setTokenMask(1, new Float32Array(words) as unknown as Int32Array), /Int32Array/);
      raw.setTokenMask(424242, mask);  // unknown ids are ignored
    } finally {
      await raw.dispose();
    }
    // A mask for an unconstrained sequence, or a second one for the same token: "error", named.
    const free = engine.generate(params(prompt, { maxTokens: 400 }));
    free.setTokenMask(mask);
    const fr = await free.done;
    assert.equal(fr.finishReason, 'error');
    assert.match(fr.error ?? '', /not added with constrained: true/);
    // A second mask for one token is refused at once (the first was sent with the request).
    const twice = constrained({ maxTokens: 2 });
    refused(() => twice.h.setTokenMask(mask), /already has the mask of its next token/);
    assert.equal((await twice.h.done).tokens.length, 2, 'the refused call left the sequence intact');
    // The engine keeps serving.
    const ok = await constrained({ maxTokens: 3 }).h.done;
    assert.equal(ok.tokens.length, 3);
    assert.ok(ok.tokens.every((t) => tokenAllowed(mask, t)));
  });
});
