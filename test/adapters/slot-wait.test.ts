/**
 * Issue 11 item 3: no hold-and-wait on adapter slots. A composition with more distinct adapters
 * than slots is refused at once (400, both numbers); a composition waiting for slots holds none,
 * so an unrelated request is served while it waits, and it runs once the slots free up.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Composition } from '../../adapters/composition.ts';
import { AdapterManager } from '../../adapters/manager.ts';
import { pinComposition } from '../../adapters/pin.ts';
import { toOpenAIError } from '../../plugin/errors.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { ScriptedEngine, tinyInfo, tmpAdapters } from './helpers.ts';

let t: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  t = await tmpAdapters();
  for (const n of ['a', 'b', 'c', 'long', 'other']) await t.make(n);
});
after(() => t.cleanup());

function setup(slots: number) {
  const engine = new ScriptedEngine(() => [], { slots, loadDelayMs: 1 });
  const m = new AdapterManager({ engine: engine.asEngine(), baseName: 'tiny', modelInfo: tinyInfo({ maxLoras: slots }), slotWaitMs: 60_000 });
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
