/**
 * Full perplexity of the demo model on the held-out Shakespeare text (the last 10% of the
 * corpus; test/fixtures/tiny-shakespeare/HELDOUT-PROVENANCE.txt), float32 vs int8 and int4 weights,
 * plus each one's max |logit error| against the float32 PyTorch reference (reference.json).
 *
 *   node --import tsx bench/perplexity.ts [--window 256] [--threads 2]
 */
import { Engine } from '../native/engine.ts';
import { loadReference, modelDir } from '../test/native/helpers.ts';
import { heldoutTokens, perplexity } from '../test/native/perplexity.ts';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const window = Number(arg('window', '256'));
const threads = Number(arg('threads', '2'));

const { ids, bos } = await heldoutTokens();
const ref = loadReference();
const results: Record<string, { ppl: number; tokens: number; windows: number; maxLogitErr: number; seconds: number }> = {};
for (const quantization of ['none', 'int8', 'int4'] as const) {
  const engine = await Engine.load(modelDir, { threads, quantization });
  let maxLogitErr = 0;
  for (const p of ref.prompts) {
    const out = await engine.forward(p.input_ids);
    const last = out.logits.subarray((out.numTokens - 1) * out.vocabSize);
    const want = p.results.base.last_logits;
    for (let i = 0; i < want.length; i++) maxLogitErr = Math.max(maxLogitErr, Math.abs(last[i] - want[i]));
  }
  const t0 = performance.now();
  const r = await perplexity(engine, ids, bos, window);
  results[quantization] = { ...r, maxLogitErr, seconds: (performance.now() - t0) / 1000 };
  await engine.dispose();
}
console.log(`held-out tokens: ${ids.length}; window ${window} (BOS + ${window - 1}), stride ${window - 1}`);
for (const [q, r] of Object.entries(results)) {
  console.log(`${q.padEnd(5)} ppl ${r.ppl.toFixed(4)} over ${r.tokens} tokens / ${r.windows} windows; max |logit - reference| ${r.maxLogitErr.toExponential(2)}; ${r.seconds.toFixed(1)} s`);
}
console.log(`int8 / fp32 perplexity ratio: ${(results.int8.ppl / results.none.ppl).toFixed(4)}; int4 / fp32: ${(results.int4.ppl / results.none.ppl).toFixed(4)}`);
