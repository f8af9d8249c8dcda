/**
 * The quantized GEMM of EngineOptions.quantization "int8" / "int4" (native/cpu/gemm_quant.cc,
 * gemm_quant_simd.cc): Q8 and Q4 weights with int8 activations against the float32 product of
 * the dequantized weights (within the activation-rounding bound), the format round trip, batch
 * invariance, and the same output bits from every kernel this CPU has (AVX-512 VNNI, AVX2,
 * portable). A kernel this CPU cannot run is skipped, naming the missing feature. The checks are
 * a small C++ driver (test/native/cpp/gemm_quant_check.cc) compiled here with g++.
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
  roundTripFailures: number;
  kernel: string;
  digest: string;
}

const missing = (need: string[]) => need.filter((f) => !cpuFlags.has(f));

function runCheck(force: string): CheckOutput {
  const r = spawnSync(exe, [], { env: { ...process.env, OPENLORA_GEMM: force }, encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as CheckOutput;
}

before(() => {
  exe = buildCppCheck('gemm_quant_check', ['test/native/cpp/gemm_quant_check.cc', 'native/cpu/gemm_quant.cc', 'native/cpu/gemm_quant_simd.cc', 'native/cpu/large_pages.cc', 'native/cpu/dispatch.cc', 'native/cpu/cpu_features.cc', 'native/cpu/thread_pool.cc']);
});

const digests = new Map<string, string>();

function check(t: { diagnostic(s: string): void }, force: string, expect: string): void {
  const out = runCheck(force);
  t.diagnostic(`${out.kernel}: ${out.cases} cases, max error / sum |x w| ${out.maxRelErr.toExponential(2)}`);
  assert.equal(out.kernel, expect);
  assert.equal(out.roundTripFailures, 0, 'format round trip');
  assert.equal(out.failures, 0);
  assert.ok(out.cases >= 150);
  digests.set(out.kernel, out.digest);
}

test('portable kernel: Q8 and Q4 against the float32 product', (t) => check(t, 'portable', 'portable'));

const avx2Missing = missing(['avx2', 'fma', 'f16c']);
test('AVX2 kernel: Q8 and Q4 against the float32 product, same bits as portable', { skip: avx2Missing.length ? `CPU lacks ${avx2Missing.join(', ')}` : false }, (t) => {
  check(t, 'avx2', 'avx2');
  assert.equal(digests.get('avx2'), digests.get('portable'));
});

const vnniMissing = missing(['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni']);
test('AVX-512 VNNI kernel: Q8 and Q4 against the float32 product, same bits as portable', { skip: vnniMissing.length ? `CPU lacks ${vnniMissing.join(', ')}` : false }, (t) => {
  check(t, '', 'avx512vnni');
  assert.equal(digests.get('avx512vnni'), digests.get('portable'));
});
