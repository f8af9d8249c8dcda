/**
 * Real clients on the Responses API, against random-weight models with real tokenizers and
 * tool-calling templates (Qwen3's Hermes format, Llama 3.1-style JSON): the openai SDK's
 * `responses.parse` with `zodTextFormat`, forced function calls whole and streamed, a tool loop
 * continued by `previous_response_id` and by replaying the items, and LangChain's ChatOpenAI with
 * `useResponsesApi` (invoke, withStructuredOutput, bindTools invoke and stream).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatOpenAI } from '@langchain/openai';
import OpenAI from 'openai';
import { zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { useToolModels } from './random-model.ts';

const models = useToolModels();

const Person = z.object({ name: z.string().max(10), age: z.number().int().min(0).max(120), role: z.enum(['king', 'fool']) });
const Weather = z.object({ city: z.string().max(8), unit: z.enum(['c', 'f']) });
const weatherTool = { type: 'function' as const, name: 'get_weather', description: 'Weather of a city', parameters: z.toJSONSchema(Weather) as Record<string, unknown>, strict: true };

for (const model of ['rand-qwen3', 'rand-llama3']) {
  test(`${model}: openai SDK responses.parse with zodTextFormat gives a parsed object`, async () => {
    const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
    const r = await client.responses.parse({ model, input: 'Describe a character.', text: { format: zodTextFormat(Person, 'person') }, max_output_tokens: 120 });
    assert.equal(r.status, 'completed', JSON.stringify(r.output));
    assert.deepEqual(Person.parse(r.output_parsed), r.output_parsed);
  });

  test(`${model}: a forced function call, answered by previous_response_id and by replayed items`, async () => {
    const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
    const first = await client.responses.create({
      model,
      input: 'Weather in Oslo?',
      tools: [weatherTool],
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 120,
    });
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call && call.type === 'function_call' && call.name === 'get_weather', JSON.stringify(first.output));
    assert.match(call.call_id, /^call_/);
    Weather.parse(JSON.parse(call.arguments));
    const answer = { type: 'function_call_output' as const, call_id: call.call_id, output: '{"temp": 21}' };
    const chained = await client.responses.create({ model, previous_response_id: first.id, input: [answer], tools: [weatherTool], max_output_tokens: 8 });
    assert.ok(['completed', 'incomplete'].includes(chained.status!), JSON.stringify(chained));
    const replayed = await client.responses.create({
      model,
      input: [{ role: 'user', content: 'Weather in Oslo?' }, ...(first.output as OpenAI.Responses.ResponseInputItem[]), answer],
      tools: [weatherTool],
      tool_choice: 'none',
      max_output_tokens: 8,
      store: false,
    });
    assert.equal(replayed.output[0]!.type, 'message');
    // the same conversation both ways: the same prompt length
    assert.equal(replayed.usage!.input_tokens, chained.usage!.input_tokens);
  });

  test(`${model}: responses.stream with tool_choice required streams the arguments`, async () => {
    const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
    const stream = client.responses.stream({ model, input: 'Weather in Rome?', tools: [weatherTool], tool_choice: 'required', parallel_tool_calls: false, max_output_tokens: 120 });
    let args = '';
    stream.on('response.function_call_arguments.delta', (e) => (args += e.delta));
    const final = await stream.finalResponse();
    const calls = final.output.filter((o) => o.type === 'function_call');
    assert.equal(calls.length, 1, JSON.stringify(final.output));
    assert.equal(calls[0]!.arguments, args);
    Weather.parse(JSON.parse(args));
  });

  // NOTE: LangChain 1.5's Responses path drops tool_choice "required" (a named tool is sent).
  test(`${model}: LangChain ChatOpenAI with useResponsesApi: invoke, withStructuredOutput, bindTools`, async () => {
    const llm = new ChatOpenAI({ model, apiKey: 'x', configuration: { baseURL: models.srv.url }, maxTokens: 120, temperature: 0.8, useResponsesApi: true });
    const msg = await llm.invoke('Hello there.');
    assert.equal(typeof msg.text, 'string');
    const person = await llm.withStructuredOutput(Person, { method: 'jsonSchema', name: 'person' }).invoke('Describe a character.');
    assert.deepEqual(Person.parse(person), person);
    const bound = llm.bindTools([{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: z.toJSONSchema(Weather) } }], { tool_choice: 'get_weather' });
    const called = await bound.invoke('Weather in Paris?');
    assert.ok(called.tool_calls && called.tool_calls.length >= 1, JSON.stringify(called));
    for (const c of called.tool_calls!) Weather.parse(c.args);
    let acc: Awaited<ReturnType<typeof bound.invoke>> | undefined;
    for await (const chunk of await bound.stream('Weather in Rome?')) acc = acc ? (acc.concat(chunk) as typeof acc) : chunk;
    assert.ok(acc?.tool_calls && acc.tool_calls.length >= 1, JSON.stringify(acc));
    for (const c of acc!.tool_calls!) Weather.parse(c.args);
  });
}
