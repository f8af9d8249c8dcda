/**
 * Engine.promptLogprobs (vLLM's prompt_logprobs; completions' `echo` with `logprobs`): every
 * prompt token after the first scored by the engine in C++, against log_softmax of the
 * all-position logits of Engine.forward computed here in float64, and the top-1 token against
 * the independent PyTorch reference's per-position argmax (test/fixtures reference.json), for the
 * base model, an adapter and a `cat` merge; the same numbers when the prompt runs in chunks of
 * 1, 3 and 7 rows (OPENLORA_PROMPT_LOGPROBS_ROWS), one chunk per loop of the engine thread
 * (a running generation keeps stepping meanwhile; an AbortSignal drops it before its next chunk;
 * dispose fails it); refused arguments name their field.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import type { AdapterRef, PromptLogprobsResult } from '../../native/types.ts';
import { adapterSpec, loadReference, logsumexp, modelDir, params, testThreads } from './helpers.ts';

const TOL = 1e-3;
const TOP = 5;
const ref = loadReference();

describe('Engine.promptLogprobs', () => {
  let engine: Engine;
  const slots = new Map<string, number>();
  const refsFor = (config: string): AdapterRef[] => ref.configs[config].map(({ adapter, weight }) => ({ slot: slots.get(adapter)!, weight }));

  before(async () => {
    engine = await Engine.load(modelDir, { threads: testThreads });
    for (const name of ['shout', 'whisper']) slots.set(name, await engine.loadAdapter(adapterSpec(name)));
  });
  after(async () => {
    delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
    await engine.dispose();
  });

  /** Every position of `got` against log_softmax of forward()'s logits (float64 here). */
  async function compare(ids: number[], adapters: AdapterRef[], got: PromptLogprobsResult): Promise<number> {
    const fw = await engine.forward(ids, adapters);
    const V = fw.vocabSize;
    assert.equal(got.numTokens, ids.length);
    assert.equal(got.topN, TOP);
    assert.equal(got.tokenLogprobs.length, ids.length - 1);
    assert.equal(got.topIds.length, (ids.length - 1) * TOP);
    let maxErr = 0;
    for (let i = 0; i + 1 < ids.length; i++) {
      const row = fw.logits.subarray(i * V, (i + 1) * V);
      const lse = logsumexp(row);
      maxErr = Math.max(maxErr, Math.abs(got.tokenLogprobs[i]! - (row[ids[i + 1]!]! - lse)));
      assert.equal(got.tokenRanks[i], 1 + row.filter((v) => v > row[ids[i + 1]!]!).length, `position ${i}: rank`);
      // The top list: most likely first, ties to the lower id, each logprob that of its id.
      const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
      for (let j = 0; j < TOP; j++) {
        const id = got.topIds[i * TOP + j]!;
        maxErr = Math.max(maxErr, Math.abs(got.topLogprobs[i * TOP + j]! - (row[id]! - lse)));
        if (j > 0) assert.ok(got.topLogprobs[i * TOP + j]! <= got.topLogprobs[i * TOP + j - 1]!, `position ${i}: top list out of order`);
        if (Math.abs(row[id]! - row[order[j]!]!) > 1e-5) assert.fail(`position ${i}: top[${j}] = ${id}, expected ${order[j]}`);
      }
    }
    return maxErr;
  }

  for (const config of ['base', 'shout', 'cat_shout0.5_whisper0.5']) {
    test(`matches log_softmax of forward() and the reference's argmax [${config}]`, async (t) => {
      let maxErr = 0;
      for (const p of ref.prompts) {
        const got = await engine.promptLogprobs(p.input_ids, refsFor(config), TOP);
        maxErr = Math.max(maxErr, await compare(p.input_ids, refsFor(config), got));
        const r = p.results[config];
        for (let i = 0; i + 1 < p.input_ids.length; i++) {
          if (r.position_margins[i] < TOL) continue;
          assert.equal(got.topIds[i * TOP], r.argmax[i], `${p.id} position ${i}: top-1 vs the reference's argmax`);
        }
      }
      t.diagnostic(`max |logprob - log_softmax(forward)| ${maxErr.toExponential(2)}`);
      assert.ok(maxErr < 1e-4, `max error ${maxErr}`);
    });
  }

  test('the same logprobs whatever the rows per chunk (the prompt continues its KV across chunks)', async () => {
    const p = ref.prompts.reduce((a, b) => (b.input_ids.length > a.input_ids.length ? b : a));
    assert.ok(p.input_ids.length > 8, 'a prompt longer than the chunks');
    const whole = await engine.promptLogprobs(p.input_ids, refsFor('shout'), TOP);
    for (const rows of ['1', '3', '7']) {
      process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = rows;
      const got = await engine.promptLogprobs(p.input_ids, refsFor('shout'), TOP);
      assert.deepEqual(Array.from(got.topIds), Array.from(whole.topIds), `${rows} rows per chunk: top ids`);
      for (let i = 0; i < whole.tokenLogprobs.length; i++) {
        assert.ok(Math.abs(got.tokenLogprobs[i]! - whole.tokenLogprobs[i]!) < 1e-4, `${rows} rows per chunk, position ${i}`);
      }
    }
    delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
  });

  test('a long prompt is scored a chunk per engine loop: a running generation keeps stepping meanwhile', async () => {
    const long = Array.from({ length: 120 }, (_, i) => 1 + ((i * 37) % 900));
    process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = '1';
    try {
      const order: string[] = [];
      const gen = engine.generate(params(ref.prompts[0]!.input_ids, { maxTokens: 24, stopTokenIds: [] })).done.then(() => order.push('generation'));
      const scored = engine.promptLogprobs(long, [], 2).then((r) => {
        order.push('scoring');
        return r;
      });
      const [, r] = await Promise.all([gen, scored]);
      assert.equal(r.tokenLogprobs.length, long.length - 1);
      // 119 one-row chunks against 24 steps: interleaved, the generation ends first.
      assert.deepEqual(order, ['generation', 'scoring']);
    } finally {
      delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
    }
  });

  test('an aborted scoring stops before its next chunk and frees its adapter; the engine goes on', async () => {
    const slot = await engine.loadAdapter(adapterSpec('romeo'));
    process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = '1';
    try {
      const ac = new AbortController();
      const long = Array.from({ length: 400 }, (_, i) => 1 + ((i * 13) % 700));
      const t0 = performance.now();
      const pending = engine.promptLogprobs(long, [{ slot, weight: 1 }], 1, ac.signal);
      setTimeout(() => ac.abort(), 30);
      await assert.rejects(pending, /cancelled/);
      const aborted = performance.now() - t0;
      // Unpinned again: the slot unloads (a pinned slot is refused).
      engine.unloadAdapter(slot);
      const t1 = performance.now();
      const whole = await engine.promptLogprobs(long, [], 1);
      const full = performance.now() - t1;
      assert.equal(whole.tokenLogprobs.length, long.length - 1);
      assert.ok(aborted < full, `aborted after ${aborted.toFixed(0)} ms, a whole scoring takes ${full.toFixed(0)} ms`);
      // Already aborted: rejected without scoring.
      const gone = new AbortController();
      gone.abort();
      await assert.rejects(engine.promptLogprobs(long, [], 1, gone.signal), /cancelled/);
    } finally {
      delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
    }
  });

  test('disposing the engine fails a prompt still being scored with disposed', async () => {
    const e2 = await Engine.load(modelDir, { threads: 1 });
    process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = '1';
    try {
      const pending = e2.promptLogprobs(Array.from({ length: 200 }, (_, i) => 1 + (i % 500)), [], 1);
      const disposed = e2.dispose();
      await assert.rejects(pending, (e: Error & { code?: string }) => e.code === 'disposed' || /disposed/.test(e.message));
      await disposed;
    } finally {
      delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
    }
  });

  test('a one-token prompt has no positions to score; topN 0 gives no alternatives', async () => {
    const one = await engine.promptLogprobs([ref.prompts[0]!.input_ids[0]!], [], TOP);
    assert.equal(one.tokenLogprobs.length, 0);
    assert.equal(one.topIds.length, 0);
    const ids = ref.prompts[0]!.input_ids;
    const none = await engine.promptLogprobs(ids, [], 0);
    assert.equal(none.tokenLogprobs.length, ids.length - 1);
    assert.equal(none.topIds.length, 0);
  });

  test('nextTopN: the most likely tokens after the prompt are the greedy first token and its logprobs, also in chunks and for a one-token prompt', async () => {
    for (const [config, p] of [['base', ref.prompts[0]!], ['shout', ref.prompts[1]!]] as const) {
      const adapters = refsFor(config);
      const gen = await engine.generate(params(p.input_ids, { adapters, maxTokens: 1, logprobs: 3 })).done;
      const got = await engine.promptLogprobs(p.input_ids, adapters, 1, undefined, 3);
      assert.equal(got.tokenLogprobs.length, p.input_ids.length - 1, 'the prompt positions as before');
      assert.equal(got.nextTopIds!.length, 3);
      assert.equal(got.nextTopIds![0], gen.tokens[0], `${config}: the greedy token`);
      assert.equal(got.nextTopIds![0], p.results[config].greedy.tokens[0], `${config}: the reference's greedy token`);
      assert.ok(Math.abs(got.nextTopLogprobs![0]! - gen.logprobs[0]!) < 1e-4, `${got.nextTopLogprobs![0]} vs ${gen.logprobs[0]}`);
      assert.ok(got.nextTopLogprobs![0]! >= got.nextTopLogprobs![1]! && got.nextTopLogprobs![1]! >= got.nextTopLogprobs![2]!);
      process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = '3';
      const chunked = await engine.promptLogprobs(p.input_ids, adapters, 1, undefined, 3);
      delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS;
      assert.deepEqual([...chunked.nextTopIds!], [...got.nextTopIds!]);
    }
    const one = await engine.promptLogprobs([ref.prompts[0]!.input_ids[0]!], [], 0, undefined, 1);
    assert.equal(one.tokenLogprobs.length, 0);
    assert.equal(one.nextTopIds!.length, 1);
    assert.equal((await engine.promptLogprobs([1, 2], [], 0)).nextTopIds, undefined, 'only when asked');
    await assert.rejects(engine.promptLogprobs([1, 2], [], 1, undefined, 21), /nextTopN/);
  });

  test('bad arguments are refused naming the field', async () => {
    await assert.rejects(engine.promptLogprobs([], [], 1), /promptIds/);
    await assert.rejects(engine.promptLogprobs([1, 2], [], 21), /promptTopN/);
    await assert.rejects(engine.promptLogprobs([1, 1 << 30], [], 1), /promptIds\[1\]/);
    await assert.rejects(engine.promptLogprobs([1, 2], [{ slot: 99, weight: 1 }], 1), /slot/);
  });
});
