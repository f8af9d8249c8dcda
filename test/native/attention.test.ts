/**
 * CPU paged attention (native/cpu/paged_attention.h) against a naive float64 softmax attention
 * on random inputs: head_dim 32/64/128 and odd sizes, GQA groups 1-16, block sizes 1-64,
 * contexts 1-300; paging, batch composition and thread count change no bit of a row; the
 * vectorised exp within 2 ulp; argument errors; bfloat16 K/V (kvCacheDtype) against the float64
 * reference on the bf16-rounded K/V, bit-identical to float32 K/V holding the same values. AVX2/FMA and the portable fallback
 * (OPENLORA_GEMM=portable). The checks are a small C++ driver (test/native/cpp/attention_check.cc)
 * compiled here with g++.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { before, test } from 'node:test';

import { buildCppCheck } from './helpers.ts';

let exe = '';  // built in before()

before(() => {
  exe = buildCppCheck('attention_check', ['test/native/cpp/attention_check.cc', 'native/cpu/paged_attention.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc', 'native/cpu/thread_pool.cc']);
});

for (const kernel of ['dispatched', 'portable']) {
  test(`paged attention matches the float64 reference and is bit-stable under paging and batching (${kernel} kernels)`, (t) => {
    const env = { ...process.env, OPENLORA_GEMM: kernel === 'portable' ? 'portable' : '' };
    const r = spawnSync(exe, [], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      cases: number; bitCases: number; bf16Cases: number; failures: number; maxRelErr: number; maxRelErrBf16: number; expMaxUlp: number; kernel: string;
    };
    t.diagnostic(`${out.cases} cases + ${out.bitCases} bitwise comparisons on ${out.kernel}, max relative error ${out.maxRelErr.toExponential(2)} ` +
      `(bf16 K/V: ${out.bf16Cases} cases, ${out.maxRelErrBf16.toExponential(2)}), exp max ${out.expMaxUlp.toFixed(2)} ulp`);
    assert.equal(out.failures, 0);
    assert.ok(out.cases > 300 && out.bitCases > 6000 && out.bf16Cases >= 150);
    if (kernel === 'portable') assert.equal(out.kernel, 'portable');
  });
}
