/**
 * No model math on the JS thread: while the engine generates, a setInterval keeps ticking.
 * The bound is generous (slow shared 2-core CI); speed itself is not asserted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { loadReference, modelDir, params, testThreads } from './helpers.ts';

test('the event loop keeps ticking during a long generation', async (t) => {
  const ref = loadReference();
  let last = performance.now();
  let maxGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const started = performance.now();
  const engine = await Engine.load(modelDir, { threads: testThreads });
  try {
    const runs = ref.prompts.map((p, i) =>
      engine.generate(params(p.input_ids, { maxTokens: 400, temperature: 1, seed: i, logprobs: 5 })).done,
    );
    const forwards = ref.prompts.map((p) => engine.forward(p.input_ids));
    const results = await Promise.all(runs);
    await Promise.all(forwards);
    for (const r of results) assert.ok(r.finishReason === 'length' && r.completionTokens > 100);
  } finally {
    clearInterval(timer);
    await engine.dispose();
  }
  const elapsed = performance.now() - started;
  t.diagnostic(`${ticks} ticks in ${elapsed.toFixed(0)} ms, max gap ${maxGap.toFixed(1)} ms`);
  assert.ok(maxGap < 200, `the event loop stalled for ${maxGap.toFixed(0)} ms`);
});
