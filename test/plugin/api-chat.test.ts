import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import request from 'supertest';
import { makeApp, parseSse } from './fakes.ts';

const CHAT = '/v1/chat/completions';
const messages = [
  { role: 'system', content: 'You are a player in a Shakespeare play.' },
  { role: 'user', content: 'ROMEO:' },
];
type Chunk = { id: string; object: string; created: number; model: string; system_fingerprint: string; choices: any[]; usage?: any };

test('non-stream chat: OpenAI shape, defaults in SequenceParams, usage', async () => {
  const { app, engine, tokenizer } = await makeApp(() => [...tokenizer0('But soft, what light'), 1023]);
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages });
  assert.equal(res.status, 200);
  const b = res.body;
  assert.match(b.id, /^chatcmpl-[0-9a-f]{24}$/);
  assert.equal(b.object, 'chat.completion');
  assert.equal(typeof b.created, 'number');
  assert.equal(b.model, 'tiny');
  assert.match(b.system_fingerprint, /^fp_/);
  assert.deepEqual(b.choices, [
    { index: 0, message: { role: 'assistant', content: 'But soft, what light', refusal: null }, logprobs: null, finish_reason: 'stop' },
  ]);
  const promptIds = tokenizer.encodeChat(messages as any);
  const n = tokenizer0('But soft, what light').length + 1; // the text plus <|eot_id|>
  assert.deepEqual(b.usage, { prompt_tokens: promptIds.length, completion_tokens: n, total_tokens: promptIds.length + n });

  const p = engine.added[0]!;
  assert.deepEqual(p.promptIds, promptIds);
  assert.deepEqual(p.adapters, []);
  assert.equal(p.maxTokens, 512 - promptIds.length);
  assert.equal(p.temperature, 1);
  assert.equal(p.topP, 1);
  assert.equal(p.topK, -1);
  assert.deepEqual(p.stopTokenIds, [1020, 1023]);
  assert.equal(p.logprobs, -1);
  assert.ok(Number.isInteger(p.seed) && p.seed >= 0 && p.seed < 2 ** 32);
});

test('top_p below float32 range and top_k past int32 reach the engine as their float32 / int32 equivalents', async () => {
  const { app, engine } = await makeApp(() => [65]);
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages, top_p: 1e-300, top_k: 2 ** 31, max_tokens: 1 });
  assert.equal(res.status, 200);
  const p = engine.added[0]!;
  assert.equal(p.topP, 2 ** -126);
  assert.equal(p.topK, 2 ** 31 - 1);
});

test("vLLM's stop_token_ids join the model's stop tokens (and stay with ignore_eos); out of range is a 400", async () => {
  const { app, engine } = await makeApp(() => [65]);
  assert.equal((await request(app).post(CHAT).send({ model: 'tiny', messages, stop_token_ids: [5, 1023], max_tokens: 1 })).status, 200);
  assert.deepEqual(engine.added[0]!.stopTokenIds, [1020, 1023, 5]);
  assert.equal((await request(app).post(CHAT).send({ model: 'tiny', messages, stop_token_ids: [5], ignore_eos: true, max_tokens: 1 })).status, 200);
  assert.deepEqual(engine.added[1]!.stopTokenIds, [5]);
  const bad = await request(app).post(CHAT).send({ model: 'tiny', messages, stop_token_ids: [999999] });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.param, 'stop_token_ids');
});

