/**
 * Backpressure on the fake model: a bounded admission queue per base model (429 +
 * Retry-After past it; a client leaving the queue frees its place), the body size limit (413
 * OpenAI body) and max_tokens capped to the context.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { TINY_INFO } from '../plugin/fakes.ts';
import { fakeServer, post, until } from './helpers.ts';

type Srv = Awaited<ReturnType<typeof fakeServer>>;
let srv: Srv;
before(async () => {
  srv = await fakeServer(() => [65, 66, 67], { engine: { repeat: true }, maxRunningSequences: 1, maxQueuedRequests: 2, bodyLimit: '2kb' });
});
after(async () => {
  await srv?.close();
});

const CHAT = '/v1/chat/completions';
const chat = (extra: object = {}) => ({ model: 'tiny:shout', messages: [{ role: 'user', content: 'x' }], max_tokens: 3, ...extra });

test('past the queue bound: 429 with Retry-After; the queued requests then run', async () => {
  srv.engine.paused = true;
  const running = post(srv.url + CHAT, chat());
  await until(() => srv.engine.added.length === 1);
  const queued = [post(srv.url + CHAT, chat()), post(srv.url + CHAT, chat())];
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(srv.engine.added.length, 1, 'queued requests are not in the engine');
  assert.equal(srv.adapters.acquired, 1, 'queued requests hold no adapter pin');
  const refused = await post(srv.url + CHAT, chat());
  assert.equal(refused.status, 429);
  assert.equal(refused.body.error.code, 'queue_full');
  assert.equal(refused.headers.get('retry-after'), '1');
  srv.engine.resume();
  for (const r of await Promise.all([running, ...queued])) assert.equal(r.status, 200, r.text);
  await srv.adapters.allReleased();
});

test('a client that leaves the queue frees its place', async () => {
  srv.engine.paused = true;
  const before = srv.engine.added.length;
  const running = post(srv.url + CHAT, chat());
  await until(() => srv.engine.added.length === before + 1);
  const ac = new AbortController();
  const leaving = fetch(srv.url + CHAT, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat()), signal: ac.signal }).catch(() => 'aborted');
  const staying = post(srv.url + CHAT, chat());
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await leaving;
  await new Promise((r) => setTimeout(r, 50));
  const third = post(srv.url + CHAT, chat()); // fits: the leaver's place is free
  await new Promise((r) => setTimeout(r, 50));
  srv.engine.resume();
  const results = await Promise.all([running, staying, third]);
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200]);
  assert.equal(srv.engine.added.length, before + 3, 'the leaver never reached the engine');
});

test('the queue bound counts sequences: waiting n: 4 requests fill it, a request larger than the bound waits alone', async () => {
  const wide = await fakeServer(() => [65, 66, 67], { engine: { repeat: true }, maxRunningSequences: 4, maxQueuedRequests: 6 });
  try {
    wide.engine.paused = true;
    const running = post(wide.url + CHAT, chat({ n: 4 }));
    await until(() => wide.engine.added.length === 4);
    const queued = post(wide.url + CHAT, chat({ n: 4 })); // 4 of 6 sequences
    await new Promise((r) => setTimeout(r, 50));
    const over = await post(wide.url + CHAT, chat({ n: 4 })); // 8 > 6
    assert.equal(over.status, 429, over.text);
    assert.match(over.body.error.message, /1 requests \(4 sequences\)/);
    const fits = post(wide.url + CHAT, chat({ n: 2 })); // 6 of 6
    await new Promise((r) => setTimeout(r, 50));
    const plain = await post(wide.url + CHAT, chat());
    assert.equal(plain.status, 429, 'a seventh waiting sequence is refused');
    wide.engine.resume();
    for (const r of await Promise.all([running, queued, fits])) assert.equal(r.status, 200, r.text);
    // Alone in the queue, a request of more sequences than the bound still waits and runs.
    const small = await fakeServer(() => [65, 66, 67], { engine: { repeat: true }, maxRunningSequences: 4, maxQueuedRequests: 2 });
    try {
      small.engine.paused = true;
      const first = post(small.url + CHAT, chat({ n: 4 }));
      await until(() => small.engine.added.length === 4);
      const big = post(small.url + CHAT, chat({ n: 4 }));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await post(small.url + CHAT, chat())).status, 429);
      small.engine.resume();
      for (const r of await Promise.all([first, big])) assert.equal(r.status, 200, r.text);
    } finally {
      await small.close();
    }
  } finally {
    await wide.close();
  }
});

test('a body over bodyLimit is 413 with an OpenAI error body', async () => {
  const r = await post(srv.url + CHAT, chat({ messages: [{ role: 'user', content: 'x'.repeat(4000) }] }));
  assert.equal(r.status, 413);
  assert.equal(r.body.error.type, 'invalid_request_error');
  assert.match(r.body.error.message, /too large/);
});

test('max_tokens beyond the context is a 400; without it a completion stops at 16 tokens (OpenAI / vLLM default)', async () => {
  const over = await post(srv.url + '/v1/completions', { model: 'tiny', prompt: [1, 2, 3, 4], max_tokens: 1_000_000_000 });
  assert.equal(over.status, 400, over.text);
  assert.equal(over.body.error.code, 'context_length_exceeded');
  const r = await post(srv.url + '/v1/completions', { model: 'tiny', prompt: [1, 2, 3, 4] });
  assert.equal(r.status, 200, r.text);
  assert.equal(srv.engine.added.at(-1)!.maxTokens, 16);
  assert.ok(r.body.usage.completion_tokens <= 16);
  // Chat keeps the rest of the context as its default.
  const c = await post(srv.url + '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(c.status, 200, c.text);
  assert.ok(srv.engine.added.at(-1)!.maxTokens > 16);
});
