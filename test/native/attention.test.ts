/**
 * CPU paged attention (native/cpu/paged_attention.h) against a naive float64 softmax attention
 * on random inputs: head_dim 32/64/128 and odd sizes, GQA groups 1-16, block sizes 1-64,
 * contexts 1-1601; paging, batch composition and thread count change no bit of a row; the
 * vectorised exp within 2 ulp; argument errors; bfloat16 K/V (kvCacheDtype) against the float64
 * reference on the bf16-rounded K/V, bit-identical to float32 K/V holding the same values. The
 * dispatched kernels (AVX-512 scores and P.V where the CPU has it: the same bits as AVX2, compared
 * by a fingerprint of the outputs), AVX2/FMA (OPENLORA_GEMM=avx2) and the portable fallback
 * (OPENLORA_GEMM=portable). Contexts up to 1601 cross partition edges (kAttentionPartition). The checks are a small C++ driver (test/native/cpp/attention_check.cc)
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

const hashes = new Map<string, string>();  // kernel -> fingerprint of every output the check computed alone

for (const kernel of ['dispatched', 'avx2', 'portable']) {
  test(`paged attention matches the float64 reference and is bit-stable under paging and batching (${kernel} kernels)`, (t) => {
    const env = { ...process.env, OPENLORA_GEMM: kernel === 'dispatched' ? '' : kernel };
    const r = spawnSync(exe, [], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      cases: number; bitCases: number; bf16Cases: number; failures: number; maxRelErr: number; maxRelErrBf16: number; expMaxUlp: number; kernel: string;
      outputHash: string;
    };
    hashes.set(kernel, out.outputHash);
    t.diagnostic(`${out.cases} cases + ${out.bitCases} bitwise comparisons on ${out.kernel}, max relative error ${out.maxRelErr.toExponential(2)} ` +
      `(bf16 K/V: ${out.bf16Cases} cases, ${out.maxRelErrBf16.toExponential(2)}), exp max ${out.expMaxUlp.toFixed(2)} ulp`);
    assert.equal(out.failures, 0);
    assert.ok(out.cases > 300 && out.bitCases > 6000 && out.bf16Cases >= 150);
    if (kernel === 'portable') assert.equal(out.kernel, 'portable');
    if (kernel === 'avx2') assert.ok(!out.kernel.includes('avx512'), out.kernel);
  });
}

test('the AVX-512 q.k scores (two heads a register) and P.V update give the AVX2 kernel\'s bits', (t) => {
  const dispatched = hashes.get('dispatched'), avx2 = hashes.get('avx2');
  if (!dispatched || !avx2) return t.skip('an attention check above failed');
  assert.equal(dispatched, avx2);
});
