/**
 * Batched multi-LoRA (cpu::sgmv: SGMV prefill segments and BGMV gathered decode rows, several
 * weighted adapters per row, rows without adapters), against naive per-row loops on random inputs (adapters stored F32, BF16 and F16), and that a sequence
 * alone gives bit-identical rows to the same sequence inside the batch: demo shapes (256/128/704) plus odd tails, ranks 1-64,
 * 1-64 adapters, 1-64 sequences, 1-3 threads; AVX2/FMA and the portable fallback.
 * The checks are a small C++ driver (test/native/cpp/sgmv_check.cc) compiled here with g++.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { before, test } from 'node:test';

import { buildCppCheck } from './helpers.ts';

let exe = '';  // built in before()

before(() => {
  exe = buildCppCheck('sgmv_check', ['test/native/cpp/sgmv_check.cc', 'native/cpu/sgmv.cc', 'native/cpu/sgmv_expand.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc', 'native/cpu/thread_pool.cc']);
});

for (const kernel of ['dispatched', 'portable']) {
  test(`sgmv / bgmv match the naive reference (${kernel} kernels)`, (t) => {
    const env = { ...process.env, OPENLORA_GEMM: kernel === 'portable' ? 'portable' : '' };
    const r = spawnSync(exe, [], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { cases: number; failures: number; maxRelErr: number; kernel: string };
    t.diagnostic(`${out.cases} cases on ${out.kernel}, max relative error ${out.maxRelErr.toExponential(2)}`);
    assert.equal(out.failures, 0);
    assert.ok(out.cases > 500);
  });
}
