import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { makeApp } from './fakes.ts';

let server: http.Server;
let client: OpenAI;

before(async () => {
  const emoji = [240, 159, 142, 173];
  const { app, tokenizer } = await makeApp(() => [...tokenizer.encode('But soft, what light ', false), ...emoji, 1023]);
  server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'x', maxRetries: 0 });
});

after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

test('openai SDK: models list and retrieve', async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  assert.deepEqual(ids, ['tiny', 'tiny:shout', 'tiny:whisper', 'tiny:romeo']);
  const shout = page.data[1] as unknown as Record<string, any>;
  assert.equal(shout.object, 'model');
  assert.equal(shout.owned_by, 'openlora');
  assert.equal(shout.parent, 'tiny');
  assert.equal(shout.root, '/adapters/shout');
  assert.equal(shout.openlora.rank, 16);
  assert.deepEqual(shout.openlora.target_modules, ['q_proj', 'v_proj']);
  assert.equal((await client.models.retrieve('tiny:whisper')).id, 'tiny:whisper');
  assert.equal((await client.models.retrieve('romeo')).id, 'tiny:romeo');
  await assert.rejects(client.models.retrieve('nope'), (e: unknown) => e instanceof OpenAI.NotFoundError);
});

test('openai SDK: non-stream and streamed chat to the end', async () => {
  const messages = [{ role: 'user' as const, content: 'ROMEO:' }];
  const r = await client.chat.completions.create({ model: 'tiny:shout', messages });
  assert.equal(r.choices[0]!.message.content, 'But soft, what light 🎭');
  assert.equal(r.choices[0]!.finish_reason, 'stop');

  const stream = await client.chat.completions.create({ model: 'tiny', messages, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finish = c.finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'But soft, what light 🎭');
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
});

test('openai SDK: streamed completion and errors as APIError', async () => {
  const stream = await client.completions.create({ model: 'tiny', prompt: 'ROMEO:', stream: true, stop: [', what'] });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  assert.equal(text, 'But soft');
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 0 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'n',
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny:ghost', messages: [{ role: 'user', content: 'x' }] }),
    (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
  );
});
