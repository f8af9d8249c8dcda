/**
 * The checks of a model-family fixture against the independent float32 PyTorch reference
 * (test/reference/model.py; fixtures in test/fixtures/families/, materialised by
 * family-fixtures.ts): base + three adapters (all projections F32, rsLoRA BF16, rank/alpha
 * patterns F16) + a `cat` composition:
 * - last-position logits within 1e-3 (and logsumexp, per-position argmax where the reference's
 *   top-2 margin is >= 1e-3);
 * - greedy continuations equal to the reference until its first near-tie (top-2 margin < 1e-3),
 *   every prompt x configuration all in one batch, and one sequence alone;
 * - the ensemble (p = sum_i w_i softmax(l_i)): last-position probabilities and greedy tokens.
 * Used by families.test.ts (every fixture) and gemma3-multimodal.test.ts (the gemma3 fixture's
 * weights and adapters saved as Gemma3ForConditionalGeneration checkpoints).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { Engine, type GenerationResult } from '../../native/engine.ts';
import type { AdapterRef, EnsembleMember } from '../../native/types.ts';
import type { FamilyPrompt, FamilyResult, Fixture } from './family-fixtures.ts';
import { argmax, logsumexp, params, testThreads } from './helpers.ts';

const TOL = 1e-3;
const PROB_TOL = 1e-4;

/** Greedy agreement until the reference's first near-tie; returns the steps compared. */
function checkGreedy(got: GenerationResult, expect: FamilyResult['greedy'], where: string): number {
  let k = 0;
  for (; k < expect.tokens.length; k++) {
    const step = expect.steps[k]!;
    if (step.margin < TOL) break;  // a legitimately different choice may follow
    assert.equal(got.tokens[k], step.token, `${where} step ${k}`);
    assert.ok(Math.abs(got.logprobs[k]! - step.logprob) < TOL, `${where} step ${k}: logprob ${got.logprobs[k]} vs ${step.logprob}`);
  }
  return k;
}

/**
 * Register a `describe(label)` suite checking the fixture `make` materialises against its
 * reference.json (the tolerances above). `make` runs in the suite's `before`; the fixture is
 * disposed after it. Every adapter of the reference is loaded from `fx.adaptersDir`.
 */
