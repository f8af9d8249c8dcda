/**
 * The vectorised SwiGLU gate (native/cpu/ops.cc siluMul with AVX2, exp from simd_math.h) against
 * the portable one on 100k values and the overflow / underflow tails, within 4 float epsilons
 * relative (test/native/cpp/ops_check.cc, built alone with g++). Skips where the CPU lacks AVX2
 * or FMA.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { repoRoot } from './helpers.ts';

const flags = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
const missing = ['avx2', 'fma'].filter((f) => !new RegExp(`^flags\\s*:.*\\b${f}\\b`, 'm').test(flags));

test('siluMul: the AVX2 gate matches the portable one', { skip: missing.length ? `the CPU lacks ${missing.join(', ')}` : false }, (t) => {
  const exe = join(mkdtempSync(join(tmpdir(), 'openlora-ops-')), 'ops_check');
  const src = ['test/native/cpp/ops_check.cc', 'native/cpu/ops.cc'].map((s) => join(repoRoot, s));
  const build = spawnSync('g++', ['-std=c++17', '-O2', '-o', exe, ...src], { encoding: 'utf8' });
  assert.equal(build.status, 0, `g++ failed: ${build.error?.message ?? ''}${build.stderr}`);
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { cases: number; failures: number; maxEps: number };
  t.diagnostic(`${out.cases} values, max error ${out.maxEps.toFixed(2)} float epsilons`);
  assert.equal(out.failures, 0);
});
