/**
 * Quantization and memory at real shapes (issue 15 items 4 and 5), through openlora-cli (built
 * with CMake: `cmake -S . -B build/cmake && cmake --build build/cmake -j`).
 *
 * For each shape: write a random BF16 model folder once (`openlora-cli write-random`, no
 * downloads), then for `--rounds` rounds load it with each quantization in turn (interleaved, so
 * a busy machine slows every variant alike) and run single-stream decode (`bench --batch 1`).
 * Reports per variant the median decode tokens/s, its ratio to BF16 ("none") in the same
 * rounds, the model's storage bytes, and resident memory right after load: steady (VmRSS) and
 * peak (VmHWM, the load's high-water mark). Writes one JSON with the CPU model and flags.
 *
 *   node --import tsx bench/quant-memory.ts [--shapes smol-128k,llama32-1b] [--rounds 3]
 *        [--threads 2] [--steps 32] [--models-dir DIR] [--json bench/results/FILE.json] [--keep]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';

import { repoRoot } from '../test/native/helpers.ts';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

/** Random-model shapes: --random-shape hidden,layers,heads,kvheads,inter plus vocab and tying. */
const SHAPES: Record<string, { args: string[]; what: string }> = {
  'smol-128k': {
    args: ['--random-shape', '960,32,15,5,2560', '--vocab', '128256', '--tied'],
    what: "SmolLM2-360M's transformer with Llama 3's 128k vocabulary, tied head",
  },
  'llama32-1b': { args: ['--random-shape', '2048,16,32,8,8192', '--vocab', '128256', '--tied'], what: "Llama-3.2-1B's shape (tied head)" },
  'llama3-8b': { args: ['--random-llama3-8b'], what: "Llama-3-8B's shape (untied head)" },
};

const cli = join(repoRoot, 'build', 'cmake', 'openlora-cli');
const shapes = arg('shapes', 'smol-128k,llama32-1b').split(',');
const rounds = Number(arg('rounds', '3'));
const threads = arg('threads', '2');
const steps = arg('steps', '32');
const quants = arg('quantizations', 'none,int8,int4').split(',');
const modelsDir = arg('models-dir', join(tmpdir(), 'openlora-bench-models'));
const jsonOut = arg('json', '');

if (!existsSync(cli)) throw new Error(`${cli} not found: build it with cmake -S . -B build/cmake && cmake --build build/cmake -j`);

function run(args: string[]): string {
  const r = spawnSync(cli, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`openlora-cli ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

interface BenchOut {
  weight_bytes: number;
  model_bytes: number;
  rss_after_load_bytes: number;
  peak_rss_after_load_bytes: number;
  copy_GBps: number;
  rows: { decode_tps: number; prefill_tps: number }[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cpuFlags = existsSync('/proc/cpuinfo')
  ? (readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '').replace(/^flags\s*:\s*/, '')
  : '';
const results: Record<string, unknown> = {};
for (const shape of shapes) {
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown shape ${shape} (${Object.keys(SHAPES).join(', ')})`);
  const dir = join(modelsDir, shape);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    mkdirSync(modelsDir, { recursive: true });
    console.log(`writing ${dir} (${s.what})`);
    run(['write-random', ...s.args, '--threads', threads, '--out-dir', dir]);
  }
  const runs: Record<string, BenchOut[]> = Object.fromEntries(quants.map((q) => [q, []]));
  for (let r = 0; r < rounds; r++) {
    for (const q of quants) {
      const out = join(modelsDir, `${shape}-${q}.json`);
      run(['bench', '--model', dir, '--quantization', q, '--batch', '1', '--adapters', '0', '--steps', steps, '--threads', threads, '--out', out]);
      runs[q].push(JSON.parse(readFileSync(out, 'utf8')) as BenchOut);
      rmSync(out);
    }
  }
  const base = median(runs[quants[0]].map((o) => o.rows[0].decode_tps));
  const variants: Record<string, unknown> = {};
  console.log(`\n${shape}: ${s.what}; ${rounds} interleaved rounds, ${threads} threads, ${steps} decode steps`);
  console.log('quant   decode t/s  vs none  storage MB  rss MB  peak MB  peak/rss');
  for (const q of quants) {
    const tps = runs[q].map((o) => o.rows[0].decode_tps);
    const o = runs[q][0];
    const v = {
      decode_tps_median: median(tps),
      decode_tps_runs: tps,
      decode_vs_none: median(tps) / base,
      model_bytes: o.model_bytes,
      rss_after_load_bytes: median(runs[q].map((x) => x.rss_after_load_bytes)),
      peak_rss_after_load_bytes: median(runs[q].map((x) => x.peak_rss_after_load_bytes)),
      copy_GBps_median: median(runs[q].map((x) => x.copy_GBps)),
    };
    variants[q] = v;
    console.log(
      `${q.padEnd(6)} ${v.decode_tps_median.toFixed(1).padStart(11)} ${v.decode_vs_none.toFixed(2).padStart(8)} ${(v.model_bytes / 1e6).toFixed(0).padStart(11)} ${(v.rss_after_load_bytes / 1e6).toFixed(0).padStart(7)} ${(v.peak_rss_after_load_bytes / 1e6).toFixed(0).padStart(8)} ${(v.peak_rss_after_load_bytes / v.rss_after_load_bytes).toFixed(3).padStart(9)}`,
    );
  }
  results[shape] = { what: s.what, cliArgs: s.args, variants };
  if (!process.argv.includes('--keep')) rmSync(dir, { recursive: true, force: true });
}
if (jsonOut) {
  writeFileSync(
    jsonOut,
    JSON.stringify({ date: new Date().toISOString(), cpu: cpus()[0]?.model, cores: cpus().length, cpuFlags, threads: Number(threads), steps: Number(steps), rounds, results }, null, 2) + '\n',
  );
  console.log(`wrote ${jsonOut}`);
}
