/**
 * The CPU backend's one feature probe (native/cpu/cpu_features.cc: cpuid + xgetbv) agrees with
 * the kernel's view in /proc/cpuinfo for every extension the kernels dispatch on or will: AVX2,
 * FMA, F16C, AVX-512 F/BW/BF16/VNNI, AMX tile/BF16/INT8. The probe is built alone with g++
 * (test/native/cpp/cpu_features_check.cc).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';

import { buildCppCheck, cpuFlags } from './helpers.ts';

const flags = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16', 'amx_int8'];

test('the CPU-feature probe matches /proc/cpuinfo', { skip: process.arch !== 'x64' || !existsSync('/proc/cpuinfo') ? 'needs x86-64 Linux' : false }, (t) => {
  const exe = buildCppCheck('cpu_features_check', ['test/native/cpp/cpu_features_check.cc', 'native/cpu/cpu_features.cc'], '-O1');
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const probed = new Set(r.stdout.trim().split(' '));
  t.diagnostic(`probe: ${r.stdout.trim()}`);
  for (const f of flags) assert.equal(probed.has(f), cpuFlags.has(f), `${f}: probe ${probed.has(f)}, /proc/cpuinfo ${cpuFlags.has(f)}`);
});
