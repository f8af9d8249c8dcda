/**
 * Engine-only throughput (no HTTP): greedy generation of N concurrent sequences of `--tokens`
 * tokens each, through native/engine.ts, on the embedded demo model. Separates engine speed
 * from gateway/HTTP overhead (compare with `npm run bench`).
 *
 *   node --import tsx bench/engine.ts [--threads 2] [--tokens 128] [--repeat 3] [--quantization int8] [--thread-nice 5] [--model-dir DIR]
 *
 * `--model-dir` runs another model folder (e.g. a real-shape one of bench/real/models.ts) instead
 * of the demo; the demo adapters do not fit it, so `adapters-16` is skipped there.
 *
 * Prints one line per (configuration, repeat): single stream, 16 base streams, 16 streams over
 * 16 adapter configurations (the four demo adapters at 4 weights each, so every stream has its
 * own adapter set), and `constrained-8of16`: the 16 base streams with every other one
 * constrained (SequenceParams.constrained) by a fixed sequence of hand-made token masks, each
 * sent from the event handler after the previous token as a grammar matcher would. Figures are
 * output tokens / wall time of the whole batch; for the mix also the per-stream tokens/s of its
 * unconstrained and constrained streams against the base-16 streams of the same repeat.
 */
import { join } from 'node:path';

import { Engine, type GenerationHandle } from '../native/engine.ts';
import { tokenMaskOf } from '../native/token-mask.ts';
import type { AdapterRef, EngineOptions } from '../native/types.ts';
import { adapterSpec, modelDir as demoModelDir, params } from '../test/native/helpers.ts';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const threads = Number(arg('threads', '2'));
const tokens = Number(arg('tokens', '128'));
const repeat = Number(arg('repeat', '3'));
/** EngineOptions.threadNice (the gateway's default is 5: the event loop preempts engine compute). */
const threadNice = Number(arg('thread-nice', '0'));
const quantizations = arg('quantization', 'none,int8').split(',');
const modelDir = arg('model-dir', demoModelDir);
const demo = modelDir === demoModelDir;
// A fixed 8-token prompt (ids of ordinary tokens; BOS 1019 first).
const prompt = [1019, 84, 104, 101, 32, 107, 105, 110];

async function run(engine: Engine, streams: number, adapters: (i: number) => AdapterRef[]): Promise<number> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const handles = [];
  for (let i = 0; i < streams; i++) {
    // NOTE(why): logit_bias on the demo's end tokens keeps every stream to exactly `tokens`.
    handles.push(engine.generate(params(prompt, { maxTokens: tokens, adapters: adapters(i), logitBias: [[1020, -100], [1023, -100]] })).done);
  }
  let n = 0;
  for (const h of handles) n += (await h).completionTokens;
  const cpu = process.cpuUsage(c0);
  cpuRate[0] = n / ((cpu.user + cpu.system) / 1e6);
  return n / ((performance.now() - t0) / 1000);
}
/**
 * 16 base streams; those with `constrained(i)` run under `masks` (mask k % masks.length for
 * token k, sent from the event handler after token k - 1, as a grammar matcher would).
 * @returns batch tokens/s and the mean per-stream tokens/s of the unconstrained and constrained streams.
 */
async function runMix(
  engine: Engine,
  masks: Int32Array[],
  constrained: (i: number) => boolean,
): Promise<{ tps: number; cpuTps: number; steps: number; free: number; cons: number }> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const s0 = engine.stats().steps;
  const per: Array<{ cons: boolean; done: Promise<number> }> = [];
  for (let i = 0; i < 16; i++) {
    const cons = constrained(i);
    let k = 0;
    // eslint-disable-next-line prefer-const
    let h: GenerationHandle;
    const p = params(prompt, { maxTokens: tokens, logitBias: [[1020, -100], [1023, -100]], ...(cons ? { constrained: true, tokenMask: masks[0] } : {}) });
    h = engine.generate(p, (ev) => {
      if (cons && ev.token >= 0 && !ev.finishReason) h.setTokenMask(masks[++k % masks.length]);
    });
    per.push({ cons, done: h.done.then((r) => r.completionTokens / ((performance.now() - t0) / 1000)) });
  }
  const rates = await Promise.all(per.map((x) => x.done));
  const mean = (c: boolean) => {
    const v = rates.filter((_, i) => per[i].cons === c);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  };
  const cpu = process.cpuUsage(c0);
  return {
    tps: (tokens * 16) / ((performance.now() - t0) / 1000),
    cpuTps: (tokens * 16) / ((cpu.user + cpu.system) / 1e6),
    steps: engine.stats().steps - s0,
    free: mean(false),
    cons: mean(true),
  };
}
// NOTE(why): engine steps per batch do not depend on the machine's load: a constrained stream
// that missed steps waiting for its mask would show as more steps for the mix.
const mixRows: string[] = [];

