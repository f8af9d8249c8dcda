/**
 * Acceptance: bad input on the real gateway gets a 4xx OpenAI error body naming the problem,
 * and the server keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultConfigInput } from '../../config/load.ts';
import type { RunningServer } from '../../examples/server.ts';
import { loraConfig, tmpAdapters } from '../adapters/helpers.ts';
import { postJson, startDemo } from './server.ts';

let srv: RunningServer;
let refusedDir: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  // Adapters the start-up scan refuses: each must answer 400 with its reason, not 404.
  refusedDir = await tmpAdapters();
  await refusedDir.make('dora', loraConfig({ use_dora: true }));
  await refusedDir.make('saves-modules', loraConfig({ modules_to_save: ['lm_head'] }));
  await writeFile(join(await refusedDir.make('bad-json'), 'adapter_config.json'), '{"r": 8,');
  await writeFile(join(await refusedDir.make('pickle-only', loraConfig(), null), 'adapter_model.bin'), 'PK');
  await writeFile(join(await refusedDir.make('adds-tokens'), 'added_tokens.json'), '{"<new>": 1024}');
  const models = defaultConfigInput().models!;
  models[0]!.adapterDirs = [...(models[0]!.adapterDirs ?? []), refusedDir.root];
  srv = await startDemo({ models, engine: { threads: 2, maxLoras: 3 } });
});
after(async () => {
  await srv?.close();
  await refusedDir?.cleanup();
});

const chat = (extra: object) => ({ model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 4, ...extra });
const longPrompt = 'ROMEO: But soft, what light through yonder window breaks? '.repeat(60);
/** JSON nested `n` levels deep: every recursive walk over it would overflow the stack (a 500). */
const deep = (n: number): Record<string, unknown> => {
  let v: Record<string, unknown> = { type: 'object' };
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};
/** An array nested `n` levels deep ([[[...]]]). */
const deepArray = (n: number): unknown => JSON.parse('['.repeat(n) + ']'.repeat(n));
const tool = (parameters: unknown) => [{ type: 'function', function: { name: 'f', parameters } }];

