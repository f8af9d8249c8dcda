import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelEntrySchema } from '../../config/schema.ts';
import { detectToolFormat, FORMATS, TOOL_FORMATS } from '../../plugin/tools/format.ts';
import { parseToolCalls } from '../../plugin/tools/parse.ts';
import { planTools, ToolChoiceStream, toolMessage } from '../../plugin/tools/respond.ts';
import { ToolStreamParser, type StreamDelta, type ToolCallDelta } from '../../plugin/tools/stream.ts';
import { loadTestTokenizer } from './helpers.ts';

const H = FORMATS.hermes;
const L = FORMATS.llama3_json;
const M = FORMATS.mistral;

/** A text in two pieces at every split point, and one character a piece. */
function splits(text: string): string[][] {
  const out: string[][] = [[...text]];
  for (let i = 1; i < text.length; i++) out.push([text.slice(0, i), text.slice(i)]);
  return out;
}

/**
 * What a client assembles from the stream of an output arriving in `pieces` (ToolChoiceStream, as
 * the routes use it), checking the shapes of the deltas: a new call has the next index and its id,
 * type and name together; the name comes once.
 */
function streamed(format: typeof H, pieces: string[], finish = 'stop') {
  const ts = new ToolChoiceStream(format);
  const deltas = pieces.flatMap((p) => ts.push(p));
  const end = ts.end(finish);
  deltas.push(...end.deltas);
  let content = '';
  const calls: Array<{ id: string; name: string; args: string }> = [];
  for (const d of deltas) {
    if (typeof d.content === 'string') content += d.content;
    for (const tc of (d.tool_calls as ToolCallDelta[] | undefined) ?? []) {
      if (tc.id) {
        assert.equal(tc.index, calls.length, 'a new call has the next index');
        assert.ok(tc.function.name && tc.type === 'function', 'the name and type come with the id');
        calls.push({ id: tc.id, name: tc.function.name, args: tc.function.arguments ?? '' });
      } else {
        assert.equal(tc.function.name, undefined, 'the name is sent once');
        calls[tc.index]!.args += tc.function.arguments ?? '';
      }
    }
  }
  for (const c of calls) assert.match(c.id, /^call_[A-Za-z0-9]{24}$/);
  assert.deepEqual(ts.calls.map((c) => c.id), calls.map((c) => c.id), 'the calls kept are the calls sent');
  return { content, calls, finishReason: end.finishReason };
}

test('the format is read from the template markers; the override wins', () => {
  const qwen = loadTestTokenizer('qwen3');
  assert.equal(detectToolFormat(qwen.chatTemplate)?.name, 'hermes');
  assert.equal(detectToolFormat(loadTestTokenizer('llama3').chatTemplate), undefined);
  assert.equal(detectToolFormat('{{ "[TOOL_CALLS]" }}')?.name, 'mistral');
  assert.equal(detectToolFormat('{{- "<|python_tag|>" }}')?.name, 'llama3_json');
  assert.equal(detectToolFormat(undefined, 'mistral')?.name, 'mistral');
  assert.deepEqual(ModelEntrySchema.shape.toolCallFormat.unwrap().options, [...TOOL_FORMATS], 'the config lists the same formats');
});