// NOTE(why): tokens per CPU-second of this process is robust to a shared, loaded machine
// (wall-clock figures are not); with threads > 1 it also counts spinning workers.
const cpuRate = [0];
const cpuRows: Record<string, number[]> = {};

const rows: Record<string, number[]> = {};
for (const quantization of quantizations) {
  const opts: EngineOptions = { threads, maxNumSeqs: 64, threadNice };
  if (quantization !== 'none') (opts as Record<string, unknown>).quantization = quantization;
  const engine = await Engine.load(modelDir, opts);
  const slots: number[] = [];
  for (const name of demo ? ['shout', 'whisper', 'romeo', 'rs'] : []) slots.push(await engine.loadAdapter(adapterSpec(name, join(modelDir, '..', '..', 'adapters', name))));
  const weights = [1, 0.8, 0.6, 0.4];
  const configs: Record<string, [number, (i: number) => AdapterRef[]]> = {
    'single': [1, () => []],
    'base-16': [16, () => []],
  };
  if (demo) configs['adapters-16'] = [16, (i: number) => [{ slot: slots[i % 4], weight: weights[Math.floor(i / 4) % 4] }]];
  await run(engine, 4, () => []);  // warm-up
  for (let r = 0; r < repeat; r++) {
    for (const [name, [streams, ad]] of Object.entries(configs)) {
      const tps = await run(engine, streams, ad);
      (rows[`${quantization} ${name}`] ??= []).push(tps);
      (cpuRows[`${quantization} ${name}`] ??= []).push(cpuRate[0]);
    }
  }
  if (quantization === 'none') {
    // Fixed masks: each allows a different half of the vocabulary (token 0 always), like the
    // broad masks of a JSON string body; the cost the engine sees does not depend on which bits.
    const vocab = engine.info().vocabSize;
    const masks = [0, 1, 2, 3].map((m) => tokenMaskOf(vocab, Array.from({ length: vocab }, (_, t) => t).filter((t) => t === 0 || (t >> m) % 2 === 0)));
    for (let r = 0; r < repeat; r++) {
      const base = await runMix(engine, masks, () => false);
      const mix = await runMix(engine, masks, (i) => i % 2 === 0);
      mixRows.push(
        `repeat ${r}: base-16 ${base.tps.toFixed(0)} tok/s, constrained-8of16 ${mix.tps.toFixed(0)} tok/s (${(mix.tps / base.tps).toFixed(3)}x); ` +
          `per stream: unconstrained ${(mix.free / base.free).toFixed(3)}x, constrained ${(mix.cons / base.free).toFixed(3)}x of base-16's; ` +
          `engine steps ${base.steps} vs ${mix.steps}; tokens per CPU-second ${(mix.cpuTps / base.cpuTps).toFixed(3)}x`,
      );
    }
  }
  await engine.dispose();
}
console.log(`engine-only, threads=${threads}, ${tokens} tokens/stream, greedy; tok/s per repeat (best)`);
for (const [k, v] of Object.entries(rows)) {
  console.log(`${k.padEnd(24)} ${v.map((x) => x.toFixed(0).padStart(6)).join(' ')}   best ${Math.max(...v).toFixed(0)}`);
}
if (mixRows.length) console.log(`constrained mix (8 of 16 streams under token masks, ${tokens} tokens each; ratios within one repeat):\n  ${mixRows.join('\n  ')}`);
console.log('tokens per CPU-second of the process (best):');
for (const [k, v] of Object.entries(cpuRows)) console.log(`${k.padEnd(24)} ${Math.max(...v).toFixed(0)}`);
