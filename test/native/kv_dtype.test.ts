/**
 * bfloat16 KV cache (EngineOptions.kvCacheDtype = "bfloat16", vLLM --kv-cache-dtype): K and V
 * are rounded to bfloat16 (nearest even) when written and widened exactly when attention reads
 * them. Checked here: logits stay close to the float32 PyTorch reference (reference.json); a
 * request's greedy tokens and logprobs are bit-identical alone, inside a mixed-adapter batch and
 * under every block size (paging changes no bit with bf16 K/V either); the same kvCacheBytes
 * gives twice the blocks; bad values are refused naming the option (engine and config file).
 * The kernel itself (bf16 K/V against a float64 reference on the rounded K/V) is checked by
 * test/native/cpp/attention_check.cc.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ConfigError, parseConfig } from '../../config/load.ts';
import { Engine, type GenerationResult } from '../../native/engine.ts';
import type { AdapterRef, EngineOptions } from '../../native/types.ts';
import { adapterSpec, argmax, loadReference, logsumexp, modelDir, params, testThreads } from './helpers.ts';

// NOTE(why): bf16 keeps 8 significant bits (relative rounding error <= 2^-9); through the 4
// layers of the demo model the last-position logits move by up to 1.7e-2 (measured over every
// prompt x config, see the diagnostic; logsumexp by 6e-3). 5e-2 leaves about 3x margin and
// still catches a wrong widening or a layout bug (those move logits by whole units).
const LOGIT_TOL = 5e-2;
const ref = loadReference();
const configNames = Object.keys(ref.configs);
const adapterNames = ['shout', 'whisper', 'romeo', 'rs'];

async function open(options: EngineOptions): Promise<{ engine: Engine; slot: Record<string, number> }> {
  const engine = await Engine.load(modelDir, { threads: testThreads, kvCacheDtype: 'bfloat16', ...options });
  const slot: Record<string, number> = {};
  for (const n of adapterNames) slot[n] = await engine.loadAdapter(adapterSpec(n));
  return { engine, slot };
}

const refsFor = (slot: Record<string, number>, config: string): AdapterRef[] =>
  ref.configs[config].map(({ adapter, weight }) => ({ slot: slot[adapter], weight }));

/** Greedy tokens and logprobs of one request, as an exact fingerprint. */
const fingerprint = (r: GenerationResult) => JSON.stringify({ t: r.tokens, l: r.logprobs, f: r.finishReason });

describe('kvCacheDtype "bfloat16"', () => {
  let engine: Engine;
  let slot: Record<string, number>;
  before(async () => ({ engine, slot } = await open({ maxNumSeqs: 64 })));
  after(() => engine.dispose());

  test('info() reports the dtype; logits stay close to reference.json for every config', async (t) => {
    assert.equal(engine.info().kvCacheDtype, 'bfloat16');
    let maxErr = 0;
    let maxLse = 0;
    for (const config of configNames) {
      for (const p of ref.prompts) {
        const r = p.results[config];
        const out = await engine.forward(p.input_ids, refsFor(slot, config));
        const V = out.vocabSize;
        const last = out.logits.subarray((out.numTokens - 1) * V, out.numTokens * V);
        for (let i = 0; i < V; i++) maxErr = Math.max(maxErr, Math.abs(last[i] - r.last_logits[i]));
        maxLse = Math.max(maxLse, Math.abs(logsumexp(last) - r.last_logsumexp));
        for (let pos = 0; pos < out.numTokens; pos++) {
          if (r.position_margins[pos] < LOGIT_TOL) continue;
          assert.equal(argmax(out.logits.subarray(pos * V, (pos + 1) * V)), r.argmax[pos], `${p.id} [${config}] position ${pos}`);
        }
      }
    }
    t.diagnostic(`bf16 KV: max |logit - reference| ${maxErr.toExponential(2)}, max |logsumexp - reference| ${maxLse.toExponential(2)} (tolerance ${LOGIT_TOL})`);
    assert.ok(maxErr < LOGIT_TOL, `max abs logit error ${maxErr} >= ${LOGIT_TOL}`);
    assert.ok(maxLse < LOGIT_TOL);
  });

  test('greedy tokens follow the reference where its margin exceeds the tolerance', async () => {
    const runs = [];
    for (const p of ref.prompts) {
      for (const config of configNames) {
        runs.push({ p, config, done: engine.generate(params(p.input_ids, { adapters: refsFor(slot, config), maxTokens: 16, logprobs: 0 })).done });
      }
    }
    let compared = 0;
    for (const run of runs) {
      const res = await run.done;
      const expect = run.p.results[run.config].greedy;
      for (let k = 0; k < 16; k++) {
        if (expect.steps[k].margin < LOGIT_TOL) break;
        assert.equal(res.tokens[k], expect.tokens[k], `${run.p.id} [${run.config}] step ${k}`);
        compared++;
      }
    }
    assert.ok(compared > 50, `only ${compared} steps compared`);
  });

  test('a request is bit-identical alone and inside a mixed-adapter batch', async () => {
    const p = ref.prompts[0];
    const alone = await engine.generate(params(p.input_ids, { adapters: refsFor(slot, 'shout'), maxTokens: 24, logprobs: 0 })).done;
    const batch: Array<Promise<GenerationResult>> = [];
    for (const q of ref.prompts) {
      for (const config of configNames) batch.push(engine.generate(params(q.input_ids, { adapters: refsFor(slot, config), maxTokens: 24, logprobs: 0 })).done);
    }
    const again = engine.generate(params(p.input_ids, { adapters: refsFor(slot, 'shout'), maxTokens: 24, logprobs: 0 })).done;
    const inBatch = await again;
    await Promise.all(batch);
    assert.equal(fingerprint(inBatch), fingerprint(alone));
  });
});

