/**
 * Acceptance (issue 5): compositions over HTTP against the PyTorch reference.
 * - `cat` by model name matches the reference's cat_* entries (greedy text, first-token
 *   logprobs within 1e-3), served in one batch with single-adapter and base requests;
 * - `ensemble` matches the reference mixture distribution within 1e-4;
 * - a named composition works from the openai SDK and LangChain with no extra fields.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { materializeMerge } from '../../adapters/merge/materialize.ts';
import OpenAI from 'openai';
import { ChatOpenAI } from '@langchain/openai';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

const ref = JSON.parse(readFileSync(new URL('../fixtures/tiny-shakespeare/reference.json', import.meta.url), 'utf8'));
const BASE = 'tiny-shakespeare';

let srv: RunningServer;
before(async () => {
  srv = await startDemo({
    compositions: {
      duet: { base: BASE, adapters: [{ name: 'shout', weight: 0.5 }, { name: 'whisper', weight: 0.5 }] },
      chorus: { base: BASE, adapters: [{ name: 'shout', weight: 0.5 }, { name: 'whisper', weight: 0.5 }], merge: { strategy: 'ensemble' } },
    },
  });
});
after(async () => {
  await srv?.close();
});

/** Greedy completion of a fixture prompt (token ids) with first-token top-5 logprobs. */
function complete(prompt: any, body: Record<string, unknown>, maxTokens = ref.greedy_new_tokens) {
  return postJson(srv.url, '/completions', { prompt: prompt.input_ids, temperature: 0, max_tokens: maxTokens, logprobs: 5, ...body });
}

test('cat compositions by model name match the reference, batched with single-adapter and base requests', async (t) => {
  const cases: Array<[string, string]> = [
    ['cat_shout0.5_whisper0.5', `${BASE}:shout@0.5+whisper@0.5`],
    ['cat_shout1.0_romeo0.7', `${BASE}:shout@1.0+romeo@0.7`],
    ['shout', `${BASE}:shout`],
    ['romeo', `${BASE}:romeo`],
    ['base', BASE],
  ];
  const jobs = ref.prompts.flatMap((prompt: any) =>
    cases.map(async ([config, model]) => ({ prompt, config, r: await complete(prompt, { model }) })),
  );
  let maxErr = 0;
  let compared = 0;
  for (const { prompt, config, r } of await Promise.all(jobs)) {
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const g = prompt.results[config].greedy;
    // First generated token: top-5 logprobs equal log_softmax(last_logits) within 1e-3.
    const top: Record<string, number> = r.body.choices[0].logprobs.top_logprobs[0];
    const want = g.steps[0].top5 as Array<[number, number]>;
    const got = Object.values(top).sort((a, b) => b - a);
    want.forEach(([, lp], i) => (maxErr = Math.max(maxErr, Math.abs(lp - got[i]!))));
    const tieAt = g.steps.findIndex((s: { margin: number }) => s.margin < 1e-3);
    const stop = g.stop_index ?? g.tokens.length;
    if (tieAt !== -1 && tieAt < stop) continue;
    assert.equal(r.body.choices[0].text, g.text_until_stop, `${prompt.id} ${config}`);
    compared++;
  }
  t.diagnostic(`greedy texts compared: ${compared}; max first-token logprob error ${maxErr.toExponential(2)}`);
  assert.ok(maxErr < 1e-3, `max logprob error ${maxErr}`);
  assert.ok(compared >= 24);
});

test('ensemble shout@0.5 + whisper@0.5 matches the reference mixture within 1e-4', async (t) => {
  let maxErr = 0;
  for (const prompt of ref.prompts) {
    const c = await complete(prompt, {
      model: BASE,
      adapters: [
        { name: 'shout', weight: 0.5 },
        { name: 'whisper', weight: 0.5 },
      ],
      merge: { strategy: 'ensemble' },
    }, 1);
    assert.equal(c.status, 200, JSON.stringify(c.body));
    const lp = c.body.choices[0].logprobs;
    const probs: number[] = prompt.ensemble.last_probs;
    const sorted = [...probs].map((p, id) => [id, p] as const).sort((a, b) => b[1] - a[1]);
    const got = Object.values(lp.top_logprobs[0] as Record<string, number>).map(Math.exp).sort((a, b) => b - a);
    sorted.slice(0, got.length).forEach(([, p], i) => (maxErr = Math.max(maxErr, Math.abs(p - got[i]!))));
    if (prompt.ensemble.prob_margin >= 1e-4) {
      const chosen = Math.exp(lp.token_logprobs[0]);
      assert.ok(Math.abs(chosen - sorted[0]![1]) < 1e-4, `${prompt.id}: greedy must pick the mixture's argmax (p ${chosen} vs ${sorted[0]![1]})`);
    }
  }
  t.diagnostic(`max |p - p_ref| over the top-5 of 6 prompts: ${maxErr.toExponential(2)}`);
  assert.ok(maxErr < 1e-4, `max probability error ${maxErr}`);
});

