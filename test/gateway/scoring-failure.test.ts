/**
 * A request whose sequence fails while its prompt is still being scored (echo + logprobs on the
 * sampling path): the answer is the sequence's engine error, not the "cancelled" of the scoring
 * that the failure cut (which used to surface as a 500 `internal`).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { fakeServer, post } from './helpers.ts';

let srv: Awaited<ReturnType<typeof fakeServer>>;
before(async () => {
  srv = await fakeServer(() => [65, 66, 67], { engine: { failAt: 0, scoreDelayMs: 300 } });
});
after(async () => {
  await srv?.close();
});

test('the sequence failing mid-scoring answers its own error', async () => {
  const r = await post(srv.url + '/v1/completions', { model: 'tiny', prompt: [5, 6, 7, 8], echo: true, logprobs: 1, max_tokens: 3, temperature: 0.5 });
  assert.equal(r.status, 500, r.text);
  assert.equal(r.body.error.code, 'engine_error', r.text);
});
