/**
 * vLLM's request extensions `ignore_eos` and `min_tokens` on /v1/completions and
 * /v1/chat/completions: validated in the request schema, passed to the engine
 * (SequenceParams.stopTokenIds / minTokens), and applied to stop ids and stop strings.
 * The engine's own masking is tested in test/native/sampling.test.ts. Also vLLM's
 * `stream_options.continuous_usage_stats` (usage on every chunk) and a request `chat_template`
 * (refused, as vLLM without `--trust-request-chat-template`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import request from 'supertest';
import { makeApp } from './fakes.ts';

const COMPLETIONS = '/v1/completions';
const CHAT = '/v1/chat/completions';
// Demo tokenizer: ids 65..68 are the bytes 'A'..'D'; 1020 is its end-of-text (a stop id).
const A = 65, B = 66, C = 67, D = 68, EOS = 1020;

test('ignore_eos: the stop ids do not end the choice; max_tokens does (completions)', async () => {
  const { app, engine } = await makeApp(() => [B, EOS, C, D, EOS]);
  const plain = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 4 });
  assert.equal(plain.status, 200);
  assert.equal(plain.body.choices[0].text, 'B');
  assert.equal(plain.body.choices[0].finish_reason, 'stop');
  assert.ok(engine.added[0]!.stopTokenIds.includes(EOS));

  const res = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 4, ignore_eos: true });
  assert.equal(res.status, 200);
  assert.equal(res.body.choices[0].text, 'BCD'); // the end token is special: no text
  assert.equal(res.body.choices[0].finish_reason, 'length');
  assert.equal(res.body.usage.completion_tokens, 4);
  assert.deepEqual(engine.added[1]!.stopTokenIds, []);
  assert.equal(engine.added[1]!.minTokens, undefined);
});

test('ignore_eos on chat, streamed: content past the end token, finish "length"', async () => {
  const { app, engine } = await makeApp(() => [A, EOS, B, EOS]);
  const res = await request(app)
    .post(CHAT)
    .send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, ignore_eos: true, stream: true });
  assert.equal(res.status, 200);
  const chunks = res.text
    .split('\n\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)));
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, 'AB');
  assert.equal(chunks.at(-1).choices[0].finish_reason, 'length');
  assert.deepEqual(engine.added[0]!.stopTokenIds, []);
});

test('min_tokens goes to the engine and stop strings do not match before it', async () => {
  const { app, engine } = await makeApp(() => [A, B, C, B, D]);
  const early = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 5, stop: ['B'] });
  assert.equal(early.body.choices[0].text, 'A');
  const res = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 5, stop: ['B'], min_tokens: 3 });
  assert.equal(res.status, 200);
  assert.equal(res.body.choices[0].text, 'ABC'); // the second B (token 4) is past min_tokens
  assert.equal(res.body.choices[0].finish_reason, 'stop');
  assert.equal(engine.added[1]!.minTokens, 3);
  assert.ok(engine.added[1]!.stopTokenIds.includes(EOS));

  const chat = await request(app).post(CHAT).send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 8, min_tokens: 8 });
  assert.equal(chat.status, 200);
  assert.equal(engine.added[2]!.minTokens, 8);
});

test('bad ignore_eos / min_tokens are 400s naming the field', async () => {
  const { app, engine } = await makeApp(() => [A]);
  const cases: Array<[string, Record<string, unknown>, string]> = [
    [COMPLETIONS, { prompt: [1], min_tokens: -1 }, 'min_tokens'],
    [COMPLETIONS, { prompt: [1], min_tokens: 1.5 }, 'min_tokens'],
    [COMPLETIONS, { prompt: [1], min_tokens: 9, max_tokens: 4 }, 'min_tokens'],
    [COMPLETIONS, { prompt: [1], min_tokens: 17 }, 'min_tokens'], // above the default max_tokens (16)
    [CHAT, { messages: [{ role: 'user', content: 'x' }], min_tokens: 9, max_completion_tokens: 4 }, 'min_tokens'],
    [COMPLETIONS, { prompt: [1], ignore_eos: 'yes' }, 'ignore_eos'],
    [CHAT, { messages: [{ role: 'user', content: 'x' }], ignore_eos: 1 }, 'ignore_eos'],
    [CHAT, { messages: [{ role: 'user', content: 'x' }], ignore_eos: true, response_format: { type: 'json_object' } }, 'ignore_eos'],
    [COMPLETIONS, { prompt: [1], min_tokens: 5, guided_choice: ['yes', 'no'] }, 'min_tokens'],
  ];
  for (const [url, body, param] of cases) {
    const res = await request(app).post(url).send({ model: 'tiny', ...body });
    assert.equal(res.status, 400, `${url} ${JSON.stringify(body)}: ${res.text}`);
    assert.equal(res.body.error.param, param, JSON.stringify(res.body));
    assert.equal(res.body.error.type, 'invalid_request_error');
  }
  assert.equal(engine.added.length, 0);
  // Explicit nulls are the defaults.
  const ok = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], ignore_eos: null, min_tokens: null });
  assert.equal(ok.status, 200);
  assert.ok(engine.added[0]!.stopTokenIds.includes(EOS));
});

test('repetition_penalty and min_p go to the engine (defaults omitted); bad values are 400s naming the field', async () => {
  const { app, engine } = await makeApp(() => [A, B]);
  const res = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 2, repetition_penalty: 1.3, min_p: 0.05 });
  assert.equal(res.status, 200);
  assert.equal(engine.added[0]!.repetitionPenalty, 1.3);
  assert.equal(engine.added[0]!.minP, 0.05);
  const plain = await request(app).post(CHAT).send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, repetition_penalty: 1, min_p: 0 });
  assert.equal(plain.status, 200);
  assert.equal(engine.added[1]!.repetitionPenalty, undefined);
  assert.equal(engine.added[1]!.minP, undefined);
  for (const [field, value] of [['repetition_penalty', 0], ['repetition_penalty', -1], ['repetition_penalty', 1e-38], ['min_p', 1.5], ['min_p', -0.1]] as const) {
    const bad = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], [field]: value });
    assert.equal(bad.status, 400, `${field}: ${value}`);
    assert.equal(bad.body.error.param, field);
  }
});

test('include_stop_str_in_output keeps the matched stop string, streamed or not', async () => {
  const { app } = await makeApp(() => [A, B, C, D]);
  const cut = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 4, stop: ['BC'] });
  assert.equal(cut.body.choices[0].text, 'A');
  const kept = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 4, stop: ['BC'], include_stop_str_in_output: true });
  assert.equal(kept.body.choices[0].text, 'ABC');
  assert.equal(kept.body.choices[0].finish_reason, 'stop');
  const streamed = await request(app)
    .post(CHAT)
    .send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stop: 'BC', include_stop_str_in_output: true, stream: true });
  const text = streamed.text
    .split('\n\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.content ?? '')
    .join('');
  assert.equal(text, 'ABC');
});

/** The `data: {...}` chunks of an SSE body. */
const sseChunks = (text: string) =>
  text
    .split('\n\n')
    .filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)));

