/**
 * A KV cache smaller than one prompt (`numKvBlocks` 4 x 16 tokens): a sequence that can never fit
 * fails with the engine's reason (which names kvCacheBytes / numKvBlocks), also when the same
 * request scores its prompt (echo + logprobs), where the scoring it cut used to answer its own
 * "cancelled" instead; the one-pass loglikelihood request needs no sequence and is answered.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo({ engine: { threads: 2, numKvBlocks: 4 } });
});
after(async () => {
  await srv?.close();
});

const prompt = Array.from({ length: 300 }, (_, i) => 1 + ((i * 37) % 1000));

test('a sequence larger than the whole KV cache fails naming the cache, with or without prompt scoring', async () => {
  // One row per chunk: the scoring is still running when the sequence fails (and cuts it).
  process.env.OPENLORA_PROMPT_LOGPROBS_ROWS = '1';
  after(() => delete process.env.OPENLORA_PROMPT_LOGPROBS_ROWS);
  for (const extra of [{}, { echo: true, logprobs: 1 }]) {
    const r = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt, max_tokens: 1, temperature: 0.5, top_k: 1, ...extra });
    assert.equal(r.status, 500, JSON.stringify(r.body));
    assert.match(r.body.error.message, /KV blocks .* whole KV cache has 4/, JSON.stringify(extra));
  }
  const one = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt, max_tokens: 1, temperature: 0, echo: true, logprobs: 1 });
  assert.equal(one.status, 200, JSON.stringify(one.body));
  assert.equal(one.body.choices[0].logprobs.tokens.length, prompt.length + 1);
});
