import assert from 'node:assert/strict';
import { test } from 'node:test';
import express from 'express';
import request from 'supertest';
import { openLora } from '../../plugin/index.ts';
import { demoTokenizer, FakeAdapters, ScriptedEngine, makeApp } from './fakes.ts';

const CHAT = '/v1/chat/completions';
const ok = { model: 'tiny', messages: [{ role: 'user', content: 'Speak.' }] };

function assertOpenAIError(body: unknown, status: number, res: { status: number }, param?: string | null) {
  assert.equal(res.status, status, JSON.stringify(body));
  const e = (body as { error: Record<string, unknown> }).error;
  assert.equal(typeof e.message, 'string');
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e);
  if (param !== undefined) assert.equal(e.param, param);
  return e;
}

test('4xx requests get OpenAI error bodies and the server keeps serving', async () => {
  const { app, tokenizer } = await makeApp((_p) => [65, 66, 1023]);
  const cases: Array<{ url?: string; body: unknown; raw?: string | Buffer; contentType?: string; status: number; param?: string | null; code?: string | null; match?: RegExp }> = [
    { raw: JSON.stringify(ok), contentType: 'application/json; charset=utf-16', body: null, status: 415, param: null, code: 'charset.unsupported', match: /charset "UTF-16".*must be UTF-8/ },
    { raw: '{"model": "tiny", "messages": [', body: null, status: 400, param: null, code: 'entity.parse.failed', match: /parse the JSON/ },
    {
      raw: Buffer.concat([Buffer.from('{"model": "tiny", "messages": [{"role": "user", "content": "hi '), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from('"}]}')]),
      body: null,
      status: 400,
      param: null,
      code: 'entity.verify.failed',
      match: /not valid UTF-8/,
    },
    // Valid JSON that is not an object: one answer whatever the JSON (body-parser's strict mode refuses
    // null, strings and numbers itself, the schema the array), with code null as OpenAI's.
    { raw: 'null', body: null, status: 400, param: null, code: null, match: /expected a JSON object, but got null instead/ },
    { raw: '"x"', body: null, status: 400, param: null, code: null, match: /expected a JSON object, but got a string instead/ },
    { raw: '[]', body: null, status: 400, param: null, code: null, match: /expected a JSON object, but got an array instead/ },
    { raw: '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}', body: null, status: 400, param: 'max_tokens', match: /too large to represent/ },
    { body: { ...ok, logit_bias: { abc: 1 } }, status: 400, param: 'logit_bias.abc', match: /Invalid key in 'logit_bias': expected a token id .*"abc"/ },
    { body: { model: 'tiny', messages: 'hi' }, status: 400, param: 'messages', match: /expected an array, but got a string/ },
    { body: { ...ok, n: 0 }, status: 400, param: 'n' },
    { body: { ...ok, max_tokens: -1 }, status: 400, param: 'max_tokens' },
    { body: { ...ok, stop: ['a', 'b', 'c', 'd', 'e'] }, status: 400, param: 'stop' },
    { body: { ...ok, model: 'gpt-4o' }, status: 404, param: 'model', code: 'model_not_found' },
    { body: { ...ok, model: 'tiny:nope' }, status: 404, param: 'model', code: 'model_not_found', match: /`nope`/ },
    { body: { ...ok, model: 'tiny:shout@0.5+whisper@x' }, status: 400, param: 'model', match: /ADAPTER\[@WEIGHT\] terms .*bare ADAPTER has weight 1/ },
    { body: { ...ok, model: 'tiny', adapters: [{ name: 'shout', weight: 1 }], merge: { strategy: 'ties', density: 0 } }, status: 400, param: 'merge.density', match: /density/ },
    { body: { ...ok, model: 'tiny', adapters: [{ name: 'shout', weight: 1 }], merge: { strategy: 'mystery' } }, status: 400, param: 'merge.strategy' },
    { body: { ...ok, model: 'tiny', adapters: [{ name: 'shout', weight: 1 }], merge: { strategy: 'ensemble' } }, status: 400, param: 'adapters', match: /at least two/ },
    { body: { ...ok, model: 'tiny', adapters: [{ name: 'ghost', weight: 1 }] }, status: 404, param: 'adapters[0].name', match: /ghost/ },
    { body: { ...ok, model: 'tiny', adapters: [{ name: 'other:shout', weight: 1 }] }, status: 400, param: 'adapters[0].name', match: /another base/ },
    { body: { ...ok, logit_bias: { '5000': 5 } }, status: 400, param: 'logit_bias', match: /5000/ },
    { body: { ...ok, model: 'tiny:shout', adapters: [{ name: 'shout', weight: 1 }] }, status: 400, param: 'adapters', match: /not both/ },
    { body: { ...ok, messages: [{ role: 'user', content: 'x'.repeat(3000) }] }, status: 400, param: 'messages', code: 'context_length_exceeded' },
    {
      url: '/v1/completions',
      body: { model: 'tiny', prompt: Array.from({ length: 600 }, () => 65) },
      status: 400,
      param: 'prompt',
      code: 'context_length_exceeded',
      match: /maximum context length is 512 tokens.*600 tokens/,
    },
    {
      url: '/v1/completions',
      body: { model: 'tiny', prompt: Array.from({ length: 512 }, () => 65) },
      status: 400,
      param: 'prompt',
      code: 'context_length_exceeded',
      match: /is 512 tokens\. However, your prompt resulted in 512 tokens, which leaves no room for a completion token\./,
    },
    { url: '/v1/completions', body: { model: 'tiny', prompt: [1, 2, 5000] }, status: 400, param: 'prompt', match: /5000/ },
    { url: '/v1/completions', body: { model: 'tiny', prompt: 'x', logprobs: 9 }, status: 400, param: 'logprobs' },
    { url: '/v1/embeddings', body: { model: 'tiny', input: 'x' }, status: 404, code: 'unknown_url' },
  ];
  for (const c of cases) {
    const r = request(app).post(c.url ?? CHAT);
    // Raw bodies go out byte for byte (superagent would JSON-encode a Buffer).
    const res = c.raw !== undefined ? await r.set('content-type', c.contentType ?? 'application/json').serialize((x: unknown) => x as string).send(c.raw as string) : await r.send(c.body as object);
    const e = assertOpenAIError(res.body, c.status, res, c.param);
    if (c.code !== undefined) assert.equal(e.code, c.code, JSON.stringify(e));
    if (c.match) assert.match(e.message as string, c.match);
    const again = await request(app).post(CHAT).send(ok);
    assert.equal(again.status, 200, `server still serves after ${JSON.stringify(c.body ?? c.raw).slice(0, 60)}`);
  }
  // Prompt + an explicit max over the context: 400 with vLLM's message, never clamped; with no
  // max the completion gets what is left (one token here).
  const prompt = Array.from({ length: 511 }, () => 65);
  const over = await request(app).post('/v1/completions').send({ model: 'tiny', prompt, max_tokens: 100 });
  const e = assertOpenAIError(over.body, 400, over, 'prompt');
  assert.equal(e.code, 'context_length_exceeded');
  assert.equal(
    e.message,
    "This model's maximum context length is 512 tokens. However, you requested 611 tokens (511 in the messages, 100 in the completion). Please reduce the length of the messages or completion.",
  );
  const res = await request(app).post('/v1/completions').send({ model: 'tiny', prompt });
  assert.equal(res.status, 200);
  assert.equal(res.body.choices[0].finish_reason, 'length');
  assert.equal(res.body.usage.completion_tokens, 1);
  const exact = await request(app).post('/v1/completions').send({ model: 'tiny', prompt, max_tokens: 1 });
  assert.equal(exact.status, 200);
  assert.ok(tokenizer);
});

