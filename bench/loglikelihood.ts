/**
 * lm-evaluation-harness's loglikelihood request (completions `echo` + `logprobs: 1`,
 * `max_tokens: 1`, `temperature: 0`) at the engine, two ways, interleaved in one run:
 * - `two-pass`: the prompt scored (Engine.promptLogprobs), then a one-token greedy sequence
 *   (a second prefill of the same prompt), as the gateway ran it before;
 * - `one-pass`: the scoring also runs the row after the prompt (`nextTopN` 1) and its most
 *   likely token is the answer (plugin/generate.ts `greedyFromScoring`).
 * Prompts are random token ids (`--prompts` of `--len` tokens), all queued at once as one
 * lm-eval batch, new ones for every run (a repeated prompt would hit the prefix cache in the
 * second pass). Prints tokens/s of prompt scored per way and their ratio; `--json FILE` keeps it.
 *
 *   node --import tsx bench/loglikelihood.ts [--model-dir DIR] [--prompts 32] [--len 256] [--rounds 3] [--threads 2]
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../native/engine.ts';
import { REPO_ROOT } from '../config/load.ts';

const { values } = parseArgs({
  options: {
    'model-dir': { type: 'string', default: path.join(REPO_ROOT, 'examples', 'models', 'tiny-shakespeare') },
    prompts: { type: 'string', default: '32' },
    len: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    json: { type: 'string' },
  },
});
const N = Number(values.prompts);
const L = Number(values.len);
const engine = await Engine.load(values['model-dir']!, { threads: Number(values.threads), maxNumSeqs: Math.max(N, 8) });
const V = engine.info().vocabSize;
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % (V - 2)) + 1;
const batch = () => Array.from({ length: N }, () => Array.from({ length: L }, rand));

/** One lm-eval batch, scored the old way (scoring, then a one-token sequence per prompt). */
async function twoPass(prompts: number[][]): Promise<number[]> {
  const scored = prompts.map((p) => engine.promptLogprobs(p, [], 1));
  const gens = prompts.map((p) =>
    engine.generate({ promptIds: p, adapters: [], maxTokens: 1, temperature: 0, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, logitBias: [], stopTokenIds: [], seed: 0, logprobs: 1 })
      .done,
  );
  await Promise.all(scored);
  return (await Promise.all(gens)).map((g) => g.tokens[0]!);
}

/** The batch in one pass (nextTopN 1). */
async function onePass(prompts: number[][]): Promise<number[]> {
  return (await Promise.all(prompts.map((p) => engine.promptLogprobs(p, [], 1, undefined, 1)))).map((r) => r.nextTopIds![0]!);
}

await onePass(batch());  // warm-up
const times: Record<string, number[]> = { 'two-pass': [], 'one-pass': [] };
for (let r = 0; r < Number(values.rounds); r++) {
  const both = batch();
  const [a, b] = [await onePass(both), await twoPass(both)];  // unmeasured: the two ways agree
  if (a.some((t, i) => t !== b[i])) throw new Error('the two ways disagree on a greedy token');
  for (const [name, run] of [['two-pass', twoPass], ['one-pass', onePass]] as const) {
    const prompts = batch();
    const t0 = performance.now();
    await run(prompts);
    times[name]!.push((performance.now() - t0) / 1000);
  }
}
await engine.dispose();
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
const out = {
  model: path.basename(values['model-dir']!),
  cpu: os.cpus()[0]?.model,
  prompts: N,
  len: L,
  seconds: times,
  promptTokensPerSec: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, (N * L) / median(v)])),
  speedup: median(times['two-pass']!) / median(times['one-pass']!),
};
console.log(JSON.stringify(out, null, 2));
if (values.json) writeFileSync(values.json, JSON.stringify(out, null, 2) + '\n');
