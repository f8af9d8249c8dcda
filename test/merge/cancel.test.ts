/**
 * An abandoned merge stops (adapters/merge-cache.ts): when the last request waiting for a merge
 * leaves (its AbortSignal aborts), the worker thread exits (no CPU work continues), nothing is
 * registered and no folder stays on disk; a request that leaves while others wait does not stop
 * it. A merge past the time limit fails with 504-class `merge_timeout` naming `merge` and the limit.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { generateAdapters } from '../../bench/adapters-gen.ts';
import { AdapterError } from '../../adapters/errors.ts';
import type { Composition } from '../../adapters/composition.ts';
import { MergeCache } from '../../adapters/merge-cache.ts';
import { EXAMPLES, tinyInfo } from '../adapters/helpers.ts';
import { fakeMergeHost as host } from './fake-host.ts';

let tmp: string;
before(async () => void (tmp = await mkdtemp(join(tmpdir(), 'openlora-merge-cancel-'))));
after(async () => rm(tmp, { recursive: true, force: true }));

const tiesSvd = (a: string, b: string): Composition =>
  ({ members: [{ name: a, weight: 0.5 }, { name: b, weight: 0.5 }], merge: { strategy: 'ties_svd', density: 0.5, svd_rank: 8 } }) as unknown as Composition;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('the last waiter leaving stops the merge worker; nothing is registered or left on disk', async () => {
  // 48 layers of rank-64 adapters: a ties_svd merge of several seconds, so it is mid-computation when abandoned.
  const model = join(tmp, 'model');
  await mkdir(model);
  const shape = { hidden_size: 256, intermediate_size: 704, num_hidden_layers: 48, num_attention_heads: 8, num_key_value_heads: 4, head_dim: 32 };
  writeFileSync(join(model, 'config.json'), JSON.stringify(shape));
  const gen = generateAdapters(model, 2, { dir: join(tmp, 'adapters'), rankChoices: [64] });
  const info = tinyInfo({ hiddenSize: 256, intermediateSize: 704, numHiddenLayers: 48, numAttentionHeads: 8, numKeyValueHeads: 4, headDim: 32 });
  const h = host({ a: join(gen.dir, gen.names[0]!), b: join(gen.dir, gen.names[1]!) });
  const workers: Worker[] = [];
  const out = join(tmp, 'merges');
  const cache = new MergeCache(h, info, out, { onWorker: (w) => workers.push(w) });

  const first = new AbortController();
  const second = new AbortController();
  const p1 = cache.acquire(tiesSvd('a', 'b'), first.signal);
  const p2 = cache.acquire(tiesSvd('a', 'b'), second.signal);  // joins the same computation
  const rejected = [p1, p2].map((p) => p.then(() => 'resolved', (e: unknown) => (e as AdapterError).code));
  for (let i = 0; i < 500 && workers.length === 0; i++) await sleep(10);
  assert.equal(workers.length, 1, 'one worker computes the merge');
  const worker = workers[0]!;
  let exited = false;
  const exit = new Promise<void>((r) => worker.once('exit', () => { exited = true; r(); }));
  await sleep(1500);  // past the worker's start-up: computing modules now
  assert.equal(exited, false, 'the merge is still computing (the test needs a slower shape otherwise)');

  first.abort();
  assert.equal(await rejected[0], 'merge_cancelled');
  await sleep(300);
  assert.equal(exited, false, 'another request still waits: the merge goes on');

  const t0 = performance.now();
  second.abort();
  assert.equal(await rejected[1], 'merge_cancelled');
  await exit;
  assert.ok(performance.now() - t0 < 1000, 'the worker exits at once, mid-module');
  assert.equal(cache.inFlightCount, 0);
  for (let i = 0; i < 100 && (await readdir(out).catch(() => [])).length > 0; i++) await sleep(20);
  assert.deepEqual(await readdir(out).catch(() => []), [], 'the partial merge folder is deleted');
  assert.deepEqual(h.registered, []);
  assert.equal(cache.computed, 0);
});

test('a merge past the time limit fails with merge_timeout naming merge and the limit, and is remembered', async () => {
  const h = host({ whisper: join(EXAMPLES, 'whisper'), romeo: join(EXAMPLES, 'romeo') });
  const out = join(tmp, 'timeout');
  const cache = new MergeCache(h, tinyInfo(), out, { timeoutMs: 20 });  // less than the worker's start-up
  const check = (e: unknown) => {
    assert.ok(e instanceof AdapterError);
    assert.equal(e.code, 'merge_timeout');
    assert.equal(e.param, 'merge');
    assert.match(e.message, /^merge: .*0\.02 s limit/);
    return true;
  };
  await assert.rejects(cache.acquire(tiesSvd('whisper', 'romeo')), check);
  assert.deepEqual(await readdir(out).catch(() => []), []);
  assert.deepEqual(h.registered, []);
  await assert.rejects(cache.acquire(tiesSvd('whisper', 'romeo')), check);
  assert.equal(cache.refusedFromMemory, 1, 'repeating it costs no computation');
});
