/**
 * Reasoning outputs (plugin/reasoning.ts): the `<think>` split whole and streamed in every
 * chunking, the prompt-opened block (DeepSeek-R1), the auto setting, and over HTTP on the
 * scripted engine: chat (whole, streamed, include_reasoning false) and the Responses API
 * (reasoning item, reasoning_text events, the openai SDK reading them).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import express from 'express';
import OpenAI from 'openai';
import { openLora } from '../../plugin/index.ts';
import { promptOpensReasoning, ReasoningSplitter, reasoningEnabled, splitReasoning, type ReasoningPiece } from '../../plugin/reasoning.ts';
import { demoTokenizer, FakeAdapters, ScriptedEngine } from './fakes.ts';
import { listen, memoryLogger, post } from '../gateway/helpers.ts';

function joined(pieces: ReasoningPiece[]): { reasoning: string; content: string } {
  let reasoning = '';
  let content = '';
  for (const p of pieces) {
    if ('reasoning' in p) reasoning += p.reasoning;
    else content += p.content;
  }
  return { reasoning, content };
}

test('split: whole and streamed in every two-piece chunking agree', () => {
  const cases: Array<[string, boolean, string | null, string]> = [
    ['<think>\nplan it\n</think>\n\nThe answer.', false, '\nplan it\n', 'The answer.'],
    ['  <think>x</think>y', false, 'x', 'y'],
    ['No block at all.', false, null, 'No block at all.'],
    ['Say <think> later', false, null, 'Say <think> later'],
    ['still thinking</think>\n\nDone', true, 'still thinking', 'Done'],
    ['cut inside the block', true, 'cut inside the block', ''],
    ['<think>cut inside', false, 'cut inside', ''],
    ['<think></think>\n\nempty block', false, '', 'empty block'],
    ['<thin', false, null, '<thin'],
    ['<think>a</thi', false, 'a</thi', ''],
  ];
  for (const [text, inside, reasoning, content] of cases) {
    assert.deepEqual(splitReasoning(text, inside), { reasoning, content }, text);
    for (let i = 0; i <= text.length; i++) {
      const s = new ReasoningSplitter(inside);
      const got = joined([...s.push(text.slice(0, i)), ...s.push(text.slice(i)), ...s.end()]);
      assert.deepEqual(got, { reasoning: reasoning ?? '', content }, `${JSON.stringify(text)} cut at ${i}`);
    }
    // one character at a time
    const s = new ReasoningSplitter(inside);
    const pieces: ReasoningPiece[] = [];
    for (const ch of text) pieces.push(...s.push(ch));
    assert.deepEqual(joined([...pieces, ...s.end()]), { reasoning: reasoning ?? '', content }, `${JSON.stringify(text)} by characters`);
  }
});

test('the prompt-opened block and the auto setting', () => {
  assert.equal(promptOpensReasoning('<｜Assistant｜><think>\n'), true);
  assert.equal(promptOpensReasoning('<|im_start|>assistant\n<think>\n\n</think>\n\n'), false);
  assert.equal(promptOpensReasoning('<|im_start|>assistant\n'), false);
  const qwen3ish = "{% if enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}";
  assert.equal(reasoningEnabled('auto', qwen3ish), true);
  assert.equal(reasoningEnabled('auto', '{{ messages }}'), false);
  assert.equal(reasoningEnabled('auto', undefined), false);
  assert.equal(reasoningEnabled('none', qwen3ish), false);
  assert.equal(reasoningEnabled('think', '{{ messages }}'), true);
});

describeHttp();

function describeHttp(): void {
  let l: Awaited<ReturnType<typeof listen>>;
  let close: () => Promise<void>;
  before(async () => {
    const tokenizer = await demoTokenizer();
    const out = tokenizer.encode('<think>weigh it</think>\n\nGood morrow.', false);
    const engine = new ScriptedEngine(() => out, {});
    const router = openLora({
      logger: memoryLogger(),
      models: [{ name: 'tiny', engine: engine.asEngine(), tokenizer, adapters: new FakeAdapters('tiny'), reasoningParser: 'think' }],
    });
    const app = express();
    app.use(router);
    await router.ready;
    l = await listen(app);
    close = async () => {
      await router.close();
      await l.close();
    };
  });
  after(() => close?.());

  const chat = (extra: object = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], ...extra });

  test('chat: reasoning and reasoning_content apart from the answer, whole and streamed; include_reasoning false drops it', async () => {
    const whole = (await post(l.url + '/v1/chat/completions', chat())).body;
    const m = whole.choices[0].message;
    assert.equal(m.content, 'Good morrow.');
    assert.equal(m.reasoning, 'weigh it');
    assert.equal(m.reasoning_content, 'weigh it');

    const res = await fetch(l.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat({ stream: true })) });
    const deltas = (await res.text())
      .split('\n\n')
      .filter((b) => b.startsWith('data: {'))
      .map((b) => JSON.parse(b.slice(6)).choices[0]?.delta ?? {});
    const reasoning = deltas.map((d) => d.reasoning ?? '').join('');
    const content = deltas.map((d) => d.content ?? '').join('');
    assert.equal(reasoning, 'weigh it');
    assert.equal(deltas.map((d) => d.reasoning_content ?? '').join(''), 'weigh it');
    assert.equal(content, 'Good morrow.');
    const lastReasoning = deltas.length - 1 - [...deltas].reverse().findIndex((d: { reasoning?: string }) => d.reasoning);
    const firstContent = deltas.findIndex((d) => d.content);
    assert.ok(lastReasoning < firstContent, 'the reasoning comes before the answer');

    const hidden = (await post(l.url + '/v1/chat/completions', chat({ include_reasoning: false }))).body.choices[0].message;
    assert.equal(hidden.content, 'Good morrow.');
    assert.equal(hidden.reasoning, null);
  });

  test('logprobs cover the answer only, whole and streamed; a reply cut inside the block has null content', async () => {
    const whole = (await post(l.url + '/v1/chat/completions', chat({ logprobs: true, include_reasoning: false }))).body.choices[0];
    const text = whole.logprobs.content.map((t: { token: string }) => t.token).join('');
    assert.ok(text.startsWith('Good morrow.'), text);
    const res = await fetch(l.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat({ stream: true, logprobs: true })) });
    const streamed = (await res.text())
      .split('\n\n')
      .filter((b) => b.startsWith('data: {'))
      .flatMap((b) => (JSON.parse(b.slice(6)).choices[0]?.logprobs?.content ?? []) as Array<{ token: string }>)
      .map((t) => t.token)
      .join('');
    assert.ok(streamed.startsWith('Good morrow.') || streamed.startsWith('\n\nGood morrow.') || streamed.startsWith('</think>'), streamed);
    assert.ok(!streamed.includes('weigh'), streamed);
    const resp = (await post(l.url + '/v1/responses', { model: 'tiny', input: 'x', top_logprobs: 1 })).body;
    const lp = resp.output[1].content[0].logprobs.map((t: { token: string }) => t.token).join('');
    assert.ok(lp.startsWith('Good morrow.'), lp);

    const cut = (await post(l.url + '/v1/chat/completions', chat({ max_tokens: 7 }))).body.choices[0];  // '<think>weigh'
    assert.equal(cut.finish_reason, 'length');
    assert.equal(cut.message.content, null);
    assert.ok(cut.message.reasoning.length > 0);
    const cutResp = (await post(l.url + '/v1/responses', { model: 'tiny', input: 'x', max_output_tokens: 7 })).body;
    assert.deepEqual(cutResp.output.map((o: { type: string; status: string }) => [o.type, o.status]), [['reasoning', 'incomplete']]);
  });

  test('Responses: a reasoning item before the message, reasoning_text events, the SDK reads both', async () => {
    const r = (await post(l.url + '/v1/responses', { model: 'tiny', input: 'x' })).body;
    assert.deepEqual(
      r.output.map((o: { type: string }) => o.type),
      ['reasoning', 'message'],
    );
    assert.deepEqual(r.output[0].content, [{ type: 'reasoning_text', text: 'weigh it' }]);
    assert.equal(r.output[1].content[0].text, 'Good morrow.');

    const client = new OpenAI({ baseURL: l.url + '/v1', apiKey: 'x' });
    const stream = client.responses.stream({ model: 'tiny', input: 'x' });
    let thought = '';
    stream.on('response.reasoning_text.delta', (e) => (thought += e.delta));
    const final = await stream.finalResponse();
    assert.equal(thought, 'weigh it');
    assert.equal(final.output_text, 'Good morrow.');
    const item = final.output[0]!;
    assert.equal(item.type, 'reasoning');
    assert.deepEqual(item.type === 'reasoning' ? item.content : null, [{ type: 'reasoning_text', text: 'weigh it' }]);
  });
}
