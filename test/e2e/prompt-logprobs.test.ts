/**
 * Completions with `echo` and `logprobs` (prompt logprobs) over HTTP, the requests
 * lm-evaluation-harness sends for loglikelihood tasks (`local-completions`: token-id prompts in a
 * batch, `echo: true, logprobs: 1, max_tokens: 1, temperature: 0`), against the PyTorch reference:
 * - a prompt extended by its reference greedy token scores that token at log_softmax of the
 *   reference's last logits (within 1e-3), and each position's most likely token is the
 *   reference's argmax where its margin allows;
 * - the echoed prompt's entries lead the choice's logprobs (null for the first token), followed
 *   by the generated token's, text offsets ascending over the tokens' texts;
 * - each top_logprobs entry holds the top k and the token itself; streamed, the opening chunk
 *   carries the prompt's logprobs; max_tokens 0 scores the prompt alone (a whole context of it);
 *   an ensemble is refused (400, `echo`); vLLM's `prompt_logprobs` field gives the same scoring
 *   with ranks (completions per choice, chat at the top level), not with `stream`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

const ref = JSON.parse(readFileSync(new URL('../fixtures/tiny-shakespeare/reference.json', import.meta.url), 'utf8'));
const BASE = 'tiny-shakespeare';
const TOL = 1e-3;

let srv: RunningServer;
before(async () => {
  srv = await startDemo({
    compositions: { chorus: { base: BASE, adapters: [{ name: 'shout', weight: 0.5 }, { name: 'whisper', weight: 0.5 }], merge: { strategy: 'ensemble' } } },
  });
});
after(async () => {
  await srv?.close();
});

function logsumexp(v: number[]): number {
  const m = Math.max(...v);
  return m + Math.log(v.reduce((s, x) => s + Math.exp(x - m), 0));
}

for (const config of ['base', 'shout', 'cat_shout0.5_whisper0.5']) {
  const model = config === 'base' ? BASE : config === 'shout' ? `${BASE}:shout` : `${BASE}:shout@0.5+whisper@0.5`;
  test(`lm-eval loglikelihood requests score the prompt like the reference [${config}]`, async () => {
    // Each prompt extended by its reference greedy token: the extension's logprob is known exactly.
    const prompts = ref.prompts.map((p: any) => [...p.input_ids, p.results[config].greedy.tokens[0]]);
    const r = await postJson(srv.url, '/completions', { model, prompt: prompts, echo: true, logprobs: 1, max_tokens: 1, temperature: 0, seed: 1234 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.choices.length, prompts.length);
    for (const choice of r.body.choices) {
      const p = ref.prompts[choice.index];
      const res = p.results[config];
      const ids: number[] = prompts[choice.index];
      const lp = choice.logprobs;
      assert.equal(lp.tokens.length, ids.length + 1, `${p.id}: the prompt's tokens and the generated one`);
      assert.equal(lp.token_logprobs[0], null);
      assert.equal(lp.top_logprobs[0], null);
      for (let i = 1; i < lp.text_offset.length; i++) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1], 'text offsets ascend');
      assert.equal(lp.text_offset[1], lp.tokens[0].length);
      // The extension token (the last prompt token) against the reference's last-position distribution.
      const expect = res.last_logits[res.greedy.tokens[0]] - res.last_logsumexp;
      assert.ok(Math.abs(lp.token_logprobs[ids.length - 1] - expect) < TOL, `${p.id}: ${lp.token_logprobs[ids.length - 1]} vs ${expect}`);
      assert.ok(Math.abs(expect - (res.last_logits[res.greedy.tokens[0]] - logsumexp(res.last_logits))) < 1e-4);
      // lm-eval's is_greedy: the scored token is its position's most likely one where the reference says so.
      for (let i = 1; i < ids.length - 1; i++) {
        if (res.position_margins[i - 1] < TOL) continue;
        // The top 1 and the token itself (OpenAI's "up to logprobs + 1" entries).
        const top = lp.top_logprobs[i] as Record<string, number>;
        const greedyHere = res.argmax[i - 1] === ids[i];
        assert.equal(Object.keys(top).length, greedyHere ? 1 : 2, `${p.id} position ${i}`);
        assert.equal(top[lp.tokens[i]], lp.token_logprobs[i]);
        assert.equal(lp.token_logprobs[i] === Math.max(...Object.values(top)), greedyHere, `${p.id} position ${i}: greedy ${greedyHere}`);
      }
      // The generated token follows with its own entries, continuing the text offsets.
      assert.equal(typeof lp.token_logprobs[ids.length], 'number');
      assert.equal(lp.text_offset[ids.length], lp.text_offset[ids.length - 1] + lp.tokens[ids.length - 1].length);
      assert.ok(choice.text.length > 0);
    }
  });
}

test('the greedy one-token lm-eval request takes its token from the scoring (no sequence runs): the same answer as a sequence gives', async () => {
  const engine = srv.openlora.models.get(BASE)!.engine;
  const prompts = ref.prompts.map((p: any) => p.input_ids);
  for (const model of [BASE, `${BASE}:shout`]) {
    const body = { model, prompt: prompts, echo: true, logprobs: 3, max_tokens: 1 };
    const steps = engine.stats().steps;
    const fast = await postJson(srv.url, '/completions', { ...body, temperature: 0 });
    assert.equal(fast.status, 200, JSON.stringify(fast.body));
    assert.equal(engine.stats().steps, steps, 'no generation step ran');
    // top_k 1 at a temperature keeps the sampler: the same greedy token through a sequence
    const slow = await postJson(srv.url, '/completions', { ...body, temperature: 0.7, top_k: 1 });
    assert.ok(engine.stats().steps > steps);
    assert.equal(fast.body.usage.completion_tokens, prompts.length);
    for (const [i, f] of fast.body.choices.entries()) {
      const s = slow.body.choices[i];
      assert.equal(f.text, s.text, `${model} prompt ${i}`);
      assert.equal(f.finish_reason, s.finish_reason);
      const n = f.logprobs.tokens.length;
      assert.equal(f.logprobs.tokens[n - 1], s.logprobs.tokens[n - 1]);
      assert.ok(Math.abs(f.logprobs.token_logprobs[n - 1] - s.logprobs.token_logprobs[n - 1]) < 1e-4, `${f.logprobs.token_logprobs[n - 1]} vs ${s.logprobs.token_logprobs[n - 1]}`);
      assert.deepEqual(Object.keys(f.logprobs.top_logprobs[n - 1]).sort(), Object.keys(s.logprobs.top_logprobs[n - 1]).sort());
      assert.equal(f.logprobs.tokens.length, prompts[i].length + 1);
    }
  }
  // anything that changes the logits first keeps the sequence (logit_bias here)
  const steps = engine.stats().steps;
  await postJson(srv.url, '/completions', { model: BASE, prompt: prompts[0], echo: true, logprobs: 1, max_tokens: 1, temperature: 0, logit_bias: { '5': 1 } });
  assert.ok(engine.stats().steps > steps);
});

test('streamed echo with logprobs: the opening chunk carries the prompt logprobs, a string prompt starts at BOS', async () => {
  const res = await fetch(`${srv.url}/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: `${BASE}:whisper`, prompt: 'ROMEO:\nBut soft', echo: true, logprobs: 2, max_tokens: 3, temperature: 0, stream: true }),
  });
  assert.equal(res.status, 200);
  const chunks = (await res.text())
    .split('\n\n')
    .map((e) => e.replace(/^data: /, '').trim())
    .filter((e) => e && e !== '[DONE]')
    .map((e) => JSON.parse(e));
  const opening = chunks[0].choices[0];
  assert.equal(opening.text, 'ROMEO:\nBut soft');
  const lp = opening.logprobs;
  assert.ok(lp.tokens.length >= 3);
  assert.equal(lp.token_logprobs[0], null, 'BOS has no logprob');
  for (let i = 1; i < lp.tokens.length; i++) {
    assert.ok(lp.token_logprobs[i] <= 0);
    assert.ok([2, 3].includes(Object.keys(lp.top_logprobs[i]).length), 'the top 2 and the token itself');
    assert.equal(lp.top_logprobs[i][lp.tokens[i]], lp.token_logprobs[i]);
  }
  const end = lp.text_offset.at(-1) + lp.tokens.at(-1).length;
  const next = chunks.slice(1).find((c) => c.choices[0]?.logprobs);
  assert.equal(next.choices[0].logprobs.text_offset[0], end, 'generated offsets continue after the prompt');
});

test('echo with logprobs for an ensemble is refused naming echo; echo alone and logprobs alone still work', async () => {
  const bad = await postJson(srv.url, '/completions', { model: 'chorus', prompt: [5, 6, 7], echo: true, logprobs: 1, max_tokens: 1 });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.param, 'echo');
  assert.match(bad.body.error.message, /ensemble/);
  const echoOnly = await postJson(srv.url, '/completions', { model: 'chorus', prompt: [5, 6, 7], echo: true, max_tokens: 1 });
  assert.equal(echoOnly.status, 200);
  assert.equal(echoOnly.body.choices[0].logprobs, null);
});

test('max_tokens 0 with echo scores the prompt alone (vLLM); without echo it is a 400 naming max_tokens', async () => {
  const ids = ref.prompts[1].input_ids;
  for (const stream of [false, true]) {
    const body = { model: `${BASE}:romeo`, prompt: ids, echo: true, logprobs: 0, max_tokens: 0, stream };
    if (!stream) {
      const r = await postJson(srv.url, '/completions', body);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const c = r.body.choices[0];
      assert.equal(c.finish_reason, 'length');
      assert.equal(c.logprobs.tokens.length, ids.length);
      // logprobs 0: each entry is the token itself alone.
      c.logprobs.top_logprobs.slice(1).forEach((top: Record<string, number>, j: number) => {
        assert.deepEqual(top, { [c.logprobs.tokens[j + 1]]: c.logprobs.token_logprobs[j + 1] });
      });
      assert.deepEqual(r.body.usage, { prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length });
      assert.ok(c.logprobs.tokens.join('').endsWith(c.text), 'the echoed text is the scored tokens (a BOS shows only in the tokens)');
    } else {
      const res = await fetch(`${srv.url}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.match(text, /"finish_reason":"length"/);
      assert.match(text, /data: \[DONE\]/);
    }
  }
  const bad = await postJson(srv.url, '/completions', { model: BASE, prompt: ids, max_tokens: 0 });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.param, 'max_tokens');
  // A prompt filling the whole context can be scored (max_tokens 0 needs no room after it); one more token cannot.
  const models = await (await fetch(`${srv.url}/models`)).json();
  const context: number = models.data.find((m: any) => m.id === BASE).max_model_len;
  const full = Array.from({ length: context }, (_, i) => 1 + ((i * 31) % 900));
  const whole = await postJson(srv.url, '/completions', { model: BASE, prompt: full, echo: true, logprobs: 1, max_tokens: 0 });
  assert.equal(whole.status, 200, JSON.stringify(whole.body));
  assert.equal(whole.body.choices[0].logprobs.tokens.length, context);
  const over = await postJson(srv.url, '/completions', { model: BASE, prompt: full, echo: true, logprobs: 1, max_tokens: 1 });
  assert.equal(over.status, 400);
  assert.equal(over.body.error.code, 'context_length_exceeded');
});

test('a client leaving mid-scoring cancels it: the engine is free again at once, nothing stays running', async () => {
  const prompts = Array.from({ length: 48 }, (_, p) => Array.from({ length: 500 }, (_, i) => 1 + ((p * 11 + i * 17) % 1000)));
  const body = JSON.stringify({ model: `${BASE}:shout`, prompt: prompts, echo: true, logprobs: 1, max_tokens: 0 });
  const post = (signal?: AbortSignal) => fetch(`${srv.url}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
  const t0 = performance.now();
  const pending = post();
  // While it runs, /metrics shows the prompts being scored, and vLLM's running count includes them.
  const root = srv.url.replace(/\/v1$/, '');
  let seen = '';
  for (let i = 0; i < 200 && !seen; i++) {
    const m = await (await fetch(`${root}/metrics`)).text();
    if (/^openlora_scoring_prompts\{[^}]*\} [1-9]/m.test(m)) seen = m;
    else await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(seen, 'openlora_scoring_prompts > 0 while scoring');
  assert.match(seen, /^vllm:num_requests_running\{[^}]*\} [1-9]/m);
  const whole = await pending;
  assert.equal(whole.status, 200);
  await whole.arrayBuffer();
  const full = performance.now() - t0;
  const ac = new AbortController();
  const left = post(ac.signal).catch(() => undefined);
  await new Promise((r) => setTimeout(r, full / 10));
  ac.abort();
  await left;
  const t1 = performance.now();
  const next = await postJson(srv.url, '/completions', { model: BASE, prompt: [5, 6, 7], max_tokens: 2 });
  assert.equal(next.status, 200);
  assert.ok(performance.now() - t1 < full / 2, `a request after the abort waited ${(performance.now() - t1).toFixed(0)} ms (a whole scoring: ${full.toFixed(0)} ms)`);
  const metrics = await (await fetch(`${srv.url.replace(/\/v1$/, '')}/metrics`)).text();
  assert.match(metrics, /^openlora_running_requests\{[^}]*\} 0$/m);
  assert.match(metrics, /^openlora_scoring_prompts\{[^}]*\} 0$/m);
});

test("vLLM's prompt_logprobs: completions per choice, chat at the top level, ranks; not with stream", async () => {
  const ids: number[] = ref.prompts[2].input_ids;
  const model = `${BASE}:shout`;
  const echoed = await postJson(srv.url, '/completions', { model, prompt: ids, echo: true, logprobs: 2, max_tokens: 1, temperature: 0 });
  const r = await postJson(srv.url, '/completions', { model, prompt: ids, prompt_logprobs: 2, max_tokens: 1, temperature: 0 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const pl = r.body.choices[0].prompt_logprobs;
  assert.equal(pl.length, ids.length);
  assert.equal(pl[0], null);
  assert.equal(r.body.choices[0].logprobs, null, 'no legacy logprobs asked for');
  for (let i = 1; i < ids.length; i++) {
    const own = pl[i][String(ids[i])];
    assert.equal(own.logprob, echoed.body.choices[0].logprobs.token_logprobs[i], `position ${i}: the same scoring as echo`);
    const entries = Object.values(pl[i]) as Array<{ logprob: number; rank: number; decoded_token: string }>;
    assert.ok(entries.length >= 2 && entries.length <= 3, 'the token and the top 2');
    // A rank counts the strictly more likely tokens; all of them are listed, except for a prompt token outside the top 2.
    for (const e of entries) if (e !== own || entries.length === 2) assert.equal(e.rank, 1 + entries.filter((o) => o.logprob > e.logprob).length, `position ${i}`);
    if (entries.length === 3) assert.ok(own.rank > 2, `position ${i}: a token outside the top 2 ranks below them`);
    assert.equal(own.decoded_token, echoed.body.choices[0].logprobs.tokens[i]);
  }
  // The reference's argmax is rank 1 where its margin allows.
  const res = ref.prompts[2].results.shout;
  for (let i = 1; i < ids.length; i++) {
    if (res.position_margins[i - 1] < TOL) continue;
    const top = Object.entries(pl[i]).find(([, e]: any) => e.rank === 1)!;
    assert.equal(Number(top[0]), res.argmax[i - 1], `position ${i}`);
  }

  const chat = await postJson(srv.url, '/chat/completions', { model, messages: [{ role: 'user', content: 'Speak.' }], prompt_logprobs: true, max_tokens: 2 });
  assert.equal(chat.status, 200, JSON.stringify(chat.body));
  assert.equal(chat.body.prompt_logprobs.length, chat.body.usage.prompt_tokens);
  assert.equal(chat.body.prompt_logprobs[0], null);
  assert.ok(chat.body.prompt_logprobs.slice(1).every((d: Record<string, unknown>) => Object.keys(d).length >= 1 && Object.keys(d).length <= 2));

  const huge = await postJson(srv.url, '/completions', { model, prompt: [5, 6], prompt_logprobs: 1e300 });
  assert.equal(huge.status, 400);
  assert.equal(huge.body.error.param, 'prompt_logprobs');
  assert.match(huge.body.error.message, /20/, 'names the limit');
  const streamed = await postJson(srv.url, '/chat/completions', { model, messages: [{ role: 'user', content: 'x' }], prompt_logprobs: 1, stream: true });
  assert.equal(streamed.status, 400);
  assert.equal(streamed.body.error.param, 'prompt_logprobs');
  const ens = await postJson(srv.url, '/completions', { model: 'chorus', prompt: [5, 6, 7], prompt_logprobs: 1, max_tokens: 1 });
  assert.equal(ens.status, 400);
  assert.equal(ens.body.error.param, 'prompt_logprobs');
});
