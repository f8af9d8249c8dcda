import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError } from '../../plugin/errors.ts';
import { ChatCompletionRequestSchema, CompletionRequestSchema, parseRequest } from '../../plugin/schemas/index.ts';

const chat = (extra: Record<string, unknown>) => ({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], ...extra });

function refused(schema: typeof ChatCompletionRequestSchema | typeof CompletionRequestSchema, body: unknown): InvalidRequestError {
  try {
    parseRequest(schema, body);
  } catch (e) {
    assert.ok(e instanceof InvalidRequestError);
    assert.equal(e.status, 400);
    return e;
  }
  assert.fail(`accepted ${JSON.stringify(body)}`);
}

test('the first issue path becomes param and the message says expected vs received', () => {
  let e = refused(ChatCompletionRequestSchema, chat({ n: 0 }));
  assert.equal(e.param, 'n');
  assert.match(e.message, />= 1, but got 0/);
  e = refused(ChatCompletionRequestSchema, chat({ temperature: 'hot' }));
  assert.equal(e.param, 'temperature');
  assert.match(e.message, /expected a number, but got a string/);
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'user', content: 3 }] });
  assert.equal(e.param, 'messages[0].content');
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'wizard', content: 'x' }] });
  assert.equal(e.param, 'messages[0].role');
  assert.match(e.message, /"wizard"/);
  e = refused(ChatCompletionRequestSchema, { messages: [{ role: 'user', content: 'x' }] });
  assert.equal(e.param, 'model');
  assert.match(e.message, /Missing required parameter/);
  // A missing field whose schema is a union (prompt: string, strings or token ids) says so too.
  e = refused(CompletionRequestSchema, { model: 'tiny' });
  assert.equal(e.param, 'prompt');
  assert.equal(e.message, "Missing required parameter: 'prompt'.");
  e = refused(ChatCompletionRequestSchema, [1, 2]);
  assert.equal(e.param, null);
});

test('range checks: max_tokens, top_p, penalties, top_logprobs, stop, logit_bias', () => {
  assert.equal(refused(ChatCompletionRequestSchema, chat({ max_tokens: -5 })).param, 'max_tokens');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ max_completion_tokens: 0 })).param, 'max_completion_tokens');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ top_p: 0 })).param, 'top_p');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ temperature: 2.5 })).param, 'temperature');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ presence_penalty: -3 })).param, 'presence_penalty');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ n: 17 })).param, 'n');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ seed: 1.5 })).param, 'seed');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ logprobs: true, top_logprobs: 21 })).param, 'top_logprobs');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ top_logprobs: 2 })).param, 'top_logprobs');
  const stop = refused(ChatCompletionRequestSchema, chat({ stop: ['a', 'b', 'c', 'd', 'e'] }));
  assert.equal(stop.param, 'stop');
  assert.match(stop.message, /at most 4 items, but got 5/);
  assert.equal(refused(ChatCompletionRequestSchema, chat({ stop: [1] })).param, 'stop[0]');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ logit_bias: { '5': 101 } })).param, 'logit_bias.5');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ logit_bias: { abc: 1 } })).param, 'logit_bias.abc');
  // stream_options only with stream: true (OpenAI and vLLM: 400); null passes.
  const so = refused(ChatCompletionRequestSchema, chat({ stream_options: { include_usage: true } }));
  assert.equal(so.param, 'stream_options');
  assert.equal(ChatCompletionRequestSchema.safeParse(chat({ stream: true, stream_options: { include_usage: true } })).success, true);
  assert.equal(ChatCompletionRequestSchema.safeParse(chat({ stream: false, stream_options: null })).success, true);
  // JSON.parse makes "__proto__" an own key, which zod's record would skip: refused, not dropped.
  const proto = refused(ChatCompletionRequestSchema, chat({ logit_bias: JSON.parse('{"__proto__": 100}') }));
  assert.equal(proto.param, 'logit_bias');
  assert.match(proto.message, /token id.*"__proto__"/);
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 'x', logprobs: 6 }).param, 'logprobs');
});

