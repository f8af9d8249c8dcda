import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvalidRequestError } from '../../plugin/errors.ts';
import { GrammarService } from '../../plugin/structured/service.ts';
import { detectToolFormat, FORMATS } from '../../plugin/tools/format.ts';
import { toolCallGrammar, type FunctionTool } from '../../plugin/tools/grammar.ts';
import { parseToolCalls } from '../../plugin/tools/parse.ts';
import { ModelTokenizer, type ChatMessage } from '../../plugin/tokenizer.ts';
import { loadTestTokenizer, randomWalk, tokenizerFiles } from './helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const template = (name: string): string => readFileSync(path.join(here, '../fixtures/templates', name), 'utf8');

const TOOLS: FunctionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather of a city',
      parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 6 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
    },
  },
  { type: 'function', function: { name: 'add', parameters: { type: 'object', properties: { a: { type: 'integer', minimum: 0, maximum: 9 }, b: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['a', 'b'], additionalProperties: false } } },
];

const HISTORY: ChatMessage[] = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"c"}' } }] },
  { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
];

test('tools and tool history go through the model template (Qwen3 Hermes format), not flattened', () => {
  const tok = loadTestTokenizer('qwen3');
  const text = tok.renderChat(HISTORY, TOOLS);
  assert.match(text, /<tools>\n\{"type": "function", "function": \{"name": "get_weather"/);
  assert.match(text, /<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris", "unit": "c"\}\}\n<\/tool_call>/);
  assert.match(text, /<\|im_start\|>user\n<tool_response>\n\{"temp": 21\}\n<\/tool_response><\|im_end\|>/);
  assert.ok(text.endsWith('<|im_start|>assistant\n'));
});

test('Llama 3.1-style and Mistral-style templates: detected format, history round-trips', () => {
  for (const [file, fmt, call, result] of [
    ['llama31-tools.jinja', 'llama3_json', '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "unit": "c"}}', '<|start_header_id|>ipython<|end_header_id|>\n\n{"temp": 21}'],
    ['mistral-tools.jinja', 'mistral', '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}, "id": "call_1"}]', '[TOOL_RESULTS]{"call_id": "call_1", "content": "{\\"temp\\": 21}"}'],
  ] as const) {
    const files = tokenizerFiles('llama3');
    const tok = new ModelTokenizer({ ...files, tokenizerConfig: { ...files.tokenizerConfig, chat_template: template(file) } });
    assert.equal(detectToolFormat(tok.chatTemplate)?.name, fmt);
    const text = tok.renderChat(HISTORY, TOOLS);
    assert.ok(text.includes(call), `${file}: ${text}`);
    assert.ok(text.includes(result), `${file}: ${text}`);
  }
});

let svc: GrammarService;
let tok: ModelTokenizer;
before(async () => {
  tok = loadTestTokenizer('demo');
  svc = new GrammarService(tok.grammarVocab());
  await svc.ready;
});
after(() => svc.dispose());

test('required / named tool choice: every random walk is calls to allowed tools with valid arguments, in each format', async () => {
  const { Ajv2020 } = await import('ajv/dist/2020.js');
  const validators = Object.fromEntries(TOOLS.map((t) => [t.function.name, new Ajv2020().compile(t.function.parameters!)]));
  const vs = tok.grammarVocab().vocabSize;
  for (const format of Object.values(FORMATS)) {
    for (const [names, parallel] of [[['get_weather', 'add'], true], [['add'], false]] as const) {
      const spec = toolCallGrammar(TOOLS, [...names], parallel, format);
      for (let seed = 1; seed <= 5; seed++) {
        const sg = await svc.open(spec);
        const { ids, finished } = await randomWalk(sg, vs, tok.stopTokenIds, seed, 1500);
        sg.close();
        assert.ok(finished, `${format.name} seed ${seed}: ${JSON.stringify(tok.decode(ids))}`);
        const text = tok.decode(ids);
        const parsed = parseToolCalls(text, format);
        assert.ok(parsed.toolCalls.length >= 1, `${format.name}: ${text}`);
        if (!parallel) assert.equal(parsed.toolCalls.length, 1);
        for (const c of parsed.toolCalls) {
          assert.ok((names as readonly string[]).includes(c.function.name));
          assert.ok(validators[c.function.name]!(JSON.parse(c.function.arguments)), `${format.name}: ${text}`);
        }
      }
    }
  }
});

test('a tool whose parameters use an unenforceable keyword is a 400 naming it', () => {
  const bad: FunctionTool[] = [TOOLS[0]!, { type: 'function', function: { name: 'x', parameters: { type: 'object', properties: { n: { type: 'number', minimum: 0 } } } } }];
  assert.throws(() => toolCallGrammar(bad, ['x'], false, FORMATS.hermes), (e: unknown) => e instanceof InvalidRequestError && e.param === 'tools[1].function.parameters');
});
