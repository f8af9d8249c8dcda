/**
 * The four demo adapters loaded into the real engine through AdapterManager.
 * Skipped until the native addon is built (build/Release/openlora.node).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AdapterManager } from '../../adapters/manager.ts';
import { Engine } from '../../native/engine.ts';
import { EXAMPLES } from './helpers.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = existsSync(`${root}build/Release/openlora.node`);

test('demo adapters load into the native engine through the manager', { skip: built ? false : 'native addon not built', timeout: 120_000 }, async () => {
  const engine = await Engine.load(`${root}examples/models/tiny-shakespeare`, { backend: 'cpu', threads: 2, maxLoras: 4 });
  try {
    const info = engine.info();
    const m = new AdapterManager({ engine, baseName: 'tiny-shakespeare', modelInfo: info });
    const { registered, skipped } = await m.scanDirectory(EXAMPLES);
    assert.deepEqual(skipped, []);
    assert.equal(registered.length, 4);
    const leases = [];
    for (const name of ['shout', 'whisper', 'romeo', 'rs']) leases.push(await m.acquire(name));
    assert.equal(new Set(leases.map((l) => l.slot)).size, 4);
    assert.equal(engine.stats().slotsUsed, 4);
    const prompt = [72, 101, 108, 108, 111];
    const base = await engine.forward(prompt, []);
    for (const l of leases) {
      const out = await engine.forward(prompt, [{ slot: l.slot, weight: 1 }]);
      let diff = 0;
      for (let i = 0; i < out.logits.length; i++) diff = Math.max(diff, Math.abs(out.logits[i]! - base.logits[i]!));
      assert.ok(diff > 0.1, `adapter ${l.name} changes the logits (max abs diff ${diff})`);
    }
    for (const l of leases) l.release();
    assert.equal(m.stats().pinned, 0);
  } finally {
    await engine.dispose();
  }
});

test('an adapter rewritten on disk while resident: new requests run the new weights, a running one the old', { skip: built ? false : 'native addon not built', timeout: 120_000 }, async () => {
  const engine = await Engine.load(`${root}examples/models/tiny-shakespeare`, { backend: 'cpu', threads: 2, maxLoras: 4 });
  const tmp = await mkdtemp(join(tmpdir(), 'openlora-rewrite-'));
  try {
    const m = new AdapterManager({ engine, baseName: 'tiny-shakespeare', modelInfo: engine.info() });
    const files = ['adapter_config.json', 'adapter_model.safetensors'];
    const copy = (from: string) => Promise.all(files.map((f) => cp(join(EXAMPLES, from, f), join(tmp, f))));
    await copy('shout');
    await m.register('x', tmp);
    await m.register('whisper', join(EXAMPLES, 'whisper'));
    const prompt = [72, 101, 108, 108, 111];
    const logits = async (slot: number) => (await engine.forward(prompt, [{ slot, weight: 1 }])).logits;
    const old = await m.acquire('x');
    const shout = await logits(old.slot);

    await copy('whisper');
    const now = await m.acquire('x');
    const ref = await m.acquire('whisper');
    assert.deepEqual(await logits(now.slot), await logits(ref.slot), 'the rewritten adapter runs the new files');
    assert.deepEqual(await logits(old.slot), shout, 'the running lease keeps the old weights');
    for (const l of [old, now, ref]) l.release();
    assert.equal(m.stats().resident, 2, 'the old version is unloaded once released');
  } finally {
    await engine.dispose();
    await rm(tmp, { recursive: true, force: true });
  }
});
