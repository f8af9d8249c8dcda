/**
 * Structured output and tool calling through the HTTP API, on the demo model (real engine):
 * response_format / guided_* on chat and completions, structured_outputs on the Responses API,
 * tools with tool_choice, 400s by field.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo, postJson } from '../e2e/server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

const PERSON = {
  type: 'object',
  properties: { name: { type: 'string', maxLength: 10 }, age: { type: 'integer', minimum: 0, maximum: 120 }, role: { enum: ['king', 'fool', 'queen'] } },
  required: ['name', 'age', 'role'],
  additionalProperties: false,
};

test('chat response_format json_schema: every seed parses and validates, adapters too', async () => {
  const validate = new Ajv2020().compile(PERSON);
  for (const model of ['tiny-shakespeare', 'tiny-shakespeare:shout']) {
    for (let seed = 1; seed <= 4; seed++) {
      const r = await postJson(srv.url, '/chat/completions', {
        model,
        messages: [{ role: 'user', content: 'Describe a character.' }],
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON, strict: true } },
        max_tokens: 80,
        seed,
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const text = r.body.choices[0].message.content as string;
      assert.equal(r.body.choices[0].finish_reason, 'stop', text);
      assert.ok(validate(JSON.parse(text)), `${model} seed ${seed}: ${text}`);
    }
  }
});

test('legacy completions serve response_format and guided_choice / guided_regex', async () => {
  const a = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt: 'ROMEO:', response_format: { type: 'json_object' }, max_tokens: 60, seed: 3 });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  if (a.body.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(a.body.choices[0].text), 'object');
  const b = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt: 'ROMEO:', guided_choice: ['yea', 'nay'], n: 3, seed: 1 });
  assert.equal(b.status, 200, JSON.stringify(b.body));
  for (const c of b.body.choices) assert.ok(['yea', 'nay'].includes(c.text), c.text);
  const c = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt: 'ROMEO:', structured_outputs: { regex: '[A-Z]{2,5} [0-9]{1,3}' }, seed: 2 });
  assert.equal(c.status, 200, JSON.stringify(c.body));
  assert.match(c.body.choices[0].text, /^[A-Z]{2,5} [0-9]{1,3}$/);
});

test("the Responses API enforces vLLM's structured_outputs as chat does, streamed or not; with text.format it is a 400 naming it", async () => {
  for (const stream of [false, true]) {
    for (let seed = 1; seed <= 3; seed++) {
      const r = await fetch(`${srv.url}/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny-shakespeare', input: 'ROMEO:', structured_outputs: { choice: ['yea', 'nay'] }, max_output_tokens: 20, seed, stream, store: false }),
      });
      assert.equal(r.status, 200);
      const raw = await r.text();
      const text = stream ? /"type":"response\.output_text\.done"[^]*?"text":("(?:[^"\\]|\\.)*")/.exec(raw)?.[1] : JSON.stringify(JSON.parse(raw).output[0].content[0].text);
      assert.ok(text !== undefined && ['yea', 'nay'].includes(JSON.parse(text)), `stream ${stream} seed ${seed}: ${raw.slice(0, 400)}`);
    }
  }
  const regex = await postJson(srv.url, '/responses', { model: 'tiny-shakespeare', input: 'ROMEO:', structured_outputs: { regex: '[A-Z]{2,5} [0-9]{1,3}' }, seed: 2, store: false });
  assert.equal(regex.status, 200, JSON.stringify(regex.body));
  assert.match(regex.body.output[0].content[0].text, /^[A-Z]{2,5} [0-9]{1,3}$/);
  const both = await postJson(srv.url, '/responses', { model: 'tiny-shakespeare', input: 'x', structured_outputs: { json_object: true }, text: { format: { type: 'json_object' } } });
  assert.equal(both.status, 400, JSON.stringify(both.body));
  assert.equal(both.body.error.param, 'structured_outputs');
  const old = await postJson(srv.url, '/responses', { model: 'tiny-shakespeare', input: 'x', guided_choice: ['a', 'b'] });
  assert.equal(old.status, 400, JSON.stringify(old.body));
  assert.equal(old.body.error.param, 'guided_choice');
  assert.match(old.body.error.message, /structured_outputs\.choice/);
});

test('max_tokens inside a constrained output ends with finish_reason "length"', async () => {
  const r = await postJson(srv.url, '/chat/completions', {
    model: 'tiny-shakespeare',
    messages: [{ role: 'user', content: 'hi' }],
    response_format: { type: 'json_schema', json_schema: { name: 'p', schema: PERSON } },
    max_tokens: 3,
  });
  assert.equal(r.status, 200);
  assert.equal(r.body.choices[0].finish_reason, 'length');
});

test('bad structured input is a 400 naming the field; the server keeps serving', async () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'strin' } } } }, 'response_format.json_schema.schema'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'number', maximum: 3 } } } }, 'response_format.json_schema.schema'],
    [{ guided_grammar: 'root ::= a' }, 'guided_grammar'],
    [{ guided_json: '{not json' }, 'guided_json'],
    [{ guided_regex: 'a', guided_choice: ['b'] }, 'guided_choice'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice.function.name'],
  ];
  for (const [extra, param] of cases) {
    const r = await postJson(srv.url, '/chat/completions', { model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, ...extra });
    assert.equal(r.status, 400, `${JSON.stringify(extra)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.param, param, JSON.stringify(r.body));
  }
  const ok = await postJson(srv.url, '/chat/completions', { model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
  assert.equal(ok.status, 200);
});

test('a grammar that can never be completed is a 400 naming its field, at the first token or mid-output; the server keeps serving', async () => {
  // Allows '{"a": ' and then nothing (the $ref recurses without a base case).
  const midway = { type: 'object', properties: { a: { $ref: '#/$defs/x' } }, required: ['a'], $defs: { x: { $ref: '#/$defs/x' } } };
  const cases: Array<[string, string, Record<string, unknown>, string]> = [
    ['json_schema dead after some tokens', '/chat/completions', { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'a', schema: midway } } }, 'response_format'],
    ['guided_json dead after some tokens', '/chat/completions', { messages: [{ role: 'user', content: 'x' }], guided_json: midway }, 'guided_json'],
    ['EBNF dead after "a"', '/completions', { prompt: 'x', guided_grammar: 'root ::= "a" x\nx ::= x "b"' }, 'guided_grammar'],
    ['json_schema dead at the first token', '/chat/completions', { messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 'b', schema: { $ref: '#/$defs/a', $defs: { a: { $ref: '#/$defs/a' } } } } } }, 'response_format'],
  ];
  for (const [name, path, body, param] of cases) {
    const r = await postJson(srv.url, path, { model: 'tiny-shakespeare', max_tokens: 20, ...body });
    assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
    assert.ok(String(r.body.error.param).startsWith(param), `${name}: param ${r.body.error.param}`);
    assert.match(r.body.error.message, /allows no token after \d+ generated token/, name);
    // Streaming: the error arrives as an SSE error event, then [DONE]; the server stays up.
    const s = await fetch(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny-shakespeare', max_tokens: 20, stream: true, ...body }) });
    const text = await s.text();
    assert.ok(s.status === 400 || /allows no token/.test(text), `${name} streamed: ${s.status} ${text.slice(0, 300)}`);
  }
  const ok = await postJson(srv.url, '/chat/completions', { model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 4 });
  assert.equal(ok.status, 200);
});