test('unsupported features are refused by name; unknown keys are accepted and stripped', () => {
  assert.equal(refused(ChatCompletionRequestSchema, chat({ tools: [{ type: 'function' }] })).param, 'tools[0].function');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ tools: [{ type: 'function', function: { name: 'a b' } }] })).param, 'tools[0].function.name');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ response_format: { type: 'xml' } })).param, 'response_format.type');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ response_format: { type: 'json_schema' } })).param, 'response_format.json_schema');
  const tools = [{ type: 'function', function: { name: 'f' } }];
  assert.equal(refused(ChatCompletionRequestSchema, chat({ tools, tool_choice: { type: 'function', function: { name: 'g' } } })).param, 'tool_choice.function.name');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ tool_choice: 'required' })).param, 'tool_choice');
  assert.equal(refused(ChatCompletionRequestSchema, chat({ tools: [...tools, ...tools] })).param, 'tools[1].function.name');
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 'x', guided_choice: [] }).param, 'guided_choice');
  const img = refused(ChatCompletionRequestSchema, {
    model: 'tiny',
    messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }],
  });
  assert.equal(img.param, 'messages[0].content[0].type');
  assert.match(img.message, /only "text" content parts/);
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 'x', suffix: 'y' }).param, 'suffix');

  const body = parseRequest(
    ChatCompletionRequestSchema,
    chat({
      store: false,
      metadata: { a: 'b' },
      parallel_tool_calls: true,
      service_tier: 'auto',
      response_format: { type: 'text' },
      tools: [],
      top_k: 40,
      stop: null,
      temperature: null,
      future_field: { x: 1 },
    }),
  );
  assert.equal(body.top_k, 40);
  assert.equal((body as Record<string, unknown>).future_field, undefined);
});

test('completions prompt forms and the adapters extension', () => {
  for (const prompt of ['x', ['a', 'b'], [1, 2, 3], [[1], [2, 3]]]) {
    assert.deepEqual(parseRequest(CompletionRequestSchema, { model: 'tiny', prompt }).prompt, prompt);
  }
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: [] }).param, 'prompt');
  // A number that is not a token id is named as such (the token-id branch of the union), not as a string.
  const dec = refused(CompletionRequestSchema, { model: 'tiny', prompt: [1.5] });
  assert.equal(dec.param, 'prompt[0]');
  assert.match(dec.message, /expected an integer, but got a decimal/);
  assert.match(refused(CompletionRequestSchema, { model: 'tiny', prompt: ['a', 2] }).message, /expected a string, but got an integer/);
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: [1, -2] }).param, 'prompt[1]');
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 5 }).param, 'prompt');
  const b = parseRequest(CompletionRequestSchema, { model: 'tiny', prompt: 'x', adapters: [{ name: 'shout', weight: 0.5 }] });
  assert.deepEqual(b.adapters, [{ name: 'shout', weight: 0.5 }]);
  // A weight defaults to 1, as in the model-name syntax; a non-number is refused by name.
  assert.deepEqual(parseRequest(CompletionRequestSchema, { model: 'tiny', prompt: 'x', adapters: [{ name: 'shout' }] }).adapters, [{ name: 'shout', weight: 1 }]);
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 'x', adapters: [{ name: 'shout', weight: '1e999' }] }).param, 'adapters[0].weight');
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: 'x', merge: { strategy: 'ties', density: 1.5 } }).param, 'merge.density');
});

