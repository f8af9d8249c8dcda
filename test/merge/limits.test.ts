/**
 * MergeCache bounds distinct merge computations per base (adapters/merge-cache.ts): at most
 * maxRunning compute, at most maxQueued wait, one more distinct merge gets 503-class
 * `merges_busy` with a retry hint; requests for a merge already running join it; the queue drains.
 * It also keeps at most maxKept merges: the least recently acquired is unregistered and its folder deleted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AdapterError } from '../../adapters/errors.ts';
import type { Composition } from '../../adapters/composition.ts';
import { MergeCache } from '../../adapters/merge-cache.ts';
import { EXAMPLES, tinyInfo } from '../adapters/helpers.ts';
import { fakeMergeHost } from './fake-host.ts';

let tmp: string;
before(async () => void (tmp = await mkdtemp(join(tmpdir(), 'openlora-merge-limits-'))));
after(async () => rm(tmp, { recursive: true, force: true }));

/** A host that knows the demo's adapters by folder and records what it registers. */
const fakeHost = () => fakeMergeHost({ whisper: join(EXAMPLES, 'whisper'), romeo: join(EXAMPLES, 'romeo') });

const linear = (w: number): Composition =>
  ({
    members: [
      { name: 'whisper', weight: w },
      { name: 'romeo', weight: 1 - w },
    ],
    merge: { strategy: 'linear' },
  }) as unknown as Composition;

test('one running, one queued: the third distinct merge is refused with merges_busy; joining and draining work', async () => {
  const host = fakeHost();
  const cache = new MergeCache(host, tinyInfo(), tmp, { maxRunning: 1, maxQueued: 1 });
  const first = cache.acquire(linear(0.3));
  const joined = cache.acquire(linear(0.3)); // same merge: joins the running computation
  const second = cache.acquire(linear(0.4));
  // nameOf awaits identities first: let both reach the limiter before the third asks.
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  await assert.rejects(cache.acquire(linear(0.5)), (e: unknown) => {
    assert.ok(e instanceof AdapterError);
    assert.equal(e.code, 'merges_busy');
    assert.ok(e.retryAfterSeconds >= 1);
    assert.match(e.message, /1 merges are being computed and 1 are waiting/);
    return true;
  });
  await Promise.all([first, joined, second]);
  assert.equal(cache.computed, 2);
  assert.equal(host.registered.length, 2);
  // The queue drained: the refused merge now computes.
  await cache.acquire(linear(0.5));
  assert.equal(cache.computed, 3);
});

test('at most maxKept merges are kept: the least recently acquired is unregistered and its folder deleted (after its requests end)', async () => {
  const host = fakeHost();
  const dir = join(tmp, 'kept');
  const cache = new MergeCache(host, tinyInfo(), dir, { maxKept: 2 });
  const a = (await cache.nameOf(linear(0.1))).name;
  const b = (await cache.nameOf(linear(0.2))).name;
  const c = (await cache.nameOf(linear(0.3))).name;
  await cache.acquire(linear(0.1));
  await cache.acquire(linear(0.2));
  await cache.acquire(linear(0.1)); // a is now the most recently used: b goes first
  host.draining.add(b); // b still has a request running: its folder must stay until it ends
  await cache.acquire(linear(0.3));
  assert.equal(cache.size, 2);
  assert.equal(cache.evicted, 1);
  assert.ok(host.get(a) && host.get(c) && !host.get(b), 'b unregistered, a and c kept');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual((await readdir(dir)).sort(), [a, b, c].sort(), 'b is still read: its folder stays');
  host.draining.delete(b);
  await cache.acquire(linear(0.3)); // any later acquire sweeps the retired folders
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual((await readdir(dir)).sort(), [a, c].sort());
  // A retired merge asked for again is computed again.
  await cache.acquire(linear(0.2));
  assert.equal(cache.computed, 4);
  assert.equal(cache.size, 2);
});
