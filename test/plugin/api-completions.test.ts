import assert from 'node:assert/strict';
import { test } from 'node:test';
import request from 'supertest';
import { makeApp, parseSse } from './fakes.ts';

const URL_ = '/v1/completions';

test('non-stream completion: shape, BOS added to string prompts, usage', async () => {
  const { app, engine, tokenizer } = await makeApp(() => [...tokenizer.encode(' and the people', false), 1020]);
  const res = await request(app).post(URL_).send({ model: 'tiny', prompt: 'ROMEO:\nBut soft, what light', max_tokens: 16 });
  assert.equal(res.status, 200);
  const b = res.body;
  assert.match(b.id, /^cmpl-[0-9a-f]{24}$/);
  assert.equal(b.object, 'text_completion');
  assert.equal(b.model, 'tiny');
  assert.ok(b.system_fingerprint);
  assert.deepEqual(b.choices, [{ text: ' and the people', index: 0, logprobs: null, finish_reason: 'stop' }]);
  const prompt = [1019, 82, 923, 58, 10, 818, 431, 102, 116, 44, 521, 423, 413];
  assert.deepEqual(engine.added[0]!.promptIds, prompt);
  assert.equal(engine.added[0]!.maxTokens, 16);
  const completion = tokenizer.encode(' and the people', false).length + 1;
  assert.deepEqual(b.usage, { prompt_tokens: 13, completion_tokens: completion, total_tokens: 13 + completion });
});

test('token-id prompts pass through unchanged; several prompts x n number choices prompt-major', async () => {
  const { app, engine } = await makeApp((p) => [65 + (p.promptIds[0]! % 3), 1023]);
  const res = await request(app).post(URL_).send({ model: 'tiny', prompt: [[1], [2, 3]], n: 2, seed: 1 });
  assert.deepEqual(
    engine.added.map((p) => p.promptIds),
    [[1], [1], [2, 3], [2, 3]],
  );
  assert.deepEqual(
    res.body.choices.map((c: any) => [c.index, c.text]),
    [
      [0, 'B'],
      [1, 'B'],
      [2, 'C'],
      [3, 'C'],
    ],
  );
  assert.equal(new Set(engine.added.map((p) => p.seed)).size, 4);
  assert.deepEqual(res.body.usage, { prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 });

  const one = await request(app).post(URL_).send({ model: 'tiny', prompt: [82, 923], echo: true });
  assert.deepEqual(engine.added[4]!.promptIds, [82, 923]);
  assert.equal(one.body.choices[0].text, 'ROMEOB');
});

test('stream completion: text chunks, finish_reason on the last, usage chunk, [DONE]', async () => {
  const { app } = await makeApp(() => [66, 240, 159, 152, 128, 67, 68, 69]);
  const res = await request(app)
    .post(URL_)
    .send({ model: 'tiny', prompt: 'x', stream: true, max_tokens: 7, stop: ['D'], stream_options: { include_usage: true } });
  const events = parseSse(res.text);
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1) as any[];
  for (const c of chunks) {
    assert.equal(c.object, 'text_completion');
    assert.match(c.id, /^cmpl-/);
  }
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 7);
  const texts = chunks.slice(0, -1).map((c) => c.choices[0].text as string);
  assert.ok(texts.every((t) => !t.includes('\uFFFD')));
  assert.equal(texts.join(''), 'B😀C');
  assert.equal(chunks.at(-2).choices[0].finish_reason, 'stop');
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
});

test('completions logprobs: tokens, token_logprobs, top_logprobs dicts, text_offset', async () => {
  const { app, engine } = await makeApp(() => [66, 32, 67, 1023]);
  const res = await request(app).post(URL_).send({ model: 'tiny', prompt: 'x', logprobs: 2 });
  assert.equal(engine.added[0]!.logprobs, 2);
  const lp = res.body.choices[0].logprobs;
  assert.deepEqual(lp.tokens, ['B', ' ', 'C']);
  assert.deepEqual(lp.token_logprobs, [-0.25, -0.26, -0.27]);
  assert.deepEqual(lp.text_offset, [0, 1, 2]);
  assert.equal(lp.top_logprobs.length, 3);
  assert.deepEqual(Object.keys(lp.top_logprobs[0]).length, 2);
  assert.equal(lp.top_logprobs[0].B, -0.25);

  const s = await request(app).post(URL_).send({ model: 'tiny', prompt: 'x', logprobs: 0, stream: true });
  const chunks = parseSse(s.text).slice(0, -1) as any[];
  const offsets = chunks.flatMap((c) => c.choices[0].logprobs?.text_offset ?? []);
  assert.deepEqual(offsets, [0, 1, 2]);
});

test('both endpoints answer in OpenAI key order; completions stream chunks match JSON.stringify byte for byte', async () => {
  const { app, tokenizer } = await makeApp(() => [...tokenizer.encode(' "soft" \\ what', false), 1020]);
  const order = ['id', 'object', 'created', 'model', 'system_fingerprint', 'choices', 'usage'];
  const chat = await request(app).post('/v1/chat/completions').send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] });
  assert.deepEqual(Object.keys(chat.body), order);
  const whole = await request(app).post(URL_).send({ model: 'tiny', prompt: 'ROMEO:' });
  assert.deepEqual(Object.keys(whole.body), order);
  for (const includeUsage of [true, false]) {
    const res = await request(app)
      .post(URL_)
      .send({ model: 'tiny', prompt: 'ROMEO:', echo: true, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) });
    const lines = res.text.split('\n\n').filter((l) => l.startsWith('data: {'));
    assert.ok(lines.length >= 3);
    for (const line of lines) {
      const json = line.slice('data: '.length);
      const c = JSON.parse(json);
      const expected = {
        id: c.id,
        object: 'text_completion',
        created: c.created,
        model: c.model,
        system_fingerprint: c.system_fingerprint,
        choices: c.choices.map((ch: any) => ({ text: ch.text, index: ch.index, logprobs: ch.logprobs, finish_reason: ch.finish_reason })),
        ...(includeUsage ? { usage: c.usage } : {}),
      };
      assert.equal(json, JSON.stringify(expected));
    }
  }
});
