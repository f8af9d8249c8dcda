/**
 * Acceptance: bad input on the real gateway gets a 4xx OpenAI error body naming the problem,
 * and the server keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

const chat = (extra: object) => ({ model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 4, ...extra });
const longPrompt = 'ROMEO: But soft, what light through yonder window breaks? '.repeat(60);

const cases: Array<[string, string, unknown, number, RegExp, string | null]> = [
  ['malformed JSON', '/chat/completions', '{"model": "tiny-shakespeare", "messages": [', 400, /JSON/, null],
  ['messages of the wrong type', '/chat/completions', chat({ messages: 'hello' }), 400, /messages/, 'messages'],
  ['temperature of the wrong type', '/chat/completions', chat({ temperature: 'hot' }), 400, /temperature/, 'temperature'],
  ['unknown model', '/chat/completions', chat({ model: 'gpt-9' }), 404, /gpt-9/, 'model'],
  ['unknown adapter', '/chat/completions', chat({ model: 'tiny-shakespeare:nope' }), 404, /nope/, 'model'],
  ['prompt longer than the context', '/completions', { model: 'tiny-shakespeare', prompt: longPrompt, max_tokens: 4 }, 400, /context|tokens/, 'prompt'],
  ['n = 0', '/chat/completions', chat({ n: 0 }), 400, /n/, 'n'],
  ['negative max_tokens', '/chat/completions', chat({ max_tokens: -5 }), 400, /max_tokens/, 'max_tokens'],
  ['token id out of range', '/completions', { model: 'tiny-shakespeare', prompt: [1, 2, 99999], max_tokens: 2 }, 400, /prompt/, 'prompt'],
];

for (const [name, path, body, status, message, param] of cases) {
  test(`${name} → ${status} with an OpenAI error body`, async () => {
    const r = await postJson(srv.url, path, body);
    assert.equal(r.status, status, JSON.stringify(r.body));
    assert.equal(typeof r.body.error?.message, 'string');
    assert.match(r.body.error.message, message);
    assert.equal(typeof r.body.error.type, 'string');
    assert.ok('code' in r.body.error && 'param' in r.body.error);
    if (param) assert.equal(r.body.error.param, param);
  });
}

test('after all of that the server still serves', async () => {
  const r = await postJson(srv.url, '/chat/completions', chat({ model: 'tiny-shakespeare:romeo', max_tokens: 8 }));
  assert.equal(r.status, 200);
  assert.equal(r.body.usage.completion_tokens > 0, true);
});
