/**
 * The CPU backend's one feature probe (native/cpu/cpu_features.cc: cpuid + xgetbv) agrees with
 * the kernel's view in /proc/cpuinfo for every extension the kernels dispatch on or will: AVX2,
 * FMA, F16C, AVX-512 F/BW/BF16/VNNI, AMX tile/BF16/INT8. The probe is built alone with g++
 * (test/native/cpp/cpu_features_check.cc).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { repoRoot } from './helpers.ts';

const flags = ['avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16', 'amx_int8'];

test('the CPU-feature probe matches /proc/cpuinfo', { skip: process.arch !== 'x64' || !existsSync('/proc/cpuinfo') ? 'needs x86-64 Linux' : false }, (t) => {
  const exe = join(mkdtempSync(join(tmpdir(), 'openlora-cpufeat-')), 'cpu_features_check');
  const src = ['test/native/cpp/cpu_features_check.cc', 'native/cpu/cpu_features.cc'].map((s) => join(repoRoot, s));
  const build = spawnSync('g++', ['-std=c++17', '-O1', '-o', exe, ...src], { encoding: 'utf8' });
  assert.equal(build.status, 0, `g++ failed: ${build.error?.message ?? ''}${build.stderr}`);
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const probed = new Set(r.stdout.trim().split(' '));
  t.diagnostic(`probe: ${r.stdout.trim()}`);
  const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '';
  const cpuinfo = new Set(line.replace(/^flags\s*:\s*/, '').split(/\s+/));
  for (const f of flags) assert.equal(probed.has(f), cpuinfo.has(f), `${f}: probe ${probed.has(f)}, /proc/cpuinfo ${cpuinfo.has(f)}`);
});