test('bfloat16 KV: greedy output is bit-identical for blockSize 1, 16 and 64 (prefix caching off)', async () => {
  const prints: string[][] = [];
  for (const blockSize of [1, 16, 64]) {
    const { engine, slot } = await open({ blockSize, enablePrefixCaching: false, maxNumSeqs: 32 });
    try {
      const runs = ref.prompts.flatMap((p) =>
        ['base', 'romeo', 'cat_shout0.5_whisper0.5'].map((c) => engine.generate(params(p.input_ids, { adapters: refsFor(slot, c), maxTokens: 20, logprobs: 0 })).done));
      prints.push((await Promise.all(runs)).map(fingerprint));
    } finally {
      engine.dispose();
    }
  }
  assert.deepEqual(prints[1], prints[0]);
  assert.deepEqual(prints[2], prints[0]);
});

test('the same kvCacheBytes holds twice the blocks with bfloat16', async () => {
  const bytes = 8 << 20;
  const f32 = await Engine.load(modelDir, { threads: 1, kvCacheBytes: bytes });
  const bf16 = await Engine.load(modelDir, { threads: 1, kvCacheBytes: bytes, kvCacheDtype: 'bfloat16' });
  try {
    assert.equal(f32.info().kvCacheDtype, 'float32');
    const a = f32.stats().kvBlocksTotal, b = bf16.stats().kvBlocksTotal;
    assert.ok(a > 0);
    assert.equal(b, 2 * a);
    assert.equal(bf16.info().numKvBlocks, b);
    assert.equal(bf16.info().kvCacheBytes, f32.info().kvCacheBytes);
  } finally {
    f32.dispose();
    bf16.dispose();
  }
});

test('a bad kvCacheDtype is refused, naming the option', async () => {
  await assert.rejects(Engine.load(modelDir, { kvCacheDtype: 'fp8' } as unknown as EngineOptions), /EngineOptions\.kvCacheDtype must be "float32" or "bfloat16", got "fp8"/);
  await assert.rejects(Engine.load(modelDir, { kvCacheDtype: 3 } as unknown as EngineOptions), /EngineOptions\.kvCacheDtype/);
  assert.throws(() => parseConfig({ models: [{ name: 'a', path: 'x' }], engine: { kvCacheDtype: 'fp8' } }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /engine\.kvCacheDtype/);
    return true;
  });
  assert.equal(parseConfig({ models: [{ name: 'a', path: 'x' }], engine: { kvCacheDtype: 'bfloat16' } }).engine.kvCacheDtype, 'bfloat16');
});
