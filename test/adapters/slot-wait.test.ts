/**
 * Issue 11 item 3: no hold-and-wait on adapter slots. A composition with more distinct adapters
 * than slots is refused at once (400, both numbers); a composition waiting for slots holds none,
 * so an unrelated request is served while it waits, and it runs once the slots free up. Operator
 * pins never take the last slot (409), and a 503 says how many slots they hold.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Composition } from '../../adapters/composition.ts';
import { AdapterManager } from '../../adapters/manager.ts';
import { pinComposition } from '../../adapters/pin.ts';
import { toOpenAIError } from '../../plugin/errors.ts';
import { AdapterError } from '../../adapters/errors.ts';
import type { AdapterLease } from '../../adapters/types.ts';
import { ScriptedEngine, tinyInfo, tmpAdapters } from './helpers.ts';

let t: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  t = await tmpAdapters();
  for (const n of ['a', 'b', 'c', 'd', 'long', 'other']) await t.make(n);
});
after(() => t.cleanup());

function setup(slots: number, slotWaitMs = 60_000) {
  const engine = new ScriptedEngine(() => [], { slots, loadDelayMs: 1 });
  const m = new AdapterManager({ engine: engine.asEngine(), baseName: 'tiny', modelInfo: tinyInfo({ maxLoras: slots }), slotWaitMs });
  return { engine, m };
}

test('more distinct adapters than slots: 400 at once stating both numbers, nothing pinned or loaded', async () => {
  const { m, engine } = setup(2);
  for (const n of ['a', 'b', 'c']) await m.register(n, `${t.root}/${n}`);
  const members = ['a', 'b', 'c', 'a'].map((name) => ({ name, weight: 0.25 }));
  await assert.rejects(pinComposition(m, { members, merge: { strategy: 'cat' } as Composition['merge'] }), (err: unknown) => {
    assert.ok(err instanceof AdapterError, String(err));
    assert.equal(err.code, 'too_many_adapters');
    assert.equal(toOpenAIError(err).status, 400);
    assert.match(err.message, /3 distinct adapters .* 2 adapter slots/);
    return true;
  });
  assert.equal(engine.loads.length, 0);
  assert.equal(m.stats().pinned, 0);
});

test('a composition waiting for slots holds none: an unrelated request is served meanwhile', async () => {
  const { m } = setup(2);
  for (const n of ['a', 'b', 'long', 'other']) await m.register(n, `${t.root}/${n}`);
  const long = await m.acquire('long'); // a long request pins one of the two slots
  let composed: Awaited<ReturnType<typeof pinComposition>> | undefined;
  const cat: Composition = { members: [{ name: 'b', weight: 0.5 }, { name: 'a', weight: 0.5 }], merge: { strategy: 'cat' } as Composition['merge'] };
  const waiting = pinComposition(m, cat).then((p) => (composed = p));
  // give the composition every chance to grab what it can
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(composed, undefined, 'it needs two slots; only one is free');
  assert.equal(m.stats().pinned, 1, 'the waiting composition pins nothing');

  // On main the composition held the free slot while waiting, so this waited for `long` too.
  const other = await m.acquire('other');
  assert.equal(composed, undefined);
  other.release();
  long.release();
  const pinned = await waiting;
  assert.equal(pinned.adapters.length, 2);
  assert.notEqual(pinned.adapters[0]!.slot, pinned.adapters[1]!.slot);
  assert.equal(m.stats().pinned, 2);
  pinned.release();
  assert.equal(m.stats().pinned, 0);
});

test('operator pins keep one slot free: the pin that would take the last is a 409 naming lora_name, even when pins race', async () => {
  const { m } = setup(3, 30);
  for (const n of ['a', 'b', 'c', 'd']) await m.register(n, `${t.root}/${n}`);
  const a = await m.acquire('a', { operator: true });
  // b and c race for the one slot operator pins may still take: one gets it.
  const raced = await Promise.allSettled(['b', 'c'].map((n) => m.acquire(n, { operator: true })));
  const won = raced.filter((r): r is PromiseFulfilledResult<AdapterLease> => r.status === 'fulfilled');
  const lost = raced.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.deepEqual([won.length, lost.length], [1, 1]);
  const err = lost[0]!.reason as AdapterError;
  assert.equal(err.code, 'too_many_pins');
  assert.deepEqual([toOpenAIError(err).status, toOpenAIError(err).body.error.param], [409, 'lora_name']);
  assert.match(err.message, /2 of the 3 slots are pinned by an operator/);
  (await m.acquire('a', { operator: true })).release();  // a pinned adapter may be pinned again

  // The free slot serves requests; one more waits, then its 503 says the operator holds two slots.
  const free = won[0]!.value.name === 'b' ? 'c' : 'b';
  const running = await m.acquire(free);
  await assert.rejects(m.acquire('d'), (e: unknown) => {
    assert.ok(e instanceof AdapterError && e.code === 'no_free_slot', String(e));
    assert.match(e.message, /all 3 adapter slots are in use: 2 pinned by an operator \(POST \/v1\/unpin_lora_adapter releases them\), 1 by running requests/);
    return true;
  });
  running.release();
  (await m.acquire('d')).release();

  // A composition of two unpinned members can never get two slots while the operator holds two
  // of three: refused at once (not after slotWaitMs), and nothing blamed on running requests.
  const t0 = performance.now();
  await assert.rejects(m.acquireAll(['c', 'd'].includes(free) ? ['c', 'd'] : ['b', 'd']), (e: unknown) => {
    assert.ok(e instanceof AdapterError && e.code === 'no_free_slot', String(e));
    assert.match(e.message, /the composition needs 2 adapter slots, but operator pins leave only 1 of the 3 \(POST \/v1\/unpin_lora_adapter releases them\)/);
    return true;
  });
  assert.ok(performance.now() - t0 < 25, 'no wait');

  // Unpinning frees the operator's count: another pin fits again.
  won[0]!.value.release();
  (await m.acquire('d', { operator: true })).release();
  a.release();
});

test('without operator pins the 503 says the slots are in use by running requests, as before', async () => {
  const { m } = setup(1, 30);
  for (const n of ['a', 'b']) await m.register(n, `${t.root}/${n}`);
  await assert.rejects(m.acquire('a', { operator: true }), { code: 'too_many_pins' });
  const a = await m.acquire('a');
  await assert.rejects(m.acquire('b'), /all 1 adapter slots are in use by running requests \(waited 30 ms\)/);
  a.release();
});