test('sampling fields map to the engine; adapter lease pinned and released', async () => {
  const { app, engine, adapters } = await makeApp(() => [65, 66, 67, 68, 69, 70]);
  const res = await request(app)
    .post(CHAT)
    .send({
      model: 'tiny:whisper',
      messages,
      temperature: 0,
      top_p: 0.5,
      top_k: 7,
      seed: 42,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
      logit_bias: { '65': -100, '1023': 5 },
      max_tokens: 3,
    });
  assert.equal(res.status, 200);
  assert.equal(res.body.model, 'tiny:whisper');
  assert.equal(res.body.choices[0].message.content, 'ABC');
  assert.equal(res.body.choices[0].finish_reason, 'length');
  const p = engine.added[0]!;
  assert.deepEqual(p.adapters, [{ slot: 1, weight: 1 }]);
  assert.equal(p.temperature, 0);
  assert.equal(p.topP, 0.5);
  assert.equal(p.topK, 7);
  assert.equal(p.seed, 42);
  assert.equal(p.presencePenalty, 0.5);
  assert.equal(p.frequencyPenalty, -0.5);
  assert.deepEqual(p.logitBias, [
    [65, -100],
    [1023, 5],
  ]);
  assert.equal(p.maxTokens, 3);
  await adapters.allReleased();
  assert.equal(adapters.acquired, 1);
  assert.equal(adapters.released, 1);

  // Alias and max_completion_tokens (which wins over max_tokens); a max beyond the context is a
  // 400 naming messages (vLLM), and no max means what is left of the context.
  await request(app).post(CHAT).send({ model: 'shout', messages, max_tokens: 9, max_completion_tokens: 2 });
  assert.equal(engine.added[1]!.maxTokens, 2);
  assert.deepEqual(engine.added[1]!.adapters, [{ slot: 0, weight: 1 }]);
  const over = await request(app).post(CHAT).send({ model: 'tiny', messages, max_completion_tokens: 100000 });
  assert.equal(over.status, 400);
  assert.equal(over.body.error.param, 'messages');
  assert.match(over.body.error.message, /^This model's maximum context length is 512 tokens\. However, you requested 1000\d\d tokens \(\d+ in the messages, 100000 in the completion\)/);
  await request(app).post(CHAT).send({ model: 'tiny', messages });
  assert.equal(engine.added[2]!.maxTokens, 512 - engine.added[2]!.promptIds.length);
  await adapters.allReleased();
});

test('stream chat: role chunk, content deltas, finish chunk, usage chunk, [DONE]', async () => {
  const { app } = await makeApp(() => [...tokenizer0('But soft'), 1023]);
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages, stream: true, stream_options: { include_usage: true } });
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type']!, /^text\/event-stream/);
  assert.equal(res.headers['cache-control'], 'no-cache');
  assert.ok(res.text.endsWith('data: [DONE]\n\n'));
  const events = parseSse(res.text);
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1) as Chunk[];
  const ids = new Set(chunks.map((c) => c.id));
  assert.equal(ids.size, 1);
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.model, 'tiny');
    assert.ok(c.system_fingerprint);
  }
  assert.deepEqual(chunks[0]!.choices, [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
  const usageChunk = chunks.at(-1)!;
  assert.deepEqual(usageChunk.choices, []);
  assert.equal(usageChunk.usage.completion_tokens, tokenizer0('But soft').length + 1);
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
  const finish = chunks.at(-2)!;
  assert.deepEqual(finish.choices, [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]);
  const text = chunks
    .slice(1, -2)
    .map((c) => c.choices[0].delta.content)
    .join('');
  assert.equal(text, 'But soft');

  const plain = await request(app).post(CHAT).send({ model: 'tiny', messages, stream: true });
  for (const c of parseSse(plain.text).slice(0, -1) as Chunk[]) assert.ok(!('usage' in c));
});

test('stop strings across token boundaries are cut, the sequence cancelled, usage counted to the match', async () => {
  const ids = tokenizer0('But soft, what light');
  assert.deepEqual(ids.slice(2, 6), [102, 116, 44, 521]); // 'f' 't' ',' ' what'
  const { app, engine } = await makeApp(() => [...ids, 1023]);
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages, stop: ['t, wh'] });
  assert.equal(res.body.choices[0].message.content, 'But sof');
  assert.equal(res.body.choices[0].finish_reason, 'stop');
  assert.equal(res.body.usage.completion_tokens, 6);
  await engine.waitCancel();

  const s = await request(app).post(CHAT).send({ model: 'tiny', messages, stop: 'soft, what', stream: true });
  const chunks = parseSse(s.text).slice(0, -1) as Chunk[];
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(text, 'But ');
  assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'stop');
  // A stop string that never completes is released at the end.
  const never = await request(app).post(CHAT).send({ model: 'tiny', messages, stop: ['light!'] });
  assert.equal(never.body.choices[0].message.content, 'But soft, what light');
});

test('multi-byte characters split over byte tokens are never split in the stream', async () => {
  const emoji = [104, 105, 32, 240, 159, 152, 128, 32, 195, 169, 240, 159, 142, 173];
  const { app } = await makeApp(() => [...emoji, 1023]);
  const s = await request(app).post(CHAT).send({ model: 'tiny', messages, stream: true });
  const deltas = (parseSse(s.text).slice(1, -2) as Chunk[]).map((c) => c.choices[0].delta.content as string);
  for (const d of deltas) {
    assert.ok(!d.includes('\uFFFD'), JSON.stringify(d));
    assert.ok(d.length > 0);
    assert.equal(Buffer.from(d, 'utf8').toString('utf8'), d); // no lone surrogates
  }
  assert.equal(deltas.join(''), 'hi 😀 é🎭');
  assert.ok(deltas.includes('😀'));
});

