/**
 * The vectorised SwiGLU gate (native/cpu/ops.cc siluMul with AVX2, exp from simd_math.h) against
 * the portable one on 100k values and the overflow / underflow tails, within 4 float epsilons
 * relative (test/native/cpp/ops_check.cc, built alone with g++). Skips where the CPU lacks AVX2
 * or FMA.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { buildCppCheck, cpuFlags } from './helpers.ts';

const missing = ['avx2', 'fma'].filter((f) => !cpuFlags.has(f));

test('siluMul: the AVX2 gate matches the portable one', { skip: missing.length ? `the CPU lacks ${missing.join(', ')}` : false }, (t) => {
  const exe = buildCppCheck('ops_check', ['test/native/cpp/ops_check.cc', 'native/cpu/ops.cc']);
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { cases: number; failures: number; maxEps: number };
  t.diagnostic(`${out.cases} values, max error ${out.maxEps.toFixed(2)} float epsilons`);
  assert.equal(out.failures, 0);
});
