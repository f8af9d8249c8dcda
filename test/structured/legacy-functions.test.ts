/**
 * OpenAI's legacy function calling (`functions`, `function_call`, `role: "function"`) with the
 * openai SDK against a random-weight Qwen3 (Hermes tool format, real tokenizer; random-model.ts startToolModels): a named
 * `function_call` forces a valid call, answered as `message.function_call` with
 * `finish_reason: "function_call"`, whole and streamed (`delta.function_call` pieces); a history
 * with an assistant `function_call` and its `function` result renders as the tool turn it is; the
 * 400s name the field.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import OpenAI from 'openai';
import { z } from 'zod';
import { postJson } from '../e2e/server.ts';
import { useToolModels } from './random-model.ts';

const models = useToolModels();

const Weather = z.object({ city: z.string().max(8), unit: z.enum(['c', 'f']) });
const functions = [{ name: 'get_weather', description: 'Weather of a city', parameters: z.toJSONSchema(Weather) as Record<string, unknown> }];
const model = 'rand-qwen3';
/** An object nested `n` levels deep: past the schemas' depth bound (json-depth.ts). */
const deep = (n: number): Record<string, unknown> => {
  let v: Record<string, unknown> = { type: 'object' };
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};

test('a named function_call: message.function_call with valid arguments, finish_reason function_call, whole and streamed', async () => {
  const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
  const r = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Weather in Oslo?' }], functions, function_call: { name: 'get_weather' }, max_tokens: 120 });
  const c = r.choices[0]!;
  assert.equal(c.finish_reason, 'function_call', JSON.stringify(c));
  assert.equal(c.message.tool_calls, undefined);
  assert.equal(c.message.function_call?.name, 'get_weather');
  Weather.parse(JSON.parse(c.message.function_call!.arguments));

  const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Weather in Rome?' }], functions, function_call: { name: 'get_weather' }, max_tokens: 120, stream: true });
  let name = '';
  let args = '';
  let finish: string | null = null;
  for await (const chunk of stream) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    assert.equal(ch.delta.tool_calls, undefined);
    if (ch.delta.function_call?.name) name += ch.delta.function_call.name;
    args += ch.delta.function_call?.arguments ?? '';
    finish = ch.finish_reason ?? finish;
  }
  assert.equal(name, 'get_weather');
  assert.equal(finish, 'function_call');
  Weather.parse(JSON.parse(args));

  // the conversation goes on with the call and its result
  const next = await client.chat.completions.create({
    model,
    messages: [
      { role: 'user', content: 'Weather in Oslo?' },
      { role: 'assistant', content: null, function_call: c.message.function_call! },
      { role: 'function', name: 'get_weather', content: '{"temp": 21}' },
    ],
    functions,
    function_call: 'none',
    max_tokens: 5,
  });
  assert.ok(['stop', 'length'].includes(next.choices[0]!.finish_reason));
  assert.equal(next.choices[0]!.message.function_call, undefined);
});

test('legacy 400s name the field', async () => {
  const cases: Array<[object, string]> = [
    [{ function_call: 'auto' }, 'function_call'],
    [{ functions, tools: [{ type: 'function', function: functions[0] }] }, 'functions'],
    [{ functions, function_call: { name: 'nope' } }, 'function_call.name'],
    [{ functions, messages: [{ role: 'user', content: 'x' }, { role: 'function', content: '1' }] }, 'messages[1].name'],
    [{ functions: [{ name: 'deep', parameters: deep(300) }] }, 'functions[0].parameters'],
  ];
  for (const [extra, param] of cases) {
    const r = await postJson(models.srv.url, '/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], max_tokens: 2, ...extra });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.param, param, JSON.stringify(r.body));
  }
});
