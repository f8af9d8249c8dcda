/**
 * The packed GEMM of the base model's linear layers (native/cpu/gemm_packed.cc): F32, BF16 and
 * int8 weights against a naive double-precision reference on random shapes, batch invariance bit
 * for bit, and the same output bits from the AVX-512 and AVX2 kernels (one FMA chain per output in
 * both). The checks are a small C++ driver (test/native/cpp/gemm_check.cc) compiled here with g++.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { before, test } from 'node:test';

import { buildCppCheck, cpuFlags } from './helpers.ts';

let exe = '';  // built in before()

interface CheckOutput {
  cases: number;
  failures: number;
  maxRelErr: number;
  kernel: string;
  bf16Kernel: string;
  bf16Act: boolean;
  digest: string;
}

function runCheck(kernel: string, activations = ''): CheckOutput {
  const env = { ...process.env, OPENLORA_GEMM: kernel };
  const args = activations === 'bfloat16' ? ['--bf16-activations'] : [];
  const r = spawnSync(exe, args, { env, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as CheckOutput;
}

before(() => {
  exe = buildCppCheck('gemm_check', ['test/native/cpp/gemm_check.cc', 'native/cpu/gemm_packed.cc', 'native/cpu/packed_matrix.cc', 'native/cpu/gemm_amx.cc', 'native/cpu/large_pages.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc', 'native/cpu/thread_pool.cc']);
});

test('packed gemm matches the reference and is batch-invariant on every kernel, AVX-512 and AVX2 bit-identical', (t) => {
  const digests = new Map<string, string>();
  for (const kernel of ['', 'avx2', 'portable']) {
    const out = runCheck(kernel);
    t.diagnostic(`${out.kernel}: ${out.cases} cases, max relative error ${out.maxRelErr.toExponential(2)}`);
    assert.equal(out.failures, 0);
    assert.ok(out.cases >= 900);
    digests.set(out.kernel, out.digest);
  }
  if (digests.has('avx512') && digests.has('avx2+fma')) assert.equal(digests.get('avx512'), digests.get('avx2+fma'));
});

const hasBf16Dot = cpuFlags.has('avx512_bf16') && cpuFlags.has('avx512bw');
const missingAmx = ['amx_tile', 'amx_bf16', 'avx512bw'].filter((f) => !cpuFlags.has(f));

test('bf16 activations (activationDtype "bfloat16"): every kernel matches the reference on bf16-rounded x, batch-invariant; AVX-512 and AVX2 FMA bit-identical', (t) => {
  const digests = new Map<string, string>();
  for (const kernel of ['avx512', 'avx2', 'portable']) {
    const out = runCheck(kernel, 'bfloat16');
    t.diagnostic(`${out.bf16Kernel}: ${out.cases} cases, max relative error ${out.maxRelErr.toExponential(2)}`);
    assert.equal(out.bf16Act, true);
    assert.equal(out.failures, 0);
    assert.ok(out.cases >= 900);
    digests.set(out.kernel, out.digest);
  }
  if (digests.has('avx512') && digests.has('avx2+fma')) assert.equal(digests.get('avx512'), digests.get('avx2+fma'));
});

test('bf16 activations on vdpbf16ps match the reference on bf16-rounded x and are batch-invariant', { skip: !hasBf16Dot && 'the CPU lacks avx512_bf16 (or avx512bw)' }, (t) => {
  const out = runCheck('avx512-bf16-dot', 'bfloat16');
  t.diagnostic(`${out.bf16Kernel}: ${out.cases} cases, max relative error ${out.maxRelErr.toExponential(2)}`);
  assert.equal(out.bf16Kernel, 'avx512-bf16-dot');
  assert.equal(out.failures, 0);
  assert.ok(out.cases >= 900);
});

test('bf16 activations on AMX-BF16 tiles match the reference on bf16-rounded x and are batch-invariant', { skip: missingAmx.length > 0 && `the CPU lacks ${missingAmx.join(', ')}` }, (t) => {
  const out = runCheck('', 'bfloat16');
  t.diagnostic(`${out.bf16Kernel}: ${out.cases} cases, max relative error ${out.maxRelErr.toExponential(2)}`);
  // amx-bf16 when the kernel granted the tile permission (arch_prctl), else the vdpbf16ps kernel.
  assert.ok(out.bf16Kernel === 'amx-bf16' || out.bf16Kernel === 'avx512-bf16-dot', out.bf16Kernel);
  assert.equal(out.failures, 0);
  assert.ok(out.cases >= 900);
});
