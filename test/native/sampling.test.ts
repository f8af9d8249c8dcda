/**
 * Engine-side sampling and finish reasons: seeds, top-k/top-p, min_p, logit_bias, penalties
 * (presence, frequency, repetition), stop tokens, maxTokens, the context limit, cancellation.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { NativeError } from '../../native/errors.ts';
import { tokenMaskOf } from '../../native/token-mask.ts';
import { adapterSpec, buildCppCheck, cpuFlags, loadReference, modelDir, params, testThreads } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[0].input_ids;  // "<|begin_of_text|>ROMEO:\n"
const greedyRef = ref.prompts[0].results.base.greedy.tokens;

describe('sampling', () => {
  let engine: Engine;
  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads });
  });
  after(() => engine.dispose());

  const run = async (over: Parameters<typeof params>[1]) => (await engine.generate(params(prompt, over)).done);

  test('the same seed gives the same tokens; different seeds differ', async () => {
    const a = await run({ temperature: 1, seed: 42, maxTokens: 24 });
    const b = await run({ temperature: 1, seed: 42, maxTokens: 24 });
    const c = await run({ temperature: 1, seed: 43, maxTokens: 24 });
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.tokens, c.tokens);
  });

  test('temperature > 0 with topK = 1, or with a tiny topP, equals greedy', async () => {
    const greedy = await run({ maxTokens: 16 });
    assert.deepEqual(greedy.tokens, greedyRef.slice(0, 16));
    assert.deepEqual((await run({ temperature: 0.9, topK: 1, seed: 7, maxTokens: 16 })).tokens, greedy.tokens);
    assert.deepEqual((await run({ temperature: 1.3, topP: 1e-6, seed: 9, maxTokens: 16 })).tokens, greedy.tokens);
  });

  test('topK restricts samples to the k most likely tokens', async () => {
    const r = await run({ temperature: 5, topK: 3, seed: 1, maxTokens: 8, logprobs: 3 });
    r.tokens.forEach((tok, k) => assert.ok(r.topLogprobs[k].some((t) => t.token === tok), `step ${k}: ${tok} not in top 3`));
  });

  test('logit_bias of +100 forces a token (sampled and greedy)', async () => {
    for (const temperature of [0, 1]) {
      const r = await run({ temperature, seed: 3, maxTokens: 6, logitBias: [[500, 100]] });
      assert.deepEqual(r.tokens, [500, 500, 500, 500, 500, 500]);
    }
  });

  test('presence/frequency penalties follow the OpenAI formula over generated tokens only', async () => {
    // Greedy with penalties: the chosen token must maximise
    // logprob[t] - freq * count[t] - pres * (count[t] > 0) over the raw top 20 (logprob
    // differences are logit differences), with counts over previously generated tokens.
    const freq = 0.6, pres = 0.4;
    const repetitive = ref.prompts[1].input_ids;  // base greedy repeats "SICINIUS: He's appears"
    const plain = await engine.generate(params(repetitive, { maxTokens: 32 })).done;
    const r = await engine.generate(params(repetitive, { maxTokens: 32, frequencyPenalty: freq, presencePenalty: pres, logprobs: 20 })).done;
    assert.notDeepEqual(r.tokens, plain.tokens);
    assert.equal(r.tokens[0], plain.tokens[0], 'prompt tokens must not be penalised');
    const counts = new Map<number, number>();
    r.tokens.forEach((tok, k) => {
      const scored = r.topLogprobs[k]
        .map(({ token, logprob }) => {
          const n = counts.get(token) ?? 0;
          return { token, score: logprob - freq * n - pres * (n > 0 ? 1 : 0) };
        })
        .sort((a, b) => b.score - a.score);
      if (scored[0].score - scored[1].score > 1e-4) assert.equal(tok, scored[0].token, `step ${k}`);
      counts.set(tok, (counts.get(tok) ?? 0) + 1);
    });
  });

  test('repetition_penalty (vLLM): 1 changes nothing; > 1 makes the repetitive prompt repeat less', async () => {
    const repetitive = ref.prompts[1].input_ids;  // base greedy repeats "SICINIUS: He's appears"
    const plain = await engine.generate(params(repetitive, { maxTokens: 32 })).done;
    assert.deepEqual((await engine.generate(params(repetitive, { maxTokens: 32, repetitionPenalty: 1 })).done).tokens, plain.tokens);
    const r = await engine.generate(params(repetitive, { maxTokens: 32, repetitionPenalty: 1.5 })).done;
    const distinct = (t: number[]) => new Set(t).size;
    assert.ok(distinct(r.tokens) > distinct(plain.tokens), `${distinct(r.tokens)} distinct tokens vs ${distinct(plain.tokens)}`);
  });

  test('min_p = 1 keeps only the most likely token: any temperature and seed give greedy', async () => {
    const greedy = await run({ maxTokens: 16 });
    assert.deepEqual((await run({ temperature: 1.7, minP: 1, seed: 11, maxTokens: 16 })).tokens, greedy.tokens);
  });

  test('the sampler\'s repetition_penalty and min_p formulas on hand-made logits, computeLogprobs vs a naive one (C++ driver)', () => {
    const exe = buildCppCheck('sampler_check', ['test/native/cpp/sampler_check.cc', 'native/src/sampler.cc', 'native/src/token_mask.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc']);
    // computeLogprobs' normaliser has an AVX2 path and a portable one: both, where the CPU has AVX2.
    for (const force of cpuFlags.has('avx2') && cpuFlags.has('fma') ? ['', 'portable'] : ['portable']) {
      const r = spawnSync(exe, [], { encoding: 'utf8', env: { ...process.env, OPENLORA_GEMM: force } });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { checks: number; failures: string[] };
      assert.deepEqual(out.failures, [], `OPENLORA_GEMM=${force}`);
      assert.ok(out.checks >= 34);
    }
  });

  test('a sampled stop token ends with "stop" and is reported', async () => {
    const stop = greedyRef[3];
    const firstAt = greedyRef.indexOf(stop);
    const r = await run({ maxTokens: 32, stopTokenIds: [stop], logprobs: 0 });
    assert.equal(r.finishReason, 'stop');
    assert.deepEqual(r.tokens, greedyRef.slice(0, firstAt + 1));
    assert.equal(r.completionTokens, firstAt + 1);
    assert.equal(r.promptTokens, prompt.length);
    assert.equal(r.logprobs.length, r.tokens.length);
    assert.equal(r.topLogprobs.length, 0);
  });

  test('minTokens masks the stop ids until that many tokens were generated (vLLM min_tokens)', async () => {
    const stop = greedyRef[3];
    const firstAt = greedyRef.indexOf(stop);
    // Greedy picks the stop id at step firstAt: with minTokens 8 the next best token is taken instead.
    const r = await run({ maxTokens: 8, stopTokenIds: [stop], minTokens: 8 });
    assert.deepEqual(r.tokens.slice(0, firstAt), greedyRef.slice(0, firstAt));
    assert.notEqual(r.tokens[firstAt], stop);
    assert.ok(!r.tokens.includes(stop), `stop id ${stop} sampled before minTokens: ${r.tokens}`);
    assert.equal(r.finishReason, 'length');
    // A bias of +100 makes the stop id the only choice: it comes exactly at token minTokens + 1.
    for (const temperature of [0, 1]) {
      const f = await run({ temperature, seed: 4, maxTokens: 20, stopTokenIds: [stop], logitBias: [[stop, 100]], minTokens: 5 });
      assert.equal(f.finishReason, 'stop');
      assert.equal(f.completionTokens, 6);
      assert.ok(!f.tokens.slice(0, 5).includes(stop));
      assert.equal(f.tokens[5], stop);
    }
    // Without minTokens the forced stop id ends the sequence at once.
    assert.deepEqual((await run({ maxTokens: 20, stopTokenIds: [stop], logitBias: [[stop, 100]] })).tokens, [stop]);
  });

  test('minTokens yields to a token mask that allows only a stop id', async () => {
    const stop = greedyRef[0];
    const mask = tokenMaskOf(engine.info().vocabSize, [stop]);
    for (const temperature of [0, 1]) {
      const r = await run({ temperature, seed: 2, maxTokens: 10, stopTokenIds: [stop], minTokens: 10, constrained: true, tokenMask: mask });
      assert.deepEqual(r.tokens, [stop]);
      assert.equal(r.finishReason, 'stop');
    }
  });

  test('maxTokens ends with "length"', async () => {
    const r = await run({ maxTokens: 3 });
    assert.equal(r.finishReason, 'length');
    assert.equal(r.completionTokens, 3);
  });

  test('reaching max_position_embeddings ends with "length"', async () => {
    const max = engine.info().maxModelLen;
    const long = Array.from({ length: max - 2 }, (_, i) => 100 + (i % 50));
    const r = await engine.generate(params(long, { maxTokens: 100 })).done;
    assert.equal(r.finishReason, 'length');
    assert.equal(r.completionTokens, 2);
    assert.throws(() => engine.generate(params(Array(max).fill(5))), /context/);
  });

  test('cancel finishes "cancelled", frees the sequence, and the engine keeps serving', async () => {
    let events = 0;
    const h = engine.generate(params(prompt, { maxTokens: 400, temperature: 1, seed: 5 }), (ev) => {
      if (++events === 2) h.cancel();
    });
    const r = await h.done;
    assert.equal(r.finishReason, 'cancelled');
    assert.ok(r.completionTokens < 400);
    assert.equal(engine.stats().running, 0);
    engine.cancel(987654);  // unknown ids are ignored
    assert.deepEqual((await run({ maxTokens: 4 })).tokens, greedyRef.slice(0, 4));
  });

  test('invalid parameters are refused by the engine with NativeError invalid_argument naming the field', () => {
    const bad: Array<[Parameters<typeof params>[1], RegExp]> = [
      [{ promptIds: [] }, /promptIds/],
      [{ promptIds: [1, 5000] }, /promptIds\[1\]/],
      [{ maxTokens: 0 }, /maxTokens/],
      [{ topP: 0 }, /topP/],
      [{ logprobs: 21 }, /logprobs/],
      [{ adapters: [{ slot: 99, weight: 1 }] }, /adapter slot 99 is out of range/],
      [{ temperature: -1 }, /temperature/],
      [{ stopTokenIds: [1024] }, /stopTokenIds/],
      [{ logitBias: [[2000, 1]] }, /logitBias/],
      [{ minTokens: -1 }, /minTokens/],
      [{ repetitionPenalty: 0 }, /repetitionPenalty/],
      [{ minP: 1.5 }, /minP/],
    ];
    for (const [over, re] of bad) {
      assert.throws(() => engine.generate(params(prompt, over)), (e: unknown) => e instanceof NativeError && e.code === 'invalid_argument' && re.test(e.message), re.source);
    }
  });

  test('an adapter slot that is not loaded is refused by the native side', async () => {
    assert.throws(() => engine.generate(params(prompt, { adapters: [{ slot: 3, weight: 1 }] })), /slot 3 is not loaded/);
    const slot = await engine.loadAdapter(adapterSpec('romeo'));
    const h = engine.generate(params(prompt, { adapters: [{ slot, weight: 1 }], maxTokens: 50 }));
    assert.throws(() => engine.unloadAdapter(slot), /in use by 1 live sequence/);
    await h.done;
    engine.unloadAdapter(slot);
    assert.equal(engine.stats().slotsUsed, 0);
  });
});
