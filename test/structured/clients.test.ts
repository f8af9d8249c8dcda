/**
 * Real clients against a listening server with random-weight models that have real
 * tokenizers and tool-calling templates: Qwen3's (Hermes `<tool_call>`) and Llama 3's with a
 * Llama 3.1-style tools template. LangChain `withStructuredOutput` (jsonSchema and
 * functionCalling), `bindTools` invoke and stream, the openai SDK's `chat.completions.parse`
 * with `zodResponseFormat` and a tool loop with `role: "tool"` results.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatOpenAI } from '@langchain/openai';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { SCHEMAS } from './schemas.ts';
import { useToolModels } from './random-model.ts';

const models = useToolModels();

const Person = z.object({ name: z.string().max(10), age: z.number().int().min(0).max(120), role: z.enum(['king', 'fool']) });
const Weather = z.object({ city: z.string().max(8), unit: z.enum(['c', 'f']) });

const llm = (model: string) => new ChatOpenAI({ model, apiKey: 'x', configuration: { baseURL: models.srv.url }, maxTokens: 120, temperature: 0.8 });

for (const model of ['rand-qwen3', 'rand-llama3']) {
  test(`${model}: over seeds and schemas, every constrained answer parses and validates`, async () => {
    const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
    for (const [name, schema] of Object.entries(SCHEMAS)) {
      const validate = new Ajv2020().compile(schema);
      const answers = await Promise.all(
        [1, 2, 3, 4, 5, 6].map((seed) =>
          client.chat.completions.create({
            model,
            messages: [{ role: 'user', content: `Fill in the ${name}.` }],
            response_format: { type: 'json_schema', json_schema: { name, schema, strict: true } },
            max_tokens: 200,
            temperature: 1,
            seed,
          }),
        ),
      );
      for (const a of answers) {
        const text = a.choices[0]!.message.content!;
        assert.equal(a.choices[0]!.finish_reason, 'stop', `${name}: ${text}`);
        assert.ok(validate(JSON.parse(text)), `${name}: ${text} ${JSON.stringify(validate.errors)}`);
      }
    }
  });

  test(`${model}: LangChain withStructuredOutput, jsonSchema and functionCalling, give parsed objects`, async () => {
    for (const method of ['jsonSchema', 'functionCalling'] as const) {
      const out = await llm(model).withStructuredOutput(Person, { method, name: 'person' }).invoke('Describe a character.');
      assert.deepEqual(Person.parse(out), out, `${method}: ${JSON.stringify(out)}`);
    }
  });

  test(`${model}: LangChain bindTools with tool_choice required, invoke and stream`, async () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather of a city', parameters: z.toJSONSchema(Weather) } }];
    const bound = llm(model).bindTools(tools, { tool_choice: 'required', parallel_tool_calls: false });
    const msg = await bound.invoke('Weather in Paris?');
    assert.ok(msg.tool_calls && msg.tool_calls.length >= 1, JSON.stringify(msg));
    for (const c of msg.tool_calls!) {
      assert.equal(c.name, 'get_weather');
      Weather.parse(c.args);
      assert.match(c.id!, /^call_/);
    }
    let acc: Awaited<ReturnType<typeof bound.invoke>> | undefined;
    for await (const chunk of await bound.stream('Weather in Rome?')) acc = acc ? (acc.concat(chunk) as typeof acc) : chunk;
    assert.ok(acc?.tool_calls && acc.tool_calls.length >= 1, JSON.stringify(acc));
    for (const c of acc!.tool_calls!) Weather.parse(c.args);
  });

  test(`${model}: openai SDK chat.completions.parse with zodResponseFormat, and a tool loop`, async () => {
    const client = new OpenAI({ baseURL: models.srv.url, apiKey: 'x' });
    const parsed = await client.chat.completions.parse({
      model,
      messages: [{ role: 'user', content: 'Describe a character.' }],
      response_format: zodResponseFormat(Person, 'person'),
      max_tokens: 120,
    });
    Person.parse(parsed.choices[0]!.message.parsed);

    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: z.toJSONSchema(Weather) as Record<string, unknown> } }];
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather in Oslo?' }];
    const first = await client.chat.completions.create({ model, messages, tools, tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 120 });
    const call = first.choices[0]!.message.tool_calls?.[0];
    assert.equal(first.choices[0]!.finish_reason, 'stop', 'a named function finishes "stop", as OpenAI answers');
    assert.ok(call && call.type === 'function' && call.function.name === 'get_weather', JSON.stringify(first));
    Weather.parse(JSON.parse(call.function.arguments));
    messages.push(first.choices[0]!.message, { role: 'tool', tool_call_id: call.id, content: '{"temp": 21}' });
    const second = await client.chat.completions.create({ model, messages, tools, tool_choice: 'none', max_tokens: 10 });
    assert.equal(second.choices[0]!.message.role, 'assistant');
    assert.ok(['stop', 'length'].includes(second.choices[0]!.finish_reason));
  });
}
