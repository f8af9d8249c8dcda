/**
 * The four demo adapters loaded into the real engine through AdapterManager.
 * Skipped until the native addon is built (build/Release/openlora.node).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
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
