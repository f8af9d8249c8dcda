/**
 * The Responses API's parts without a server: input items → chat messages (instructions, text
 * parts, calls joined to the assistant turn, tool outputs, reasoning skipped), the chat fields it
 * sets (vLLM's `structured_outputs` among them; chat-only fields refused), the renamed error
 * fields, the stored-response bounds and owners, and the event stream of a choice that writes
 * prose and then a call.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError, ContextLengthError } from '../../plugin/errors.ts';
import { ResponseEvents, outputItems, outputMessages } from '../../plugin/responses/output.ts';
import { ResponseStore } from '../../plugin/responses/store.ts';
import { renameParam, responsesParam, toChatRequest } from '../../plugin/responses/translate.ts';
import { parseRequest } from '../../plugin/schemas/index.ts';
import { ResponseCreateRequestSchema } from '../../plugin/schemas/responses.ts';
import { grammarFromBody } from '../../plugin/structured/from-body.ts';

const parse = (b: object) => parseRequest(ResponseCreateRequestSchema, { model: 'm', ...b });

test('input items become the chat conversation', () => {
  const b = parse({
    instructions: 'Be terse.',
    input: [
      { role: 'user', content: [{ type: 'input_text', text: 'Weather ' }, { type: 'input_text', text: 'in Oslo?' }] },
      { type: 'reasoning', id: 'rs_1', summary: [] },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Checking.' }] },
      { type: 'function_call', call_id: 'c1', name: 'w', arguments: '{"city":"Oslo"}' },
      { type: 'function_call', call_id: 'c2', name: 'w', arguments: '{"city":"Bergen"}' },
      { type: 'function_call_output', call_id: 'c1', output: '21' },
      { type: 'function_call_output', call_id: 'c2', output: [{ type: 'input_text', text: '1' }, { type: 'input_text', text: '9' }] },
      { role: 'developer', content: 'Answer now.' },
    ],
  });
  const { chat, conversation } = toChatRequest(b, []);
  assert.deepEqual(chat.messages, [
    { role: 'system', content: 'Be terse.' },
    { role: 'user', content: [{ type: 'text', text: 'Weather ' }, { type: 'text', text: 'in Oslo?' }] },
    {
      role: 'assistant',
      content: [{ type: 'text', text: 'Checking.' }],
      tool_calls: [
        { id: 'c1', type: 'function', function: { name: 'w', arguments: '{"city":"Oslo"}' } },
        { id: 'c2', type: 'function', function: { name: 'w', arguments: '{"city":"Bergen"}' } },
      ],
    },
    { role: 'tool', tool_call_id: 'c1', content: '21' },
    { role: 'tool', tool_call_id: 'c2', content: '19' },
    { role: 'developer', content: 'Answer now.' },
  ]);
  assert.deepEqual(conversation, chat.messages.slice(1), 'instructions are not part of the stored conversation');
});

test('chat fields: tools, tool_choice, text.format, max_output_tokens, logprobs', () => {
  const b = parse({
    input: 'x',
    tools: [{ type: 'function', name: 'w', parameters: { type: 'object' }, strict: true }],
    tool_choice: { type: 'function', name: 'w' },
    text: { format: { type: 'json_schema', name: 'p', schema: { type: 'object' }, strict: true } },
    max_output_tokens: 7,
    include: ['message.output_text.logprobs'],
  });
  const { chat } = toChatRequest(b, []);
  assert.deepEqual(chat.tools, [{ type: 'function', function: { name: 'w', description: undefined, parameters: { type: 'object' }, strict: true } }]);
  assert.deepEqual(chat.tool_choice, { type: 'function', function: { name: 'w' } });
  assert.deepEqual(chat.response_format, { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object' }, description: undefined, strict: true } });
  assert.equal(chat.max_completion_tokens, 7);
  assert.equal(chat.logprobs, true);
  assert.equal(chat.top_logprobs, 0);
  assert.equal(toChatRequest(parse({ input: 'x', text: { format: { type: 'json_object' } } }), []).chat.response_format?.type, 'json_object');
  assert.equal(toChatRequest(parse({ input: 'x', text: { format: { type: 'text' } } }), []).chat.response_format, undefined);
});

test("vLLM's structured_outputs reaches the chat request's grammar; with text.format, or chat-only fields, a 400 naming the field", () => {
  const { chat } = toChatRequest(parse({ input: 'x', structured_outputs: { choice: ['yea', 'nay'] }, stop_token_ids: [5], include_stop_str_in_output: true, logit_bias: { '7': -100 } }), []);
  assert.deepEqual(grammarFromBody(chat), { kind: 'choice', choices: ['yea', 'nay'], param: 'structured_outputs.choice' });
  assert.deepEqual([chat.stop_token_ids, chat.include_stop_str_in_output, chat.logit_bias], [[5], true, { '7': -100 }]);
  const refused = (b: object) => {
    const r = ResponseCreateRequestSchema.safeParse({ model: 'm', input: 'x', ...b });
    assert.equal(r.success, false, JSON.stringify(b));
    return r.error!.issues[0]!;
  };
  const both = refused({ structured_outputs: { json_object: true }, text: { format: { type: 'json_object' } } });
  assert.deepEqual(both.path, ['structured_outputs']);
  assert.match(both.message, /text\.format/);
  assert.equal(parse({ input: 'x', structured_outputs: { regex: 'a+' }, text: { format: { type: 'text' } } }).structured_outputs?.regex, 'a+');
  for (const field of ['response_format', 'guided_json', 'guided_regex', 'guided_choice', 'guided_grammar', 'chat_template', 'add_generation_prompt', 'continue_final_message', 'prompt_logprobs', 'include_reasoning', 'add_special_tokens']) {
    const issue = refused({ [field]: field === 'response_format' ? { type: 'json_object' } : 'x' });
    assert.deepEqual(issue.path, [field]);
    assert.match(issue.message, /not supported on the Responses API/);
  }
  assert.equal(parse({ input: 'x', guided_choice: null, response_format: null }).model, 'm', 'null is the default');
});

test('a stored conversation ending in calls is answered by this input; pairing errors name the item', () => {
  const history = [
    { role: 'user' as const, content: 'q' },
    { role: 'assistant' as const, content: null, tool_calls: [{ id: 'c9', type: 'function' as const, function: { name: 'w', arguments: '{}' } }] },
  ];
  const { chat } = toChatRequest(parse({ input: [{ type: 'function_call_output', call_id: 'c9', output: 'ok' }], previous_response_id: 'resp_1' }), history);
  assert.deepEqual(chat.messages.slice(-1), [{ role: 'tool', tool_call_id: 'c9', content: 'ok' }]);
  const open = (() => {
    try {
      toChatRequest(parse({ input: 'next', previous_response_id: 'resp_1' }), history);
    } catch (e) {
      return e as InvalidRequestError;
    }
  })();
  assert.equal(open?.param, 'previous_response_id');
  assert.throws(() => toChatRequest(parse({ input: [{ type: 'function_call', call_id: 'c', name: 'w', arguments: '{}' }, { type: 'function_call', call_id: 'c', name: 'w', arguments: '{}' }] }), []), {
    param: 'input[1].call_id',
  });
});

test('chat field names are renamed for the Responses body', () => {
  assert.equal(responsesParam('messages'), 'input');
  assert.equal(responsesParam('messages[2].content'), 'input[2].content');
  assert.equal(responsesParam('response_format.json_schema.schema'), 'text.format.schema');
  assert.equal(responsesParam('max_completion_tokens'), 'max_output_tokens');
  assert.equal(responsesParam('tools[1].function.parameters'), 'tools[1].parameters');
  assert.equal(responsesParam('tool_choice.function.name'), 'tool_choice.name');
  assert.equal(responsesParam('temperature'), 'temperature');
  const e = renameParam(new InvalidRequestError("Invalid value for 'response_format.json_schema.schema': no.", 'response_format.json_schema.schema')) as InvalidRequestError;
  assert.equal(e.param, 'text.format.schema');
  assert.equal(e.status, 400);
  assert.match(e.message, /'text\.format\.schema'/);
  const c = renameParam(new ContextLengthError('too long', 'messages')) as ContextLengthError;
  assert.equal(c.param, 'input');
  assert.equal(c.code, 'context_length_exceeded');
});

test('the store: per owner, least recently used out past the entry and byte bounds, a quarter of each per owner', () => {
  const s = new ResponseStore(8, 1 << 20);  // an owner keeps 2
  const entry = (owner: string) => ({ owner, response: { id: owner }, conversation: [], inputItems: [] });
  s.put('r1', entry('a'));
  s.put('r2', entry('a'));
  assert.ok(s.get('a', 'r1'));  // r1 recently used: r2 goes next
  assert.equal(s.get('b', 'r1'), undefined);
  assert.equal(s.delete('b', 'r1'), false);
  s.put('r3', entry('a'));
  assert.equal(s.size, 2);
  assert.equal(s.get('a', 'r2'), undefined);
  assert.ok(s.get('a', 'r1') && s.get('a', 'r3'));
  assert.throws(() => s.conversation('b', 'r1'), { param: 'previous_response_id', code: 'previous_response_not_found' });
  // a busy owner evicts only its own
  for (const o of ['b', 'c', 'd']) for (let i = 0; i < 5; i++) s.put(`${o}${i}`, entry(o));
  assert.equal(s.size, 8);
  assert.ok(s.get('a', 'r1') && s.get('a', 'r3'), "a's two survive b, c and d");
  assert.ok(s.get('d', 'd4') && s.get('d', 'd3') && !s.get('d', 'd2'));

  const small = new ResponseStore(100, 16000);  // an owner keeps 4000 bytes
  const big = (id: string, owner = 'a') => ({ owner, response: { id, text: 'x'.repeat(600) }, conversation: [], inputItems: [] });
  for (let i = 0; i < 10; i++) small.put(`r${i}`, big(`r${i}`));
  assert.ok(small.size < 10 && small.size >= 2, String(small.size));
  assert.ok(small.get('a', 'r9'));
  small.put('huge', { owner: 'a', response: { text: 'x'.repeat(5000) }, conversation: [], inputItems: [] });
  assert.equal(small.get('a', 'huge'), undefined, "larger than an owner's share: not kept");
  for (const o of ['b', 'c', 'd', 'e']) for (let i = 0; i < 10; i++) small.put(`${o}${i}`, big(`${o}${i}`, o));
  assert.ok(small.get('e', 'e9'));
});

test('events: prose then a call close the message before the call opens; the final items are the stream`s', () => {
  const sent: Array<Record<string, unknown>> = [];
  const ev = new ResponseEvents({ id: 'resp_x', created_at: 1, body: parse({ input: 'x' }) }, (_t, p) => sent.push(p));
  ev.start();
  ev.chatDelta({ content: 'Let me check. ' });
  ev.chatDelta({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'w', arguments: '' } }] });
  ev.chatDelta({ tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] });
  ev.chatDelta({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] });
  const r = ev.finish('stop', { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
  assert.deepEqual(
    sent.map((e) => e.type),
    [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ],
  );
  const output = r.output as Array<Record<string, unknown>>;
  assert.equal(output.length, 2);
  assert.equal(output[1]!.arguments, '{"a":1}');
  assert.equal(output[1]!.call_id, 'call_1');
  assert.deepEqual(outputMessages(ev.items), [{ role: 'assistant', content: 'Let me check. ', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'w', arguments: '{"a":1}' } }] }]);
  // cut by max_output_tokens inside a call: that call is incomplete
  const cut = new ResponseEvents({ id: 'resp_y', created_at: 1, body: parse({ input: 'x' }) }, () => {});
  cut.chatDelta({ tool_calls: [{ index: 0, id: 'call_2', type: 'function', function: { name: 'w', arguments: '{"a":' } }] });
  const cr = cut.finish('length', { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
  assert.equal(cr.status, 'incomplete');
  assert.equal((cr.output as Array<Record<string, unknown>>)[0]!.status, 'incomplete');
  // whole: a call alone has no message item; nothing at all is one empty message
  assert.deepEqual(outputItems(null, [{ id: 'c', type: 'function', function: { name: 'w', arguments: '{}' } }], [], 'stop').map((i) => i.type), ['function_call']);
  assert.deepEqual(outputItems('', [], [], 'stop').map((i) => i.type), ['message']);
});