const CASES: Array<[string, typeof H, string, { content: string | null; calls: Array<[string, unknown]> }]> = [
  ['hermes one call', H, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "n": [1, {"a": "}"}]}}\n</tool_call>', { content: null, calls: [['get_weather', { city: 'Paris', n: [1, { a: '}' }] }]] }],
  // The content is the text before the first call as written (vLLM), blank is none.
  ['hermes prose then two calls', H, 'Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": "y\\"z"}}\n</tool_call>', { content: 'Let me check.\n', calls: [['a', {}], ['b', { x: 'y"z' }]] }],
  ['hermes prose only', H, 'No tools needed: <tool maybe>', { content: 'No tools needed: <tool maybe>', calls: [] }],
  ['hermes keys reversed', H, '<tool_call>\n{"arguments": {"q": 1}, "name": "s"}\n</tool_call>', { content: null, calls: [['s', { q: 1 }]] }],
  ['llama3 bare json', L, '{"name": "f", "parameters": {"a": 1}}', { content: null, calls: [['f', { a: 1 }]] }],
  ['llama3 python_tag, two calls', L, '<|python_tag|>{"name": "f", "parameters": {"a": "x;y"}}; {"name": "g", "parameters": {}}', { content: null, calls: [['f', { a: 'x;y' }], ['g', {}]] }],
  ['llama3 prose', L, 'Hello {there}', { content: 'Hello {there}', calls: [] }],
  ['llama3 json that is not a call', L, '{"answer": 42}', { content: '{"answer": 42}', calls: [] }],
  ['mistral', M, '[TOOL_CALLS][{"name": "f", "arguments": {"a": [1, 2]}}, {"name": "g", "arguments": {}}]', { content: null, calls: [['f', { a: [1, 2] }], ['g', {}]] }],
  ['mistral without the special marker', M, '[{"name": "f", "arguments": {"a": 1}}]', { content: null, calls: [['f', { a: 1 }]] }],
  ['mistral prose', M, 'Sure [1] thing', { content: 'Sure [1] thing', calls: [] }],
];

for (const [name, format, text, want] of CASES) {
  test(`complete parse: ${name}`, () => {
    const r = parseToolCalls(text, format);
    assert.equal(r.content, want.content);
    assert.deepEqual(r.toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), want.calls);
    for (const c of r.toolCalls) assert.match(c.id, /^call_[A-Za-z0-9]{24}$/);
  });

  test(`streamed parse, every split point and byte-by-byte: ${name}`, () => {
    for (const pieces of splits(text)) {
      const r = streamed(format, pieces);
      assert.equal(r.content === '' ? null : r.content, want.content, `content, pieces ${JSON.stringify(pieces)}`);
      assert.deepEqual(r.calls.map((c) => [c.name, JSON.parse(c.args)]), want.calls, `calls, pieces ${JSON.stringify(pieces)}`);
    }
  });
}

test('a max_tokens cut drops the last, unfinished call and keeps the complete ones (as the stream does)', () => {
  const cut = '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "ge';
  const r = parseToolCalls(cut, H, true);
  assert.deepEqual(r.toolCalls.map((c) => c.function.name), ['a', 'b']);
  assert.equal(r.content, null);
  // Not cut (the model stopped inside a call): the text stays content, nothing is guessed.
  assert.deepEqual(parseToolCalls(cut, H).toolCalls, []);
  // A single unfinished call is no call.
  assert.deepEqual(parseToolCalls('<tool_call>\n{"name": "ge', H, true).toolCalls, []);
  const llama = '{"name": "f", "parameters": {"a": 1}}; {"name": "g", "param';
  assert.deepEqual(parseToolCalls(llama, L, true).toolCalls.map((c) => c.function.name), ['f']);
  assert.deepEqual(parseToolCalls(llama, L).toolCalls, []);
});

test('the output ending inside a call: whole arguments before a cut-off closing tag parse (streamed and not); cut arguments are no call', () => {
  const calls = (text: string) => streamed(H, [text]).calls.map((c) => [c.name, JSON.parse(c.args)]);
  for (const tail of ['', '\n', '\n</tool', '\n</tool_call']) {
    const text = `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}${tail}`;
    assert.deepEqual(parseToolCalls(text, H, true).toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [['get_weather', { city: 'Rome' }]], JSON.stringify(tail));
    assert.deepEqual(calls(text), [['get_weather', { city: 'Rome' }]], JSON.stringify(tail));
  }
  // Cut inside the arguments (a stop string, max_tokens): neither side counts a call.
  const cut = '<tool_call>\n{"name": "get_weather", "arguments": {"city';
  assert.deepEqual(parseToolCalls(cut, H).toolCalls, []);
  assert.deepEqual(calls(cut), []);
});

