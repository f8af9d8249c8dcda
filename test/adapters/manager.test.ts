import assert from 'node:assert/strict';
import { mkdir, open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { AdapterManager, type Logger } from '../../adapters/manager.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { NativeError } from '../../native/errors.ts';
import { EXAMPLES, ScriptedEngine, loraConfig, tinyInfo, tmpAdapters } from './helpers.ts';

let t: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  t = await tmpAdapters();
  for (const n of ['a', 'b', 'c']) await t.make(n);
});
after(() => t.cleanup());

// pino's logger must satisfy the manager's Logger type (checked by tsc).
const _pinoFits: Logger = pino({ level: 'silent' });
void _pinoFits;

/** A manager over `slots` fake slots; `warnings` collects log.warn messages. */
function setup(slots = 4, opts: { delayMs?: number; slotWaitMs?: number } = {}) {
  const engine = new ScriptedEngine(() => [], { slots, loadDelayMs: opts.delayMs ?? 5 });
  const warnings: string[] = [];
  const log: Logger = { info() {}, error() {}, warn: (obj, msg) => void warnings.push(`${msg} ${JSON.stringify(obj)}`) };
  const m = new AdapterManager({ engine: engine.asEngine(), baseName: 'tiny', modelInfo: tinyInfo({ maxLoras: slots }), log, slotWaitMs: opts.slotWaitMs });
  return { engine, m, warnings };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('registry', () => {
  test('scanDirectory registers the demo adapters with rank and targets', async () => {
    const { m, engine } = setup();
    const res = await m.scanDirectory(EXAMPLES);
    assert.deepEqual(res.registered.map((a) => a.name), ['romeo', 'rs', 'shout', 'whisper']);
    assert.deepEqual(res.skipped, []);
    const rs = m.get('rs')!;
    assert.equal(rs.base, 'tiny');
    assert.equal(rs.dir, join(EXAMPLES, 'rs').replace(/\/$/, ''));
    assert.deepEqual([rs.rank, rs.alpha, rs.useRslora, rs.targetModules], [4, 8, true, ['o_proj', 'down_proj']]);
    assert.deepEqual(m.get('shout')!.targetModules.length, 7);
    assert.ok(Number.isInteger(rs.created) && rs.created > 1.6e9);
    assert.equal(m.list().length, 4);
    assert.equal(m.get('nope'), undefined);
    assert.equal(engine.loads.length, 0, 'registration reads no tensors');
  });

  test('scanDirectory skips invalid names and invalid adapters with a warning, ignores other folders', async () => {
    const s = await tmpAdapters();
    try {
      await s.make('good');
      await s.make('has:colon');
      await s.make('a@b');
      await s.make('.hidden');
      await s.make('dora', loraConfig({ use_dora: true }));
      await mkdir(join(s.root, 'not-an-adapter'));
      const { m, warnings } = setup();
      const res = await m.scanDirectory(s.root);
      assert.deepEqual(res.registered.map((a) => a.name), ['good']);
      assert.deepEqual(res.skipped.map((x) => x.name).sort(), ['.hidden', 'a@b', 'dora', 'has:colon']);
      assert.match(res.skipped.find((x) => x.name === 'dora')!.reason, /use_dora=true \(DoRA\) is not supported/);
      assert.match(res.skipped.find((x) => x.name === 'has:colon')!.reason, /invalid adapter name "has:colon"/);
      assert.equal(warnings.length, 4);
      await assert.rejects(m.scanDirectory(join(s.root, 'absent')), /cannot read adapter directory/);
    } finally {
      await s.cleanup();
    }
  });

  test('register: invalid name 400, same name from another folder 409, same folder is idempotent', async () => {
    const { m } = setup();
    await assert.rejects(m.register('x+y', join(t.root, 'a')), (e: unknown) => e instanceof AdapterError && e.code === 'invalid_adapter');
    const a = await m.register('a', join(t.root, 'a'));
    assert.equal(await m.register('a', join(t.root, 'a')), a);
    await assert.rejects(m.register('a', join(t.root, 'b')), (e: unknown) => e instanceof AdapterError && e.code === 'adapter_name_conflict' && /already registered/.test(e.message));
  });

  test('acquire of an unknown name is an AdapterError model_not_found', async () => {
    const { m } = setup();
    await assert.rejects(m.acquire('ghost'), (e: unknown) => e instanceof AdapterError && e.code === 'model_not_found' && /tiny:ghost/.test(e.message));
  });
});

describe('residency', () => {
  test('single-flight: 50 concurrent acquires of a cold adapter load it once', async () => {
    const { m, engine } = setup(4, { delayMs: 30 });
    await m.register('a', join(t.root, 'a'));
    const leases = await Promise.all(Array.from({ length: 50 }, () => m.acquire('a')));
    assert.equal(engine.loads.length, 1);
    assert.equal(engine.loads[0]!.modules.length, 8);
    assert.equal(new Set(leases.map((l) => l.slot)).size, 1);
    const { host, disk, prefetchedWhileWaiting, draining, ...st } = m.stats();
    assert.deepEqual({ ...st, hits: 0 }, { registered: 1, resident: 1, pinned: 1, hits: 0, loads: 1, engineLoads: 1, loadFailures: 0, evictions: 0, slotWaits: 0, slotTimeouts: 0 });
    assert.deepEqual([host.loads, host.misses, host.entries, prefetchedWhileWaiting, draining, disk.downloads], [1, 1, 1, 0, 0, 0], 'one disk read (host fill) for 50 acquires');
    for (const l of leases) l.release();
    assert.equal(m.stats().pinned, 0);
    const again = await m.acquire('a');
    assert.equal(m.stats().hits, 1);
    assert.equal(engine.loads.length, 1);
    again.release();
  });

  test('release is idempotent', async () => {
    const { m } = setup();
    await m.register('a', join(t.root, 'a'));
    const l1 = await m.acquire('a');
    const l2 = await m.acquire('a');
    l1.release();
    l1.release();
    assert.equal(m.stats().pinned, 1, 'the second lease still pins');
    l2.release();
    assert.equal(m.stats().pinned, 0);
  });

  test('LRU: a full pool evicts the least recently used unpinned adapter', async () => {
    const { m, engine } = setup(2);
    for (const n of ['a', 'b', 'c']) await m.register(n, join(t.root, n));
    const use = async (n: string) => {
      const l = await m.acquire(n);
      l.release();
      return l.slot;
    };
    const sa = await use('a');
    const sb = await use('b');
    await use('a'); // a is now more recent than b
    const sc = await use('c');
    assert.deepEqual(engine.unloads, [sb]);
    assert.equal(sc, sb);
    assert.equal(m.stats().evictions, 1);
    assert.equal(await use('a'), sa);
    assert.equal(engine.loads.length, 3, 'a stayed resident');
    await use('b'); // evicts c (LRU now)
    assert.deepEqual(engine.unloads, [sb, sc]);
  });

  test('every slot pinned: waits for a release, then loads', async () => {
    const { m, engine } = setup(1, { slotWaitMs: 5000 });
    await m.register('a', join(t.root, 'a'));
    await m.register('b', join(t.root, 'b'));
    const la = await m.acquire('a');
    const pending = m.acquire('b');
    // until b is waiting for the slot (its host-tier read first takes a while on a loaded machine)
    for (let i = 0; i < 1000 && m.stats().slotWaits === 0; i++) await sleep(5);
    assert.equal(engine.loads.length, 1, 'b waits, not loaded');
    la.release();
    const lb = await pending;
    assert.equal(lb.slot, la.slot);
    assert.deepEqual(engine.unloads, [la.slot]);
    assert.equal(m.stats().slotWaits, 1);
    lb.release();
  });

  test('every slot pinned past slotWaitMs: no_free_slot (503), nothing leaked', async () => {
    const { m, engine } = setup(1, { slotWaitMs: 60 });
    await m.register('a', join(t.root, 'a'));
    await m.register('b', join(t.root, 'b'));
    const la = await m.acquire('a');
    const t0 = performance.now();
    await assert.rejects(m.acquire('b'), (e: unknown) => e instanceof AdapterError && e.code === 'no_free_slot' && /all 1 adapter slots are in use/.test(e.message));
    assert.ok(performance.now() - t0 >= 50);
    assert.equal(engine.loads.length, 1);
    assert.equal(m.stats().slotTimeouts, 1);
    assert.equal(m.stats().pinned, 1);
    la.release();
    (await m.acquire('b')).release();
    assert.deepEqual(engine.unloads, [la.slot]);
  });

  test('an engine failure leaves no slot used; the next acquire retries', async () => {
    const { m, engine } = setup(1);
    await m.register('a', join(t.root, 'a'));
    await m.register('b', join(t.root, 'b'));
    engine.failNext = 1;
    const all = await Promise.allSettled(Array.from({ length: 10 }, () => m.acquire('a')));
    assert.ok(all.every((r) => r.status === 'rejected' && r.reason instanceof AdapterError && r.reason.code === 'invalid_adapter' && /adapter a: the engine refused .*simulated engine failure/.test(r.reason.message)));
    assert.equal(engine.loads.length, 1, 'one load for 10 concurrent acquires');
    assert.deepEqual({ resident: m.stats().resident, pinned: m.stats().pinned, loadFailures: m.stats().loadFailures }, { resident: 0, pinned: 0, loadFailures: 1 });
    (await m.acquire('b')).release(); // the only slot is free: no eviction needed
    assert.deepEqual(engine.unloads, []);
    (await m.acquire('a')).release(); // retried
    assert.equal(engine.loads.length, 3);
  });

  test("engine refusals keep their kind by err.code: no free slot is retryable, a device failure is the engine's", async () => {
    const { m, engine } = setup(1);
    await m.register('a', join(t.root, 'a'));
    const cases: Array<[string, (e: unknown) => boolean]> = [
      ['no_free_slot', (e) => e instanceof AdapterError && e.code === 'no_free_slot'],
      ['device_error', (e) => e instanceof NativeError && e.code === 'device_error' && /adapter a: the engine refused/.test(e.message)],
      ['bad_file', (e) => e instanceof AdapterError && e.code === 'invalid_adapter'],
      ['not_found', (e) => e instanceof AdapterError && e.code === 'invalid_adapter'],
    ];
    for (const [code, ok] of cases) {
      engine.failNext = 1;
      engine.failCode = code;
      await assert.rejects(m.acquire('a'), ok, code);
      assert.equal(m.stats().pinned, 0, code);
    }
    (await m.acquire('a')).release();
  });

  test('a broken file fails the same way every time, never reaching the engine', async () => {
    const s = await tmpAdapters();
    try {
      const dir = await s.make('trunc');
      const p = join(dir, 'adapter_model.safetensors');
      const fh = await open(p, 'r');
      const size = (await fh.stat()).size;
      await fh.close();
      await truncate(p, size - 100);
      const { m, engine } = setup(1);
      await m.register('trunc', dir); // the config is fine; the header is read at load
      const errs: string[] = [];
      for (let i = 0; i < 2; i++) await m.acquire('trunc').catch((e: Error) => errs.push(e.message));
      assert.equal(errs.length, 2);
      assert.equal(errs[0], errs[1]);
      assert.match(errs[0]!, /adapter_model\.safetensors: tensor .* out of range .*truncated\?/);
      assert.equal(engine.loads.length, 0);
      assert.deepEqual({ loads: m.stats().loads, loadFailures: m.stats().loadFailures, pinned: m.stats().pinned }, { loads: 2, loadFailures: 2, pinned: 0 });
    } finally {
      await s.cleanup();
    }
  });

  test('pin(composition): cat pins each distinct member once with its weight; ensemble one sequence each; release unpins', async () => {
    const { m, engine } = setup(4);
    for (const n of ['a', 'b']) await m.register(n, join(t.root, n));
    const merge = { strategy: 'cat' as const, majority_sign_method: 'total' as const, seed: 0 };
    const none = await m.pin(undefined);
    assert.deepEqual(none.adapters, []);
    const cat = await m.pin({ members: [{ name: 'b', weight: 0.5 }, { name: 'a', weight: 2 }, { name: 'b', weight: 0.25 }], merge });
    assert.equal(engine.loads.length, 2);
    assert.equal(cat.adapters.length, 3);
    assert.deepEqual(cat.adapters.map((r) => r.weight), [0.5, 2, 0.25]);
    assert.equal(cat.adapters[0]!.slot, cat.adapters[2]!.slot);
    assert.equal(m.stats().pinned, 2);
    const ens = await m.pin({ members: [{ name: 'a', weight: 0.7 }, { name: 'b', weight: 0.3 }], merge: { ...merge, strategy: 'ensemble' } });
    assert.deepEqual(ens.adapters, []);
    assert.deepEqual(ens.ensemble!.map((e) => [e.adapters.length, e.adapters[0]!.weight, e.weight]), [[1, 1, 0.7], [1, 1, 0.3]]);
    cat.release();
    cat.release();
    assert.equal(m.stats().pinned, 2, 'the ensemble still pins both');
    ens.release();
    assert.equal(m.stats().pinned, 0);
    await assert.rejects(m.pin({ members: [{ name: 'a', weight: 1 }, { name: 'ghost', weight: 1 }], merge }), (e: unknown) => e instanceof AdapterError && e.code === 'model_not_found');
    assert.equal(m.stats().pinned, 0, 'a failed pin holds nothing');
  });
});