export function describeFamilyChecks(label: string, make: () => Fixture | Promise<Fixture>): void {
  describe(label, () => {
    let fx: Fixture;
    let engine: Engine;
    const slots = new Map<string, number>();
    const refsFor = (config: string): AdapterRef[] =>
      fx.ref.configs[config]!.map(({ adapter, weight }) => ({ slot: slots.get(adapter)!, weight }));

    before(async () => {
      fx = await make();
      engine = await Engine.load(fx.modelDir, { threads: testThreads, maxNumSeqs: 64, maxLoraRank: 16 });
      for (const a of Object.keys(fx.ref.adapters)) {
        const parsed = await parseAdapterDir(`${fx.adaptersDir}/${a}`, engine.info());
        slots.set(a, await engine.loadAdapter(await buildLoadSpec(parsed, engine.info())));
      }
    });
    after(async () => {
      await engine?.dispose();
      fx?.dispose();
    });

    test('the engine reads the architecture and the reference covers base, 3 adapters and a cat composition', () => {
      const info = engine.info();
      assert.equal(info.modelType, fx.ref.family);
      assert.equal(info.architecture, fx.ref.architecture);
      assert.equal(info.vocabSize, fx.ref.vocab_size);
      assert.deepEqual(Object.keys(fx.ref.configs).sort(), ['all', 'base', 'cat_all0.5_rs0.7', 'pat', 'rs']);
      assert.deepEqual(Object.values(fx.ref.adapters).map((a) => a.dtype).sort(), ['BF16', 'F16', 'F32']);
    });

    test('forward(): last-position logits within 1e-3, logsumexp, per-position argmax (every config)', async (t) => {
      let maxErr = 0;
      for (const config of Object.keys(fx.ref.configs)) {
        for (const p of fx.ref.prompts) {
          const r = p.results[config]!;
          const out = await engine.forward(p.input_ids, refsFor(config));
          const V = out.vocabSize;
          const last = out.logits.subarray((out.numTokens - 1) * V, out.numTokens * V);
          r.last_logit_ids.forEach((id, i) => (maxErr = Math.max(maxErr, Math.abs(last[id]! - r.last_logits[i]!))));
          const where = `${p.id} [${config}]`;
          assert.ok(Math.abs(logsumexp(last) - r.last_logsumexp) < TOL, `${where}: logsumexp ${logsumexp(last)} vs ${r.last_logsumexp}`);
          for (let pos = 0; pos < out.numTokens; pos++) {
            if (r.position_margins[pos]! < TOL) continue;
            assert.equal(argmax(out.logits.subarray(pos * V, (pos + 1) * V)), r.argmax[pos], `${where} position ${pos}`);
          }
        }
      }
      t.diagnostic(`${label}: max |logit - reference| = ${maxErr.toExponential(2)}`);
      assert.ok(maxErr < TOL, `max abs logit error ${maxErr} >= ${TOL}`);
    });

    test('greedy: every prompt x config in one batch, then one alone, equal to the reference until a near-tie', async (t) => {
      const n = fx.ref.greedy_new_tokens;
      const runs: Array<{ p: FamilyPrompt; config: string; done: Promise<GenerationResult> }> = [];
      for (const p of fx.ref.prompts) {
        for (const config of Object.keys(fx.ref.configs)) {
          runs.push({ p, config, done: engine.generate(params(p.input_ids, { adapters: refsFor(config), maxTokens: n, logprobs: 0 })).done });
        }
      }
      assert.ok(engine.stats().waiting + engine.stats().running > 1, 'sequences should be in flight together');
      let compared = 0;
      for (const run of runs) compared += checkGreedy(await run.done, run.p.results[run.config]!.greedy, `${run.p.id} [${run.config}]`);
      const long = fx.ref.prompts.reduce((a, b) => (b.input_ids.length > a.input_ids.length ? b : a));
      for (const config of ['base', 'cat_all0.5_rs0.7']) {
        const alone = await engine.generate(params(long.input_ids, { adapters: refsFor(config), maxTokens: n, logprobs: 0 })).done;
        compared += checkGreedy(alone, long.results[config]!.greedy, `${long.id} [${config}] alone`);
      }
      t.diagnostic(`${label}: ${compared} greedy tokens compared`);
      assert.ok(compared > runs.length * 4, `only ${compared} tokens compared before near-ties`);
    });

    test('ensemble: last-position mixture probabilities and greedy tokens', async () => {
      const members: EnsembleMember[] = fx.ref.ensemble.members.map((m) => ({ adapters: [{ slot: slots.get(m.adapter)!, weight: 1 }], weight: m.weight }));
      const n = fx.ref.greedy_new_tokens;
      const first = fx.ref.prompts.map((p) => engine.generate(params(p.input_ids, { ensemble: members, maxTokens: 1, logprobs: 20 })).done);
      const full = fx.ref.prompts.map((p) => engine.generate(params(p.input_ids, { ensemble: members, maxTokens: n, logprobs: 0 })).done);
      for (const [i, p] of fx.ref.prompts.entries()) {
        const r = await first[i]!;
        const e = p.ensemble;
        const top = new Map(r.topLogprobs[0]!.map((x) => [x.token, Math.exp(x.logprob)]));
        e.top_ids.forEach((id, j) => {
          if (e.top_probs[j]! < 1e-3) return;
          assert.ok(Math.abs((top.get(id) ?? 0) - e.top_probs[j]!) < PROB_TOL, `${p.id} token ${id}: p ${top.get(id)} vs ${e.top_probs[j]}`);
        });
        const g = await full[i]!;
        for (let k = 0; k < e.greedy.steps.length; k++) {
          if (e.greedy.steps[k]!.prob_margin < PROB_TOL) break;
          assert.equal(g.tokens[k], e.greedy.tokens[k], `${p.id} ensemble step ${k}`);
        }
      }
    });
  });
}
