/**
 * The CPU kernels give the reference logits whichever GEMM kernel is dispatched (AVX2/FMA or
 * the portable fallback, forced with OPENLORA_GEMM=portable in a child process) and whatever
 * the thread count.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { adapterSpec, loadReference, modelDir, repoRoot } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[1];  // 32 tokens: exercises the 4-row tiles and their tails

function maxErr(logits: ArrayLike<number>, expect: number[]): number {
  let m = 0;
  for (let i = 0; i < expect.length; i++) m = Math.max(m, Math.abs(logits[i] - expect[i]));
  return m;
}

test('logits match the reference with 1, 2 and 3 compute threads', async () => {
  for (const threads of [1, 2, 3]) {
    const engine = await Engine.load(modelDir, { threads });
    const slot = await engine.loadAdapter(adapterSpec('shout'));
    const out = await engine.forward(prompt.input_ids, [{ slot, weight: 1 }]);
    const last = out.logits.subarray((out.numTokens - 1) * out.vocabSize);
    assert.ok(maxErr(last, prompt.results.shout.last_logits) < 1e-3, `threads=${threads}`);
    await engine.dispose();
  }
});

/** Last-position base logits of `prompt` from the addon in a child process with `env` added. */
function childLastLogits(env: Record<string, string>): number[] {
  const script = `
    const a = require(${JSON.stringify(join(repoRoot, 'build', 'Release', 'openlora.node'))});
    a.loadModel(${JSON.stringify(modelDir)}, { threads: 2 }).then(async (e) => {
      const out = await e.forward(${JSON.stringify(prompt.input_ids)}, []);
      const last = Array.from(out.logits.subarray((out.numTokens - 1) * out.vocabSize));
      await e.dispose();
      process.stdout.write(JSON.stringify(last));
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as number[];
}

test('the portable GEMM fallback matches the reference too', () => {
  const err = maxErr(childLastLogits({ OPENLORA_GEMM: 'portable' }), prompt.results.base.last_logits);
  assert.ok(err < 1e-3, `portable kernel max error ${err}`);
});

test('activationDtype "bfloat16" (opt-in) stays within 5e-2 of the float32 reference, and is refused misspelled', async () => {
  // NOTE(why): rounding every product's input to bf16 moves the demo model's logits by up to
  // ~2.5e-2 (openlora-cli check, 2026-12-06); the float32 path's 1e-3 does not apply to this mode.
  const engine = await Engine.load(modelDir, { threads: 2, activationDtype: 'bfloat16' });
  try {
    assert.equal(engine.info().activationDtype, 'bfloat16');
    const out = await engine.forward(prompt.input_ids, []);
    const err = maxErr(out.logits.subarray((out.numTokens - 1) * out.vocabSize), prompt.results.base.last_logits);
    assert.ok(err < 5e-2, `bf16-activation max error ${err}`);
    assert.ok(err > 1e-5, `bf16-activation logits equal float32's (${err}): the option did not take effect`);
  } finally {
    await engine.dispose();
  }
  await assert.rejects(Engine.load(modelDir, { activationDtype: 'fp16' as 'bfloat16' }), /EngineOptions\.activationDtype/);
});