test('stream_options.continuous_usage_stats: every chunk carries its choice\'s usage so far (vLLM), chat and completions', async () => {
  const { app, engine } = await makeApp(() => [A, B, C]);
  const res = await request(app)
    .post(CHAT)
    .send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
  assert.equal(res.status, 200, res.text);
  const prompt = engine.added[0]!.promptIds.length;
  const chunks = sseChunks(res.text);
  const usageOf = (completion: number) => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
  assert.deepEqual(chunks[0].usage, usageOf(0), 'the opening chunk: no token yet');
  const deltas = chunks.slice(1, -1);
  assert.deepEqual(deltas.map((c) => c.choices[0].delta.content ?? ''), ['A', 'B', 'C', '']);
  assert.deepEqual(deltas.map((c) => c.usage), [usageOf(1), usageOf(2), usageOf(3), usageOf(3)]);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.deepEqual(chunks.at(-1).usage, usageOf(3), 'the final usage chunk as before');

  // Completions, n 2: each chunk has its own choice's count; the prompt once.
  const c = await request(app)
    .post(COMPLETIONS)
    .send({ model: 'tiny', prompt: [1, 2], n: 2, max_tokens: 2, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
  const cs = sseChunks(c.text);
  for (const k of cs.slice(0, -1)) {
    assert.equal(k.usage.prompt_tokens, 2);
    assert.ok(k.usage.completion_tokens >= 1 && k.usage.completion_tokens <= 2, JSON.stringify(k));
  }
  assert.deepEqual(cs.at(-1).usage, { prompt_tokens: 2, completion_tokens: 4, total_tokens: 6 });

  // Without include_usage it changes nothing (vLLM); without it, chunks keep usage null.
  for (const so of [{ continuous_usage_stats: true }, { include_usage: true }]) {
    const r = await request(app).post(COMPLETIONS).send({ model: 'tiny', prompt: [1], max_tokens: 2, stream: true, stream_options: so });
    const ks = sseChunks(r.text);
    const body = so.include_usage ? ks.slice(0, -1) : ks;
    for (const k of body) assert.ok(k.usage === null || k.usage === undefined, JSON.stringify(k));
  }
});

test('a request chat_template is a 400 naming it (vLLM without --trust-request-chat-template), chat and /tokenize', async () => {
  const { app, engine } = await makeApp(() => [A]);
  const template = '{% for m in messages %}{{ m.content }}{% endfor %}';
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], chat_template: template });
  assert.equal(res.status, 400, res.text);
  assert.equal(res.body.error.param, 'chat_template');
  assert.equal(res.body.error.type, 'invalid_request_error');
  assert.match(res.body.error.message, /does not accept a chat template in the request/);
  const tok = await request(app).post('/tokenize').send({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], chat_template: template });
  assert.equal(tok.status, 400, tok.text);
  assert.equal(tok.body.error.param, 'chat_template');
  assert.equal(engine.added.length, 0);
  const nul = await request(app).post(CHAT).send({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], chat_template: null, max_tokens: 1 });
  assert.equal(nul.status, 200, 'null is the default');
});