test('arguments are the generated text itself: integers past 2^53 keep their digits, streamed or not, without leading spaces', () => {
  const text = '<tool_call>\n{"name": "add", "arguments": {"a": 3333533333343353333, "b": -33332333333333933332033333}}\n</tool_call>';
  const want = '{"a": 3333533333343353333, "b": -33332333333333933332033333}';
  assert.equal(parseToolCalls(text, H).toolCalls[0]!.function.arguments, want);
  const r = streamed(H, ['<tool_call>\n{"name": "add", "arguments":', ' ', '{"a": 3333533333343353333, ', '"b": -33332333333333933332033333}}\n</tool_call>']);
  assert.equal(r.calls[0]!.args, want);
  // Keys in another order and Llama's JSON form.
  const late = '<tool_call>\n{"arguments": {"n": 12345678901234567890}, "name": "f"}\n</tool_call>';
  assert.equal(parseToolCalls(late, H).toolCalls[0]!.function.arguments, '{"n": 12345678901234567890}');
  assert.equal(parseToolCalls('{"name": "f", "parameters": {"n": 12345678901234567890}}', L).toolCalls[0]!.function.arguments, '{"n": 12345678901234567890}');
});

test('cut by max_tokens: a first call cut short leaves only the prose before it; a cut-off tag after a call is not content (streamed or not)', () => {
  const r = parseToolCalls('Let me check.\n<tool_call>\n{"n', H, true);
  assert.deepEqual(r.toolCalls, []);
  assert.equal(r.content, 'Let me check.\n');
  assert.equal(parseToolCalls('<tool_call>\n{"n', H, true).content, null);
  const after = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<t';
  assert.equal(parseToolCalls(after, H, true).content, null);
  const s = streamed(H, [after], 'length');
  assert.equal(s.content, '');
  assert.equal(s.calls.length, 1);
});

/** Outputs for the streamed == non-streamed test, per format: calls, prose around them, broken calls. */
const CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>';
const SAME: Array<[typeof H, string]> = [
  // A tester's cases: malformed JSON in the markup; arguments as a JSON string; a closing tag
  // inside a JSON string; prose before the call; a function the request did not offer.
  [H, '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro\n</tool_call>'],
  [H, '<tool_call>\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}\n</tool_call>'],
  [H, '<tool_call>\n{"name": "echo", "arguments": {"text": "a </tool_call> b"}}\n</tool_call>'],
  [H, `Sure! ${CALL}`],
  [H, '<tool_call>\n{"name": "launch_rockets", "arguments": {}}\n</tool_call>'],
  [H, CALL],
  [H, `${CALL}\n${CALL.replace('Rome', 'Paris')}`],
  [H, `\n\n  ${CALL}\nDone, see above.`],
  [H, `  Let me see.\n\n${CALL}\n<tool`],
  [H, `${CALL}\n<tool_call>\n{"name": "f", "arguments": {"x"\n</tool_call>\nafter`],
  [H, `${CALL}\n<tool_call>\n{"name": "f", "argu`],
  [H, '<tool_call>\n{"arguments": {"q": [1, "}"]}, "name": "s"}'],
  [H, 'Write <tool_call>x</tool_call> to call a tool, <tool_call> alone, and </tool_call>: done.'],
  [H, 'A <tool bracket, <tool_cal and <tool_call'],
  [H, '   '],
  [H, ''],
  [L, '<|python_tag|>{"name": "f", "parameters": {"a": "x;y"}}; {"name": "g", "parameters": {}}'],
  [L, ' {"name": "f", "parameters": {"a": 1}}; {"name": "g", "param'],
  [L, '{"answer": 42} and more'],
  [L, '<|python_tag|> [TOOL_CALLS] hello'],
  [L, '<|pyth'],
  [M, '[TOOL_CALLS][{"name": "f", "arguments": {"a": [1, 2]}}, {"name": "g", "arguments": {}}]'],
  [M, '[TOOL_CALLS] [{"name": "f", "arguments": {}}, {"nam'],
  [M, 'Sure [1] thing'],
  [M, '[1, 2] is a list'],
];

