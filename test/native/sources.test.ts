/**
 * native/sources.json is the one list of native sources and CUDA architectures: every C++ / CUDA
 * file of the tree is listed there exactly once, and the build files read it instead of keeping
 * their own lists (issue 12: a new .cc built with CMake and failed under npm).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { repoRoot } from './helpers.ts';

const sources = JSON.parse(readFileSync(join(repoRoot, 'native', 'sources.json'), 'utf8')) as Record<string, string[]>;
const read = (p: string) => readFileSync(join(repoRoot, p), 'utf8');

test('every native .cc / .cu is listed once in native/sources.json', () => {
  const listed = Object.entries(sources).filter(([k]) => k !== '//' && k !== 'cudaArchitectures').flatMap(([, v]) => v);
  assert.equal(new Set(listed).size, listed.length, 'no file twice');
  const onDisk: string[] = [];
  for (const dir of ['native/src', 'native/cpu', 'native/cuda', 'native/cli', 'test/native/cuda']) {
    for (const f of readdirSync(join(repoRoot, dir))) if (/\.(cc|cu)$/.test(f)) onDisk.push(`${dir}/${f}`);
  }
  // device_probe.cu is run.mjs's own probe, built alone.
  const missing = onDisk.filter((f) => !listed.includes(f) && f !== 'test/native/cuda/device_probe.cu');
  assert.deepEqual(missing, [], 'add these to native/sources.json');
  assert.deepEqual(listed.filter((f) => !onDisk.includes(f)), [], 'listed but not on disk');
});

test('binding.gyp, CMakeLists.txt and build.mjs read the list and the architectures from it', () => {
  const gyp = read('binding.gyp');
  const cmake = read('CMakeLists.txt');
  const build = read('native/build.mjs');
  assert.match(gyp, /native\/sources\.json/);
  assert.match(cmake, /native\/sources\.json/);
  assert.match(build, /sources\.json/);
  for (const [name, text] of [['binding.gyp', gyp], ['CMakeLists.txt', cmake], ['native/build.mjs', build]]) {
    assert.doesNotMatch(text, /"native\/(src|cpu)\/[a-z_]+\.cc"|GLOB/, `${name} keeps no source list of its own`);
    assert.doesNotMatch(text, /sm_80|\b80-real|'90a'/, `${name} keeps no architecture list of its own`);
  }
  assert.ok(sources.cudaArchitectures.length > 0);
});
