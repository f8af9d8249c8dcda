/**
 * Engine-only throughput (no HTTP): greedy generation of N concurrent sequences of `--tokens`
 * tokens each, through native/engine.ts, on the embedded demo model. Separates engine speed
 * from gateway/HTTP overhead (compare with `npm run bench`).
 *
 *   node --import tsx bench/engine.ts [--threads 2] [--tokens 128] [--repeat 3] [--quantization int8]
 *
 * Prints one line per (configuration, repeat): single stream, 16 base streams, 16 streams over
 * 16 adapter configurations (the four demo adapters at 4 weights each, so every stream has its
 * own adapter set). Figures are output tokens / wall time of the whole batch.
 */
import { join } from 'node:path';

import { Engine } from '../native/engine.ts';
import type { AdapterRef, EngineOptions } from '../native/types.ts';
import { adapterSpec, modelDir, params } from '../test/native/helpers.ts';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const threads = Number(arg('threads', '2'));
const tokens = Number(arg('tokens', '128'));
const repeat = Number(arg('repeat', '3'));
const quantizations = arg('quantization', 'none,int8').split(',');
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
// NOTE(why): tokens per CPU-second of this process is robust to a shared, loaded machine
// (wall-clock figures are not); with threads > 1 it also counts spinning workers.
const cpuRate = [0];
const cpuRows: Record<string, number[]> = {};

const rows: Record<string, number[]> = {};
for (const quantization of quantizations) {
  const opts: EngineOptions = { threads, maxNumSeqs: 64 };
  if (quantization !== 'none') (opts as Record<string, unknown>).quantization = quantization;
  const engine = await Engine.load(modelDir, opts);
  const slots: number[] = [];
  for (const name of ['shout', 'whisper', 'romeo', 'rs']) slots.push(await engine.loadAdapter(adapterSpec(name, join(modelDir, '..', '..', 'adapters', name))));
  const weights = [1, 0.8, 0.6, 0.4];
  const configs = {
    'single': [1, () => []],
    'base-16': [16, () => []],
    'adapters-16': [16, (i: number) => [{ slot: slots[i % 4], weight: weights[Math.floor(i / 4) % 4] }]],
  } as const;
  await run(engine, 4, () => []);  // warm-up
  for (let r = 0; r < repeat; r++) {
    for (const [name, [streams, ad]] of Object.entries(configs)) {
      const tps = await run(engine, streams, ad as (i: number) => AdapterRef[]);
      (rows[`${quantization} ${name}`] ??= []).push(tps);
      (cpuRows[`${quantization} ${name}`] ??= []).push(cpuRate[0]);
    }
  }
  await engine.dispose();
}
console.log(`engine-only, threads=${threads}, ${tokens} tokens/stream, greedy; tok/s per repeat (best)`);
for (const [k, v] of Object.entries(rows)) {
  console.log(`${k.padEnd(24)} ${v.map((x) => x.toFixed(0).padStart(6)).join(' ')}   best ${Math.max(...v).toFixed(0)}`);
}
console.log('tokens per CPU-second of the process (best):');
for (const [k, v] of Object.entries(cpuRows)) console.log(`${k.padEnd(24)} ${Math.max(...v).toFixed(0)}`);