test('the stream of any output adds up to its non-streamed message (content, calls, finish reason), however the output is split', () => {
  for (const [format, text] of SAME) {
    for (const finish of ['stop', 'length']) {
      const { message, finishReason } = toolMessage(text, finish, format);
      const want = {
        content: (message.content as string | null) ?? '',
        calls: ((message.tool_calls as Array<{ function: { name: string; arguments: string } }> | undefined) ?? []).map((c) => [c.function.name, c.function.arguments]),
        finishReason,
      };
      for (const pieces of splits(text)) {
        const r = streamed(format, pieces, finish);
        const got = { content: r.content, calls: r.calls.map((c) => [c.name, c.args]), finishReason: r.finishReason };
        assert.deepEqual(got, want, `${format.name} ${finish}, pieces ${JSON.stringify(pieces)}`);
      }
    }
  }
});

test("a tester's Hermes outputs, as parsed (streamed the same, see above)", () => {
  const parse = (i: number) => {
    const r = parseToolCalls(SAME[i]![1], H);
    return { content: r.content, calls: r.toolCalls.map((c) => [c.function.name, c.function.arguments]) };
  };
  // Broken JSON, or a closing tag inside a string (the call ends there): content, no call.
  assert.deepEqual(parse(0), { content: SAME[0]![1], calls: [] });
  assert.deepEqual(parse(2), { content: SAME[2]![1], calls: [] });
  // Arguments given as a JSON string: the string is the arguments.
  assert.deepEqual(parse(1), { content: null, calls: [['get_weather', '{"city": "Rome"}']] });
  // The text before the call, as written.
  assert.deepEqual(parse(3), { content: 'Sure! ', calls: [['get_weather', '{"city": "Rome"}']] });
  // Names are the model's: the client answers a call to a tool it did not offer.
  assert.deepEqual(parse(4), { content: null, calls: [['launch_rockets', '{}']] });
});

test('prose is streamed as it comes; a call waits for the end; a closed block that does not parse releases all as content', () => {
  const p = new ToolStreamParser(H);
  const content = (ds: StreamDelta[]) => ds.map((d) => ('content' in d ? d.content : '')).join('');
  assert.equal(content(p.push('Sure! <to')), 'Sure! ');
  assert.equal(content(p.push('ol_call>\n{"name": "f", "arguments": {}}')), '');
  assert.deepEqual(p.push('\n</tool_call>'), []);
  assert.equal(content(p.push(' <tool_call>\nnot JSON\n</tool')), '');
  assert.equal(content(p.push('_call> and more')), '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call> <tool_call>\nnot JSON\n</tool_call> and more');
  assert.equal(content(p.push(' text')), ' text');
  assert.deepEqual(p.end(), []);
  assert.deepEqual(p.calls, []);
});

test('finish_reason with calls: "tool_calls" under auto and required, "stop" under a named function (as OpenAI), whole and streamed', () => {
  const out = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>';
  const tools = ['a', 'b'].map((name) => ({ type: 'function' as const, function: { name, parameters: { type: 'object' } } }));
  for (const [choice, want] of [['auto', 'tool_calls'], ['required', 'tool_calls'], [{ type: 'function', function: { name: 'a' } }, 'stop']] as const) {
    const plan = planTools({ tools, tool_choice: choice } as Parameters<typeof planTools>[0], undefined, 'hermes');
    const whole = toolMessage(out, 'stop', plan.format);
    assert.equal((whole.message.tool_calls as unknown[]).length, 1);
    assert.equal(whole.finishReason, want, JSON.stringify(choice));
    const s = streamed(plan.format!, [out]);
    assert.equal(s.calls.length, 1);
    assert.equal(s.finishReason, want, `streamed ${JSON.stringify(choice)}`);
    assert.equal(toolMessage(out, 'length', plan.format).finishReason, 'length', 'a max_tokens cut stays length');
  }
});