test('n=2: two choices with distinct derived seeds; prompt counted once, completions summed', async () => {
  const { app, engine } = await makeApp((_p, i) => (i % 2 === 0 ? [65, 66, 1023] : [67, 1023]));
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages, n: 2, seed: 7 });
  assert.equal(res.body.choices.length, 2);
  assert.deepEqual(
    res.body.choices.map((c: any) => [c.index, c.message.content, c.finish_reason]),
    [
      [0, 'AB', 'stop'],
      [1, 'C', 'stop'],
    ],
  );
  assert.equal(engine.added.length, 2);
  assert.equal(engine.added[0]!.seed, 7);
  assert.notEqual(engine.added[1]!.seed, 7);
  const promptLen = engine.added[0]!.promptIds.length;
  assert.deepEqual(res.body.usage, { prompt_tokens: promptLen, completion_tokens: 5, total_tokens: promptLen + 5 });

  const s = await request(app).post(CHAT).send({ model: 'tiny', messages, n: 2, stream: true });
  const chunks = parseSse(s.text).slice(0, -1) as Chunk[];
  const byIndex = [0, 1].map((i) =>
    chunks
      .flatMap((c) => c.choices)
      .filter((c) => c.index === i)
      .map((c) => c.delta.content ?? '')
      .join(''),
  );
  assert.deepEqual(byIndex, ['AB', 'C']);
  assert.equal(chunks.flatMap((c) => c.choices).filter((c) => c.finish_reason === 'stop').length, 2);
  assert.equal(chunks.flatMap((c) => c.choices).filter((c) => c.delta.role === 'assistant').length, 2);
});

test('chat logprobs: content entries with token, logprob, bytes and top_logprobs', async () => {
  const { app, engine } = await makeApp(() => [66, 240, 159, 152, 128, 1023]);
  const res = await request(app).post(CHAT).send({ model: 'tiny', messages, logprobs: true, top_logprobs: 2 });
  assert.equal(engine.added[0]!.logprobs, 2);
  const lp = res.body.choices[0].logprobs;
  assert.equal(lp.content.length, 5);
  assert.deepEqual(Object.keys(lp.content[0]).sort(), ['bytes', 'logprob', 'token', 'top_logprobs']);
  assert.equal(lp.content[0].token, 'B');
  assert.deepEqual(lp.content[0].bytes, [66]);
  assert.equal(lp.content[0].logprob, -0.25);
  assert.equal(lp.content[0].top_logprobs.length, 2);
  assert.deepEqual(Object.keys(lp.content[0].top_logprobs[0]).sort(), ['bytes', 'logprob', 'token']);
  assert.equal(lp.content[1].token, '\\xf0');
  assert.deepEqual(lp.content[1].bytes, [240]);
  assert.deepEqual(lp.content.slice(1).flatMap((c: any) => c.bytes), [240, 159, 152, 128]);

  const zero = await request(app).post(CHAT).send({ model: 'tiny', messages, logprobs: true });
  assert.equal(engine.added[1]!.logprobs, 0);
  assert.deepEqual(zero.body.choices[0].logprobs.content[0].top_logprobs, []);

  const s = await request(app).post(CHAT).send({ model: 'tiny', messages, logprobs: true, top_logprobs: 1, stream: true });
  const entries = (parseSse(s.text).slice(0, -1) as Chunk[]).flatMap((c) => c.choices[0].logprobs?.content ?? []);
  assert.equal(entries.length, 5);
});

