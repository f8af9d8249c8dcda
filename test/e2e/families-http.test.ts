/**
 * The model families over HTTP (test/fixtures/families, reference: test/reference/model.py):
 * /v1/completions with token-id prompts and /v1/chat/completions through the model's own chat
 * template (the real Qwen3 template, or the fixture's chat_template.jinja), for the base, an
 * adapter, a `cat` composition and an ensemble, all requests at once. The generated tokens (read
 * back from logprobs) equal the reference's greedy continuation until its first near-tie; the
 * first token's logprob is within 1e-3. /v1/models lists the architecture.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { parseConfig, defaultConfigInput } from '../../config/load.ts';
import { startServer, type RunningServer } from '../../examples/server.ts';
import { loadTokenizer, type ModelTokenizer } from '../../plugin/tokenizer.ts';
import { tokenDisplay } from '../../plugin/token-bytes.ts';
import { get } from '../gateway/helpers.ts';
import { materializeFixture, type FamilyPrompt, type Fixture } from '../native/family-fixtures.ts';
import { postJson } from './server.ts';

const TOL = 1e-3;
/**
 * Every family fixture but llama-dynamic: its reference recomputes dynamic-NTK frequencies for
 * every position at each length (HF without a KV cache), so greedy decoding is not comparable;
 * test/native/rope-scaling.test.ts checks its logits.
 */
const FIXTURES = ['qwen3', 'gemma2', 'gemma3', 'phi3', 'phi4-partial', 'mistral-sw', 'qwen2-sw', 'llama-yarn'];

for (const name of FIXTURES) {
  describe(`family ${name} over HTTP`, () => {
    let fx: Fixture;
    let srv: RunningServer;
    let tok: ModelTokenizer;

    before(async () => {
      fx = materializeFixture(name);
      tok = await loadTokenizer(fx.modelDir);
      const config = parseConfig({
        ...defaultConfigInput(),
        port: 0,
        logLevel: 'silent',
        engine: { threads: 2, maxLoraRank: 16 },
        models: [{ name, path: fx.modelDir, adapterDirs: [fx.adaptersDir] }],
      });
      srv = await startServer(config);
    });
    after(async () => {
      await srv?.close();
      fx?.dispose();
    });

    /** Expected token texts until the reference's first near-tie, and the stop ids to accept after them. */
    function expected(p: FamilyPrompt, config: string | 'ensemble'): string[] {
      const out: string[] = [];
      if (config === 'ensemble') {
        for (const s of p.ensemble.greedy.steps) {
          if (s.prob_margin < 1e-4) break;
          out.push(tokenDisplay(tok.tokenBytes(s.token)));
        }
        return out;
      }
      for (const s of p.results[config]!.greedy.steps) {
        if (s.margin < TOL) break;
        out.push(tokenDisplay(tok.tokenBytes(s.token)));
      }
      return out;
    }

    /** The served tokens agree with `want` as far as both go; a stop may end the response early only at a stop id. */
    function agree(got: string[], want: string[], finish: string, where: string): void {
      const n = Math.min(got.length, want.length);
      assert.deepEqual(got.slice(0, n), want.slice(0, n), where);
      if (got.length < want.length) assert.equal(finish, 'stop', `${where}: ended after ${got.length} tokens (${finish})`);
    }

    test('completions with token ids and chat through the template: base, adapter, cat and ensemble in one batch', async (t) => {
      const n = fx.ref.greedy_new_tokens;
      const cases: Array<{ config: string; body: Record<string, unknown> }> = [
        { config: 'base', body: { model: name } },
        { config: 'all', body: { model: `${name}:all` } },
        { config: 'cat_all0.5_rs0.7', body: { model: `${name}:all@0.5+rs@0.7` } },
        {
          config: 'ensemble',
          body: { model: name, adapters: fx.ref.ensemble.members.map((m) => ({ name: m.adapter, weight: m.weight })), merge: { strategy: 'ensemble' } },
        },
      ];
      const raw = fx.ref.prompts.filter((p) => p.kind === 'raw');
      const chat = fx.ref.prompts.find((p) => p.kind === 'chat')!;
      assert.deepEqual(tok.encodeChat(chat.messages!), chat.input_ids, 'the chat template renders the reference prompt');
      const jobs = [
        ...raw.flatMap((p) =>
          cases.map(async (c) => ({
            p, c, chat: false,
            r: await postJson(srv.url, '/completions', { prompt: p.input_ids, max_tokens: n, temperature: 0, logprobs: 1, ...c.body }),
          })),
        ),
        ...cases.map(async (c) => ({
          p: chat, c, chat: true,
          r: await postJson(srv.url, '/chat/completions', { messages: chat.messages, max_tokens: n, temperature: 0, logprobs: true, top_logprobs: 1, ...c.body }),
        })),
      ];
      let compared = 0;
      let maxErr = 0;
      for (const { p, c, chat: isChat, r } of await Promise.all(jobs)) {
        const where = `${p.id} [${c.config}]${isChat ? ' chat' : ''}`;
        assert.equal(r.status, 200, `${where}: ${JSON.stringify(r.body)}`);
        const choice = r.body.choices[0];
        const got: string[] = isChat ? choice.logprobs.content.map((x: { token: string }) => x.token) : choice.logprobs.tokens;
        const want = expected(p, c.config);
        agree(got, want, choice.finish_reason, where);
        compared += Math.min(got.length, want.length);
        if (c.config !== 'ensemble') {
          const first = isChat ? choice.logprobs.content[0].logprob : choice.logprobs.token_logprobs[0];
          maxErr = Math.max(maxErr, Math.abs(first - p.results[c.config]!.greedy.steps[0]!.logprob));
        }
      }
      t.diagnostic(`${name}: ${compared} tokens compared over HTTP; first-token logprob max error ${maxErr.toExponential(2)}`);
      assert.ok(maxErr < TOL, `first-token logprob error ${maxErr}`);
      assert.ok(compared >= jobs.length * 2, `only ${compared} tokens compared`);
    });

    test('/v1/models gives the architecture and the supported list', async () => {
      const r = await get(`${srv.url}/models`);
      assert.equal(r.status, 200);
      const base = r.body.data.find((m: { id: string }) => m.id === name);
      assert.equal(base.openlora.architecture, fx.ref.architecture);
      assert.ok(r.body.openlora.supported_architectures.includes(fx.ref.architecture));
      assert.ok(r.body.openlora.supported_architectures.includes('LlamaForCausalLM'));
    });
  });
}