const cases: Array<[string, string, unknown, number, RegExp, string | null]> = [
  ['malformed JSON', '/chat/completions', '{"model": "tiny-shakespeare", "messages": [', 400, /JSON/, null],
  ['messages of the wrong type', '/chat/completions', chat({ messages: 'hello' }), 400, /messages/, 'messages'],
  ['temperature of the wrong type', '/chat/completions', chat({ temperature: 'hot' }), 400, /temperature/, 'temperature'],
  ['unknown model', '/chat/completions', chat({ model: 'gpt-9' }), 404, /gpt-9/, 'model'],
  ['unknown adapter', '/chat/completions', chat({ model: 'tiny-shakespeare:nope' }), 404, /nope/, 'model'],
  ['prompt longer than the context', '/completions', { model: 'tiny-shakespeare', prompt: longPrompt, max_tokens: 4 }, 400, /context|tokens/, 'prompt'],
  ['n = 0', '/chat/completions', chat({ n: 0 }), 400, /n/, 'n'],
  ['negative max_tokens', '/chat/completions', chat({ max_tokens: -5 }), 400, /max_tokens/, 'max_tokens'],
  ['adapter refused at start-up: DoRA', '/chat/completions', chat({ model: 'tiny-shakespeare:dora' }), 400, /dora.*DoRA/, 'model'],
  ['adapter refused at start-up: modules_to_save', '/chat/completions', chat({ model: 'saves-modules' }), 400, /modules_to_save/, 'model'],
  ['adapter refused at start-up: bad JSON', '/completions', { model: 'tiny-shakespeare:bad-json', prompt: 'x', max_tokens: 1 }, 400, /not valid JSON/, 'model'],
  ['adapter refused at start-up: pickle only', '/chat/completions', chat({ model: 'tiny-shakespeare', adapters: [{ name: 'pickle-only', weight: 1 }] }), 400, /pickle/, 'model'],
  ['adapter refused at start-up: added vocabulary', '/chat/completions', chat({ model: 'tiny-shakespeare:adds-tokens@0.5+romeo@0.5' }), 400, /beyond the base vocabulary/, 'model'],
  ['more distinct adapters than slots', '/chat/completions', chat({ model: 'tiny-shakespeare:shout@0.25+whisper@0.25+romeo@0.25+rs@0.25' }), 400, /4 distinct adapters .* 3 adapter slots/, 'model'],
  ['a composition weight out of range', '/chat/completions', chat({ model: 'tiny-shakespeare', adapters: [{ name: 'shout', weight: 0.5 }, { name: 'romeo', weight: 1e38 }] }), 400, /out of range; weights must be within ±1000/, 'adapters[1].weight'],
  ['token id out of range', '/completions', { model: 'tiny-shakespeare', prompt: [1, 2, 99999], max_tokens: 2 }, 400, /prompt/, 'prompt'],
  ['a schema nested 300 levels', '/chat/completions', chat({ response_format: { type: 'json_schema', json_schema: { name: 'd', schema: deep(300) } } }), 400, /levels/, 'response_format.json_schema.schema'],
  ['a guided_json text nested 3000 levels', '/completions', { model: 'tiny-shakespeare', prompt: 'x', max_tokens: 2, guided_json: JSON.stringify(deep(3000)) }, 400, /levels/, 'guided_json'],
  ['tool parameters nested 300 levels', '/chat/completions', chat({ tools: tool(deep(300)) }), 400, /levels/, 'tools[0].function.parameters'],
  // The 400 quotes the received value: a deep one is named by its type (JSON.stringify of it overflowed the stack: a 500).
  ['tool_choice nested 400 levels', '/chat/completions', chat({ tool_choice: deepArray(400) }), 400, /tool_choice.*nested more than 8 levels/, 'tool_choice'],
  ['a Responses truncation nested 400 levels', '/responses', { model: 'tiny-shakespeare', input: 'x', truncation: deepArray(400) }, 400, /nested more than 8 levels/, 'truncation'],
  // Refused before JSON.parse (which takes seconds over 16 MB of brackets, blocking every stream).
  ['a body nested 3000 levels', '/chat/completions', chat({ tools: tool(deep(3000)) }), 400, /more than 512 levels deep/, null],
  ['a body of 300000 empty arrays', '/chat/completions', chat({ x: Array.from({ length: 300_000 }, () => []) }), 400, /more than 200000 arrays or objects/, null],
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

test('a body that is not sent as JSON → 400 naming the Content-Type header', async () => {
  for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
    const r = await fetch(`${srv.url}/chat/completions`, { method: 'POST', headers: { 'content-type': type }, body: JSON.stringify(chat({})) });
    const body = await r.json();
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(body.error.message, new RegExp(`Content-Type .*application/json.*'${type}'`));
    assert.equal(body.error.type, 'invalid_request_error');
  }
});

test('a path outside /v1 → a JSON 404 naming the URL (not an HTML page)', async () => {
  const r = await fetch(srv.url.replace(/\/v1$/, '/health-check?x=1'));
  const body = await r.json();
  assert.equal(r.status, 404);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(body.error.code, 'unknown_url');
  assert.match(body.error.message, /GET \/health-check\?x=1/);
});

test('after all of that the server still serves', async () => {
  const r = await postJson(srv.url, '/chat/completions', chat({ model: 'tiny-shakespeare:romeo', max_tokens: 8 }));
  assert.equal(r.status, 200);
  assert.equal(r.body.usage.completion_tokens > 0, true);
});

test('a known route asked with another method → 405 with Allow, an unknown route → 404', async () => {
  for (const [method, path, allow] of [['GET', '/chat/completions', 'POST'], ['PUT', '/completions', 'POST'], ['GET', '/responses', 'POST'], ['POST', '/models', 'GET']] as const) {
    const r = await fetch(srv.url + path, { method });
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.get('allow'), allow);
    const body = (await r.json()) as any;
    assert.equal(body.error.code, 'method_not_allowed');
    assert.match(body.error.message, new RegExp(`${method} is not allowed`));
  }
  assert.equal((await fetch(srv.url + '/nowhere')).status, 404);
  assert.notEqual((await fetch(srv.url + '/chat/completions', { method: 'OPTIONS' })).status, 405, "CORS preflight is left to the application's middleware");
});