test('client disconnect cancels the sequence and releases the adapter lease', async () => {
  const { app, engine, adapters } = await makeApp(() => [65, 66, 67], { repeat: true });
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    const body = JSON.stringify({ model: 'tiny:shout', messages, stream: true });
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: CHAT, method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
      req.end(body);
    });
    await engine.waitCancel();
    await adapters.allReleased();
    assert.equal(adapters.released, 1);
    assert.equal(engine.cancelled.length, 1);

    // Non-stream request whose client leaves while the engine is paused.
    engine.paused = true;
    const gone = new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: CHAT, method: 'POST', headers: { 'content-type': 'application/json' } });
      req.on('error', () => resolve());
      req.end(JSON.stringify({ model: 'tiny:romeo', messages }));
      const poll = () => (engine.added.length === 2 ? (req.destroy(), resolve()) : setImmediate(poll));
      poll();
    });
    await gone;
    while (engine.cancelled.length < 2) await new Promise((r) => setImmediate(r));
    engine.resume();
    await adapters.allReleased();
    assert.equal(adapters.released, 2);
    assert.equal(engine.liveCount, 0);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test('close() aborts in-flight requests with 503 and refuses new ones', async () => {
  const { app, router, engine, adapters } = await makeApp(() => [65], { repeat: true });
  engine.paused = true;
  const pending = request(app).post(CHAT).send({ model: 'tiny:shout', messages }).then((r) => r);
  while (engine.added.length === 0) await new Promise((r) => setImmediate(r));
  const closing = router.close();
  engine.resume();
  await closing;
  const res = await pending;
  assert.equal(res.status, 503);
  assert.equal(adapters.released, 1);
  const after = await request(app).post(CHAT).send({ model: 'tiny', messages });
  assert.equal(after.status, 503);
});

let tokCache: import('../../plugin/tokenizer.ts').ModelTokenizer | undefined;
/** Encode without special tokens with the demo tokenizer (loaded by makeApp first). */
function tokenizer0(text: string): number[] {
  return tokCache!.encode(text, false);
}
import { demoTokenizer } from './fakes.ts';
tokCache = await demoTokenizer();

test('stream chunks are byte-identical to JSON.stringify of the documented shape (hand-serialized hot path)', async () => {
  const { app } = await makeApp(() => [...tokenizer0('But "soft" \\ what'), 1023]);
  for (const includeUsage of [true, false]) {
    const res = await request(app)
      .post(CHAT)
      .send({ model: 'tiny', messages, stream: true, ...(includeUsage ? { stream_options: { include_usage: true } } : {}) });
    const lines = res.text.split('\n\n').filter((l) => l.startsWith('data: {'));
    assert.ok(lines.length >= 4);
    for (const line of lines) {
      const json = line.slice('data: '.length);
      const c = JSON.parse(json) as Chunk;
      // Rebuild with the key order the route documents; must match byte for byte.
      const expected = {
        id: c.id,
        object: 'chat.completion.chunk',
        created: c.created,
        model: c.model,
        system_fingerprint: c.system_fingerprint,
        choices: c.choices.map((ch) => ({ index: ch.index, delta: ch.delta, logprobs: ch.logprobs, finish_reason: ch.finish_reason })),
        ...(includeUsage ? { usage: c.usage } : {}),
      };
      assert.equal(json, JSON.stringify(expected));
    }
  }
});

test('parallel_tool_calls: false keeps only the first call under tool_choice auto, whole and streamed, chat and Responses; absent or true keeps both', async () => {
  const out = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": 1}}\n</tool_call>';
  const { app } = await makeApp(() => [...tokenizer0(out), 1023], { toolCallFormat: 'hermes' });
  const tools = ['a', 'b'].map((name) => ({ type: 'function', function: { name, parameters: { type: 'object' } } }));
  const ask = { model: 'tiny', messages: [{ role: 'user', content: 'go' }], tools, tool_choice: 'auto' };
  for (const [parallel, names] of [[false, ['a']], [undefined, ['a', 'b']], [true, ['a', 'b']]] as const) {
    const body = { ...ask, ...(parallel === undefined ? {} : { parallel_tool_calls: parallel }) };
    const whole = await request(app).post(CHAT).send(body);
    assert.equal(whole.status, 200, whole.text);
    assert.deepEqual(whole.body.choices[0].message.tool_calls.map((c: any) => c.function.name), names, `parallel ${parallel}`);
    assert.equal(whole.body.choices[0].finish_reason, 'tool_calls');
    const streamed = await request(app).post(CHAT).send({ ...body, stream: true });
    const calls = (parseSse(streamed.text).slice(0, -1) as Chunk[]).flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
    assert.deepEqual(calls.map((c: any) => [c.index, c.function.name]), names.map((n, i) => [i, n]), `streamed, parallel ${parallel}`);
    const resp = await request(app)
      .post('/v1/responses')
      .send({ model: 'tiny', input: 'go', tools: ['a', 'b'].map((name) => ({ type: 'function', name, parameters: { type: 'object' } })), ...(parallel === undefined ? {} : { parallel_tool_calls: parallel }) });
    assert.equal(resp.status, 200, resp.text);
    assert.deepEqual(resp.body.output.filter((o: any) => o.type === 'function_call').map((o: any) => o.name), names, `responses, parallel ${parallel}`);
  }
});