test('messages are validated as OpenAI does: content required except assistant tool calls; tool turns pair up', () => {
  for (const role of ['user', 'system', 'developer', 'tool']) {
    for (const content of [undefined, null]) {
      const m: Record<string, unknown> = { role, tool_call_id: 'c1' };
      if (content === null) m.content = null;
      const e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'user', content: 'x' }, m] });
      assert.equal(e.param, 'messages[1].content', `${role} ${String(content)}`);
      assert.equal(e.status, 400);
    }
  }
  let e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'assistant', content: null }] });
  assert.equal(e.param, 'messages[0].content');
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'user', content: [] }] });
  assert.equal(e.param, 'messages[0].content');
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'tool', content: 'r' }] });
  assert.equal(e.param, 'messages[0].tool_call_id');
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'tool', content: 'r', tool_call_id: 'c1' }] });
  assert.equal(e.param, 'messages[0].role');
  const call = { id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } };
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'assistant', content: null, tool_calls: [call] }, { role: 'user', content: 'x' }] });
  assert.equal(e.param, 'messages[0].role');
  assert.match(e.message, /c1/);
  const ok = ChatCompletionRequestSchema.parse({
    model: 'tiny',
    messages: [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', content: '42', tool_call_id: 'c1' },
      { role: 'user', content: '' },
    ],
  });
  assert.equal(ok.messages[1]!.tool_calls![0]!.function.name, 'f');
});

test("messages are bounded as OpenAI's: more than 2048 is refused before any message is parsed", () => {
  const many = (n: number) => Array.from({ length: n }, () => ({ role: 'user', content: 'a' }));
  let e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: many(2049) });
  assert.equal(e.param, 'messages');
  assert.match(e.message, /at most 2048 items, but got 2049/);
  // Refused by length even when every message is malformed: the elements are never parsed.
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: Array.from({ length: 100_000 }, () => 7) });
  assert.equal(e.param, 'messages');
  assert.doesNotThrow(() => parseRequest(ChatCompletionRequestSchema, { model: 'tiny', messages: many(2048) }));
  const calls = Array.from({ length: 129 }, (_, i) => ({ id: `c${i}`, type: 'function', function: { name: 'f', arguments: '{}' } }));
  e = refused(ChatCompletionRequestSchema, { model: 'tiny', messages: [{ role: 'assistant', content: null, tool_calls: calls }] });
  assert.equal(e.param, 'messages[0].tool_calls');
});

test('a received value nested thousands of levels is named by its type in the 400, not quoted (JSON.stringify overflowed: a 500)', () => {
  const deep = JSON.parse('['.repeat(20_000) + ']'.repeat(20_000));
  for (const [body, param] of [
    [chat({ tool_choice: deep }), 'tool_choice'],
    [chat({ response_format: { type: deep } }), 'response_format.type'],
    [{ model: 'tiny', messages: [{ role: deep, content: 'x' }] }, 'messages[0].role'],
  ] as const) {
    const e = refused(ChatCompletionRequestSchema, body);
    assert.equal(e.param, param);
    assert.match(e.message, /an array nested more than 8 levels deep/);
  }
});

test('long token-id prompts are checked in one walk: up to 2^20 items accepted, more refused, the first bad item named', () => {
  const ids = Array<number>(1 << 20).fill(5);
  assert.equal((parseRequest(CompletionRequestSchema, { model: 'tiny', prompt: ids }).prompt as number[]).length, 1 << 20);
  assert.equal((parseRequest(CompletionRequestSchema, { model: 'tiny', prompt: [ids.slice(0, 5000), [1]] }).prompt as number[][]).length, 2);
  const tooMany = refused(CompletionRequestSchema, { model: 'tiny', prompt: [...ids, 5] });
  assert.equal(tooMany.param, 'prompt');
  assert.match(tooMany.message, /at most 1048576 token ids/);
  const bad = refused(CompletionRequestSchema, { model: 'tiny', prompt: [...ids.slice(0, 4999), 1.5] });
  assert.equal(bad.param, 'prompt[4999]');
  assert.match(bad.message, /expected a token id/);
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: [[1], ids.slice(0, 5000).concat(-1)] }).param, 'prompt[1][5000]');
  assert.equal(refused(CompletionRequestSchema, { model: 'tiny', prompt: [...Array<string>(5000).fill('a'), 3] }).param, 'prompt[5000]');
});
