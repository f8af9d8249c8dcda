/**
 * Batched multi-LoRA (cpu::sgmv: SGMV prefill segments and BGMV gathered decode rows, several
 * weighted adapters per row, rows without adapters), against naive per-row loops on random inputs (adapters stored F32, BF16 and F16), and that a sequence
 * alone gives bit-identical rows to the same sequence inside the batch: demo shapes (256/128/704) plus odd tails, ranks 1-64,
 * 1-64 adapters, 1-64 sequences, 1-3 threads; AVX-512 (skipped naming the missing flags where the CPU
 * lacks them), AVX2/FMA and the portable fallback. And cpu::fusedProjections (base products and LoRA in one
 * job, test/native/cpp/fused_lora_check.cc) against the unfused products + bias + sgmv, bit for bit.
 * The checks are a small C++ driver (test/native/cpp/sgmv_check.cc) compiled here with g++.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { before, test } from 'node:test';

import { buildCppCheck, cpuFlags } from './helpers.ts';

let exe = '';  // built in before()
let fusedExe = '';

const sgmvSources = ['native/cpu/sgmv.cc', 'native/cpu/sgmv_expand.cc', 'native/cpu/sgmv_avx512.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc', 'native/cpu/thread_pool.cc'];
before(() => {
  exe = buildCppCheck('sgmv_check', ['test/native/cpp/sgmv_check.cc', ...sgmvSources]);
  fusedExe = buildCppCheck('fused_lora_check', ['test/native/cpp/fused_lora_check.cc', 'native/cpu/fused_lora.cc', 'native/cpu/gemm_packed.cc', 'native/cpu/packed_matrix.cc', 'native/cpu/gemm_amx.cc', 'native/cpu/large_pages.cc', 'native/cpu/ops.cc', ...sgmvSources]);
});

const missingAvx512 = ['avx512f', 'avx512bw'].filter((f) => !cpuFlags.has(f));
const missingAvx2 = ['avx2', 'fma'].filter((f) => !cpuFlags.has(f));
/** Each kernel family, forced through OPENLORA_GEMM, with the CPU flags it needs. */
const kernels = [
  { kernel: 'avx512', env: '', missing: missingAvx512 },
  { kernel: 'avx2+fma', env: 'avx2', missing: missingAvx2 },
  { kernel: 'portable', env: 'portable', missing: [] as string[] },
];

for (const { kernel, env, missing } of kernels) {
  test(`sgmv / bgmv match the naive reference (${kernel} kernels)`, { skip: missing.length > 0 && `the CPU lacks ${missing.join(', ')}` }, (t) => {
    const r = spawnSync(exe, [], { env: { ...process.env, OPENLORA_GEMM: env }, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { cases: number; failures: number; maxRelErr: number; kernel: string };
    t.diagnostic(`${out.cases} cases on ${out.kernel}, max relative error ${out.maxRelErr.toExponential(2)}`);
    assert.equal(out.kernel, kernel);
    assert.equal(out.failures, 0);
    assert.ok(out.cases > 500);
  });
}

for (const { kernel, env, missing } of kernels) {
  test(`base products and LoRA as one job give the bits of the unfused path (${kernel} kernels)`, { skip: missing.length > 0 && `the CPU lacks ${missing.join(', ')}` }, () => {
    const r = spawnSync(fusedExe, [], { env: { ...process.env, OPENLORA_GEMM: env }, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { cases: number; failures: number; kernel: string };
    assert.equal(out.kernel, kernel);
    assert.equal(out.failures, 0);
    assert.ok(out.cases > 200);
  });
}
