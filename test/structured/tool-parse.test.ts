import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelEntrySchema } from '../../config/schema.ts';
import { detectToolFormat, FORMATS, TOOL_FORMATS } from '../../plugin/tools/format.ts';
import { parseToolCalls } from '../../plugin/tools/parse.ts';
import { ToolStreamParser, type StreamDelta } from '../../plugin/tools/stream.ts';
import { loadTestTokenizer } from './helpers.ts';

const H = FORMATS.hermes;
const L = FORMATS.llama3_json;
const M = FORMATS.mistral;

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
  ['hermes prose then two calls', H, 'Let me check.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x": "y\\"z"}}\n</tool_call>', { content: 'Let me check.', calls: [['a', {}], ['b', { x: 'y"z' }]] }],
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
    const splits: string[][] = [[...text]];
    for (let i = 1; i < text.length; i++) splits.push([text.slice(0, i), text.slice(i)]);
    for (const pieces of splits) {
      const p = new ToolStreamParser(format);
      const deltas: StreamDelta[] = [];
      for (const piece of pieces) deltas.push(...p.push(piece));
      deltas.push(...p.end());
      const content = deltas.filter((d) => 'content' in d).map((d) => (d as { content: string }).content).join('');
      const calls: Array<{ id?: string; name: string; args: string }> = [];
      for (const d of deltas) {
        if (!('toolCall' in d)) continue;
        const tc = d.toolCall;
        if (tc.id) {
          assert.equal(tc.index, calls.length, 'a new call has the next index');
          assert.ok(tc.function.name, 'the name comes with the id');
          calls.push({ id: tc.id, name: tc.function.name, args: tc.function.arguments ?? '' });
        } else {
          assert.equal(tc.function.name, undefined, 'the name is sent once');
          calls[tc.index]!.args += tc.function.arguments ?? '';
        }
      }
      assert.equal(content.trim() === '' ? null : content.trim(), want.content, `content, pieces ${JSON.stringify(pieces)}`);
      assert.deepEqual(calls.map((c) => [c.name, JSON.parse(c.args)]), want.calls, `calls, pieces ${JSON.stringify(pieces)}`);
      assert.deepEqual(p.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), want.calls);
      assert.deepEqual(p.calls.map((c) => c.id), calls.map((c) => c.id));
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
  const streamed = (text: string) => {
    const p = new ToolStreamParser(H);
    p.push(text);
    p.end();
    return p.calls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]);
  };
  for (const tail of ['', '\n', '\n</tool', '\n</tool_call']) {
    const text = `<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}${tail}`;
    assert.deepEqual(parseToolCalls(text, H, true).toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [['get_weather', { city: 'Rome' }]], JSON.stringify(tail));
    assert.deepEqual(streamed(text), [['get_weather', { city: 'Rome' }]], JSON.stringify(tail));
  }
  // Cut inside the arguments (a stop string, max_tokens): neither side counts a call.
  const cut = '<tool_call>\n{"name": "get_weather", "arguments": {"city';
  assert.deepEqual(parseToolCalls(cut, H).toolCalls, []);
  assert.deepEqual(streamed(cut), []);
});

test('arguments are the generated text itself: integers past 2^53 keep their digits, streamed or not, without leading spaces', () => {
  const text = '<tool_call>\n{"name": "add", "arguments": {"a": 3333533333343353333, "b": -33332333333333933332033333}}\n</tool_call>';
  const want = '{"a": 3333533333343353333, "b": -33332333333333933332033333}';
  assert.equal(parseToolCalls(text, H).toolCalls[0]!.function.arguments, want);
  const p = new ToolStreamParser(H);
  let args = '';
  for (const piece of ['<tool_call>\n{"name": "add", "arguments":', ' ', '{"a": 3333533333343353333, ', '"b": -33332333333333933332033333}}\n</tool_call>']) {
    for (const d of p.push(piece)) if ('toolCall' in d) args += d.toolCall.function.arguments ?? '';
  }
  p.end();
  assert.equal(args, want);
  assert.equal(p.calls[0]!.function.arguments, want);
  // Keys in another order (the stream parses the finished object) and Llama's JSON form.
  const late = '<tool_call>\n{"arguments": {"n": 12345678901234567890}, "name": "f"}\n</tool_call>';
  assert.equal(parseToolCalls(late, H).toolCalls[0]!.function.arguments, '{"n": 12345678901234567890}');
  assert.equal(parseToolCalls('{"name": "f", "parameters": {"n": 12345678901234567890}}', L).toolCalls[0]!.function.arguments, '{"n": 12345678901234567890}');
});

test('cut by max_tokens: a first call cut short leaves only the prose before it; a cut-off tag after a call is not content (streamed or not)', () => {
  const r = parseToolCalls('Let me check.\n<tool_call>\n{"n', H, true);
  assert.deepEqual(r.toolCalls, []);
  assert.equal(r.content, 'Let me check.');
  assert.equal(parseToolCalls('<tool_call>\n{"n', H, true).content, null);
  const after = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n<t';
  assert.equal(parseToolCalls(after, H, true).content, null);
  const p = new ToolStreamParser(H);
  const deltas = [...p.push(after), ...p.end()];
  assert.deepEqual(deltas.filter((d) => 'content' in d), []);
  assert.equal(p.calls.length, 1);
});
