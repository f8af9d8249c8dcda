/**
 * A Gemma3ForConditionalGeneration checkpoint (the gemma3 family fixture saved as Gemma 3 4B's
 * architecture, test/native/gemma3-multimodal-fixture.ts) served over HTTP: one chat request
 * through the model's chat template with an adapter trained with all-linear (vision-tower LoRA
 * tensors and target entries, ignored) answers the text fixture's reference continuation;
 * /v1/models gives the architecture.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { RunningServer } from '../../examples/server.ts';
import { tokenDisplay } from '../../plugin/token-bytes.ts';
import { loadTokenizer, type ModelTokenizer } from '../../plugin/tokenizer.ts';
import { get } from '../gateway/helpers.ts';
import type { Fixture } from '../native/family-fixtures.ts';
import { GEMMA3_MM_ARCH, materializeGemma3Multimodal } from '../native/gemma3-multimodal-fixture.ts';
import { postJson, startDemo } from './server.ts';

const TOL = 1e-3;

describe(`${GEMMA3_MM_ARCH} over HTTP`, () => {
  let fx: Fixture;
  let srv: RunningServer;
  let tok: ModelTokenizer;

  before(async () => {
    fx = materializeGemma3Multimodal('model.language_model');
    tok = await loadTokenizer(fx.modelDir);
    srv = await startDemo({ engine: { threads: 2, maxLoraRank: 16 }, models: [{ name: 'gemma3-4b', path: fx.modelDir, adapterDirs: [fx.adaptersDir] }] });
  });
  after(async () => {
    await srv?.close();
    fx?.dispose();
  });

  test('a chat request with an all-linear adapter gives the reference continuation', async () => {
    const chat = fx.ref.prompts.find((p) => p.kind === 'chat')!;
    assert.deepEqual(tok.encodeChat(chat.messages!), chat.input_ids, 'the chat template renders the reference prompt');
    const n = fx.ref.greedy_new_tokens;
    const r = await postJson(srv.url, '/chat/completions', {
      model: 'gemma3-4b:all', messages: chat.messages, max_tokens: n, temperature: 0, logprobs: true, top_logprobs: 1,
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const choice = r.body.choices[0];
    const got: string[] = choice.logprobs.content.map((x: { token: string }) => x.token);
    const want: string[] = [];
    for (const s of chat.results.all!.greedy.steps) {
      if (s.margin < TOL) break;
      want.push(tokenDisplay(tok.tokenBytes(s.token)));
    }
    const k = Math.min(got.length, want.length);
    assert.ok(k >= 4, `only ${k} tokens compared`);
    assert.deepEqual(got.slice(0, k), want.slice(0, k));
    if (got.length < want.length) assert.equal(choice.finish_reason, 'stop');
    assert.ok(Math.abs(choice.logprobs.content[0].logprob - chat.results.all!.greedy.steps[0]!.logprob) < TOL);
  });

  test('/v1/models gives the architecture and lists it as supported', async () => {
    const r = await get(`${srv.url}/models`);
    assert.equal(r.status, 200);
    const base = r.body.data.find((m: { id: string }) => m.id === 'gemma3-4b');
    assert.equal(base.openlora.architecture, GEMMA3_MM_ARCH);
    assert.ok(r.body.openlora.supported_architectures.includes(GEMMA3_MM_ARCH));
    const adapter = r.body.data.find((m: { id: string }) => m.id === 'gemma3-4b:all');
    assert.ok(adapter, 'the adapter with vision-tower tensors is registered');
  });
});