test('named compositions are listed and work from the openai SDK and LangChain with no extra fields', async () => {
  const client = new OpenAI({ baseURL: srv.url, apiKey: 'x' });
  const ids = (await client.models.list()).data.map((m) => m.id);
  assert.ok(ids.includes('duet') && ids.includes('chorus'), ids.join(','));
  for (const model of ['duet', 'chorus']) {
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'ROMEO:\nSpeak again.' }],
      max_tokens: 16,
      temperature: 0,
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) {
      assert.equal(chunk.model, model);
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    assert.ok(text.length > 0, `${model}: empty stream`);
    const llm = new ChatOpenAI({ model, apiKey: 'x', configuration: { baseURL: srv.url }, temperature: 0, maxTokens: 16 });
    const msg = await llm.invoke('ROMEO:\nSpeak again.');
    assert.equal(msg.content, text, `${model}: LangChain and the SDK agree (greedy)`);
  }
});

test('materialised merges over HTTP equal the same merge applied offline and loaded as a plain adapter', async (t) => {
  const { engine, adapters } = srv.openlora.models.get(BASE)!;
  const dirOf = (name: string) => adapters.get(name)!.dir;
  const merges = [
    { strategy: 'ties', density: 0.5, members: [['whisper', 0.5], ['romeo', 0.7]] },
    { strategy: 'dare_linear', density: 0.7, seed: 3, members: [['whisper', 1.0], ['romeo', 0.5]] },
    { strategy: 'magnitude_prune', density: 0.6, members: [['romeo', 1.0], ['whisper', 0.4]] },
  ] as const;
  const tmp = mkdtempSync(path.join(tmpdir(), 'openlora-merge-'));
  for (const m of merges) {
    const offline = `offline-${m.strategy}`;
    await materializeMerge(
      {
        adapters: m.members.map(([name, weight]) => ({ dir: dirOf(name), name, weight })),
        strategy: m.strategy,
        density: m.density,
        seed: 'seed' in m ? m.seed : undefined,
      },
      engine.info(),
      path.join(tmp, offline),
    );
    await adapters.register(offline, path.join(tmp, offline));
    const merge = { strategy: m.strategy, density: m.density, ...('seed' in m ? { seed: m.seed } : {}) };
    for (const prompt of ref.prompts.slice(0, 3)) {
      const online = await complete(prompt, { model: BASE, adapters: m.members.map(([name, weight]) => ({ name, weight })), merge }, 24);
      const plain = await complete(prompt, { model: `${BASE}:${offline}` }, 24);
      assert.equal(online.status, 200, JSON.stringify(online.body));
      assert.equal(plain.status, 200, JSON.stringify(plain.body));
      assert.equal(online.body.choices[0].text, plain.body.choices[0].text, `${m.strategy} ${prompt.id}`);
      const base = await complete(prompt, { model: BASE }, 24);
      t.diagnostic(`${m.strategy} ${prompt.id}: ${JSON.stringify(online.body.choices[0].text.slice(0, 40))} (base ${JSON.stringify(base.body.choices[0].text.slice(0, 20))})`);
    }
  }
  // One merge computation per canonical spec, however many requests used it.
  assert.equal(adapters.merges.computed, merges.length);
  // The synthetic merge adapters are reached through their composition only: naming one is a 404.
  const hidden = adapters.list().filter((a) => a.synthetic).map((a) => a.name);
  assert.equal(hidden.length, merges.length);
  const direct = await complete(ref.prompts[0]!, { model: `${BASE}:${hidden[0]}` }, 4);
  assert.equal(direct.status, 404, JSON.stringify(direct.body));
  const alias = await complete(ref.prompts[0]!, { model: hidden[0] }, 4);
  assert.equal(alias.status, 404, JSON.stringify(alias.body));
});

test('a merge refused as a client error (unequal ranks) is remembered: the repeat gets the same 400 without a new computation', async () => {
  const { adapters } = srv.openlora.models.get(BASE)!;
  const body = { model: BASE, adapters: [{ name: 'shout', weight: 0.5 }, { name: 'whisper', weight: 0.5 }], merge: { strategy: 'ties', density: 0.3 } };
  const prompt = ref.prompts[0]!;
  const before = adapters.merges.refusedFromMemory;
  const first = await complete(prompt, body, 4);
  const again = await complete(prompt, body, 4);
  assert.equal(first.status, 400, JSON.stringify(first.body));
  assert.match(first.body.error.message, /adapters\[1\] \(whisper\) has rank 8 but adapters\[0\] \(shout\) has rank 16/);
  assert.equal(again.status, 400);
  assert.equal(again.body.error.message, first.body.error.message);
  assert.equal(adapters.merges.refusedFromMemory, before + 1);
});
