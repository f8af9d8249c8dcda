/**
 * The CPU thread pool's parallelFor (native/cpu/thread_pool.cc) under its Guided and Even
 * schedules, 1-4 threads: every item exactly once, claims no smaller than the grain but the last,
 * at most one Even claim per thread, exceptions rethrown (test/native/cpp/thread_pool_check.cc,
 * built alone with g++).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import { buildCppCheck } from './helpers.ts';

test('ThreadPool.parallelFor: every item once under both schedules', (t) => {
  const exe = buildCppCheck('thread_pool_check', ['test/native/cpp/thread_pool_check.cc', 'native/cpu/thread_pool.cc']);
  const r = spawnSync(exe, [], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { jobs: number; failures: number };
  t.diagnostic(`${out.jobs} jobs`);
  assert.equal(out.failures, 0);
});