test('GET on a POST route is a 405 JSON, unknown /v1 routes 404 JSON; other paths fall through', async () => {
  const { app } = await makeApp(() => [1023]);
  app.get('/elsewhere', (_req, res) => void res.send('ok'));
  assertOpenAIError((await request(app).get(CHAT)).body, 405, await request(app).get(CHAT));
  assertOpenAIError((await request(app).get('/v1/nowhere')).body, 404, await request(app).get('/v1/nowhere'));
  assert.equal((await request(app).get('/elsewhere')).text, 'ok');
});

test('requests wait for models that are still loading; a failed load answers 503', async () => {
  const tokenizer = await demoTokenizer();
  let resolve!: (v: unknown) => void;
  const pending = new Promise((r) => (resolve = r));
  const engine = new ScriptedEngine(() => [65, 1023]);
  const router = openLora({
    models: pending.then(() => [{ name: 'tiny', engine: engine.asEngine(), tokenizer, adapters: new FakeAdapters('tiny') }]),
  });
  // The models resolve only after the request has entered the router, so it has to wait.
  const app = express()
    .use((_req, _res, next) => {
      next();
      setImmediate(() => resolve(undefined));
    })
    .use(router);
  const res = await request(app).post(CHAT).send(ok);
  assert.equal(res.status, 200);
  assert.equal(res.body.choices[0].message.content, 'A');

  const failing = openLora({ models: Promise.reject(new Error('tokenizer.json is missing')) });
  await assert.rejects(failing.ready, /tokenizer.json is missing/);
  const bad = await request(express().use(failing)).post(CHAT).send(ok);
  const e = assertOpenAIError(bad.body, 503, bad);
  assert.match(e.message as string, /failed to load/);
  const badTok = openLora({ models: [{ name: 'x', engine: engine.asEngine(), tokenizer: '/nonexistent', adapters: new FakeAdapters('x') }] });
  await assert.rejects(badTok.ready, /nonexistent.*tokenizer\.json/);
});

test('engine failures: 500 with the engine text, SSE error event after headers', async () => {
  const { app } = await makeApp(() => [65, 66, 67, 68, 1023], { failAt: 2 });
  const res = await request(app).post(CHAT).send(ok);
  const e = assertOpenAIError(res.body, 500, res);
  assert.equal(e.code, 'engine_error');
  assert.match(e.message as string, /fake engine failure/);

  const s = await request(app).post(CHAT).send({ ...ok, stream: true });
  assert.equal(s.status, 200);
  assert.match(s.headers['content-type'] ?? '', /text\/event-stream/);
  // the error event, then [DONE] (vLLM's framing: clients reading until [DONE] are not left waiting)
  const events = s.text.trim().split('\n\n');
  assert.equal(events.at(-1), 'data: [DONE]');
  const error = JSON.parse(events.at(-2)!.slice('data: '.length));
  assert.equal(error.error.code, 'engine_error');
  assert.equal(events.filter((e) => e === 'data: [DONE]').length, 1);
});

test('addSequence throwing midway: 500, queued sequences cancelled, lease released after they end', async () => {
  const { app, engine, adapters } = await makeApp(() => [65, 1023]);
  const add = engine.addSequence.bind(engine);
  engine.addSequence = (p) => {
    if (engine.added.length === 1) throw new Error('queue full');
    return add(p);
  };
  const res = await request(app).post(CHAT).send({ ...ok, model: 'tiny:shout', n: 2 });
  assertOpenAIError(res.body, 500, res);
  await engine.waitCancel();
  await adapters.allReleased();
  assert.equal(adapters.released, 1);
});
