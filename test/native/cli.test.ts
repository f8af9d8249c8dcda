/**
 * openlora-cli (native/cli, CMakeLists.txt): the engine core built as a standalone C++ library
 * with no Node, checked against the demo model's reference and run through a tiny bench, the
 * ceilings and the decode-attention timing.
 * Skipped when cmake is not on PATH. A CPU-only incremental build (build/cmake-test): ~25 s
 * from clean on 2 cores, ~1 s when nothing changed.
 * By hand: cmake -S . -B build/cmake && cmake --build build/cmake -j && build/cmake/openlora-cli --help
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { adaptersDir, modelDir, referencePath, repoRoot } from './helpers.ts';

const hasCmake = spawnSync('cmake', ['--version']).status === 0;
const buildDir = join(repoRoot, 'build', 'cmake-test');
const cli = join(buildDir, 'openlora-cli');

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, OPENLORA_NO_CUDA: '1' } });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test('openlora-cli: the core builds without Node and matches the reference', { skip: !hasCmake && 'cmake not found', timeout: 180_000 }, () => {
  let r = run('cmake', ['-S', repoRoot, '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release', '-DOPENLORA_NO_CUDA=ON']);
  assert.equal(r.status, 0, r.out);
  r = run('cmake', ['--build', buildDir, '-j', '2']);
  assert.equal(r.status, 0, r.out);

  const out = join(buildDir, 'check.json');
  r = run(cli, ['check', '--model', modelDir, '--adapters', adaptersDir, '--reference', referencePath, '--threads', '2', '--out', out]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /check PASS/);
  const res = JSON.parse(readFileSync(out, 'utf8')) as { pass: boolean; configs: Record<string, { max_abs_err: number }> };
  assert.equal(res.pass, true);
  for (const name of ['base', 'shout', 'whisper', 'romeo', 'rs', 'cat_shout0.5_whisper0.5']) {
    assert.ok(res.configs[name].max_abs_err < 1e-3, `${name}: ${res.configs[name].max_abs_err}`);
  }

  r = run(cli, ['bench', '--random-shape', '64,2,4,2,128', '--vocab', '256', '--batch', '1,4', '--adapters', '0,2', '--steps', '2', '--threads', '1']);
  assert.equal(r.status, 0, r.out);
  assert.equal((r.out.match(/^\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+/gm) ?? []).length, 4, r.out);

  // Ceilings: every figure the CPU can measure is there, and a missing one names the missing flag.
  r = run(cli, ['ceilings', '--buffer-mib', '64', '--threads', '2']);
  assert.equal(r.status, 0, r.out);
  const ceil = JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, unknown> & { missing: Record<string, string>; features: string };
  const has = (f: string) => ceil.features.split(' ').includes(f);
  assert.ok((ceil.read_GBps_1t as number) > 0 && (ceil.read_GBps as number) > 0, r.out);
  if (has('avx2')) assert.ok((ceil.fp32_fma_avx2_GFLOPs as number) > 0, r.out);
  if (has('avx512f')) assert.ok((ceil.fp32_fma_avx512_GFLOPs as number) > 0, r.out);
  else assert.match(ceil.missing.avx512, /avx512f/);
  if (has('avx512_bf16')) assert.ok((ceil.bf16_dot_avx512_GFLOPs as number) > 0, r.out);
  else assert.match(ceil.missing.bf16_dot, /avx512_bf16/);
  if (!has('amx_bf16')) assert.match(ceil.missing.amx_bf16, /amx/);

  // Decode attention alone: one figure per context (the second crosses a partition edge).
  r = run(cli, ['attention', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--ctx', '40,600', '--kv-cache-dtype', 'bfloat16', '--rounds', '2', '--threads', '2']);
  assert.equal(r.status, 0, r.out);
  const att = JSON.parse(r.out.trim().split('\n').pop()!) as { kv_cache_dtype: string; runs: { ctx: number; median_ms: number; kv_GBps: number }[] };
  assert.equal(att.kv_cache_dtype, 'bfloat16');
  assert.deepEqual(att.runs.map((x) => x.ctx), [40, 600]);
  for (const x of att.runs) assert.ok(x.median_ms > 0 && x.kv_GBps > 0, r.out);
  r = run(cli, ['attention', '--ctx', '0']);
  assert.equal(r.status, 2, r.out);
  assert.match(r.out, /--ctx/);

  // write-random: a loadable folder; Llama 3's stop ids at its 128256-id vocabulary (its
  // tokenizer.json beside the weights must stop on <|eot_id|>, not on id 2 = "#"), or as given.
  const rnd = join(buildDir, 'random-model');
  r = run(cli, ['write-random', '--random-shape', '64,1,2,1,128', '--vocab', '128256', '--tied', '--out-dir', rnd]);
  assert.equal(r.status, 0, r.out);
  let cfg = JSON.parse(readFileSync(join(rnd, 'config.json'), 'utf8')) as { bos_token_id: number; eos_token_id: number | number[]; vocab_size: number };
  assert.deepEqual([cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id], [128256, 128000, [128001, 128008, 128009]]);
  r = run(cli, ['write-random', '--random-shape', '64,1,2,1,128', '--vocab', '300', '--eos-token-id', '7,9', '--out-dir', rnd]);
  assert.equal(r.status, 0, r.out);
  cfg = JSON.parse(readFileSync(join(rnd, 'config.json'), 'utf8')) as typeof cfg;
  assert.deepEqual([cfg.vocab_size, cfg.bos_token_id, cfg.eos_token_id], [300, 1, [7, 9]]);
  r = run(cli, ['logits', '--model', rnd, '--prompt-ids', '1,2,3']);
  assert.equal(r.status, 0, r.out);

  // No CUDA in this build: asking for it is a SKIP (exit 3), never a crash.
  r = run(cli, ['logits', '--model', modelDir, '--prompt-ids', '1,2,3', '--backend', 'cuda']);
  assert.equal(r.status, 3, r.out);
  assert.match(r.out, /SKIP/);
});
