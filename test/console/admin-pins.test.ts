/**
 * The operator residency routes (plugin/routes/admin-pins.ts) on the real demo gateway, seen
 * through the console's state: prefetch fills the host tier, pin loads into a device slot and
 * holds it, unpin drops only the operator's pin, unload drops the pin too; requests served and
 * last use are counted by the adapter manager; a pin that would take the last slot is a 409.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { RunningServer } from '../../examples/server.ts';
import { post } from '../gateway/helpers.ts';
import { startDemo } from '../e2e/server.ts';

let server: RunningServer;
let origin = '';

async function row(name: string) {
  const st = await (await fetch(`${origin}/console/api/state`)).json();
  return st.models[0].adapters.find((a: { name: string }) => a.name === name);
}

describe('pin, unpin, prefetch', () => {
  before(async () => {
    server = await startDemo({ console: true, allowRuntimeLoraUpdating: true });
    origin = server.url.replace(/\/v1$/, '');
  });
  after(() => server.close());

  test('prefetch reads an adapter into the host tier without a slot', async () => {
    assert.equal((await row('romeo')).tier, 'disk');
    const r = await post(`${server.url}/prefetch_lora_adapter`, { lora_name: 'romeo' });
    assert.equal(r.status, 200);
    assert.equal(r.body.tier, 'host');
    const a = await row('romeo');
    assert.equal(a.tier, 'host');
    assert.equal(a.slot, null);
    assert.ok(a.bytes > 0);
  });

  test('pin loads into a device slot and holds one pin; pinning again changes nothing; unpin drops it', async () => {
    const r = await post(`${server.url}/pin_lora_adapter`, { lora_name: 'rs' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([r.body.tier, r.body.pins, r.body.operator_pinned], ['device', 1, true]);
    assert.equal(typeof r.body.slot, 'number');
    const again = await post(`${server.url}/pin_lora_adapter`, { lora_name: 'rs', model: 'tiny-shakespeare' });
    assert.equal(again.body.pins, 1);
    const a = await row('rs');
    assert.deepEqual([a.tier, a.pins, a.operatorPinned], ['device', 1, true]);
    const un = await post(`${server.url}/unpin_lora_adapter`, { lora_name: 'rs' });
    assert.equal(un.status, 200);
    assert.deepEqual([un.body.tier, un.body.pins, un.body.operator_pinned], ['device', 0, false]);
    const twice = await post(`${server.url}/unpin_lora_adapter`, { lora_name: 'rs' });
    assert.equal(twice.status, 404);
    assert.equal(twice.body.error.code, 'not_pinned');
  });

  test('bad input: missing lora_name 400, unknown adapter or base 404', async () => {
    for (const route of ['pin', 'unpin', 'prefetch']) {
      const miss = await post(`${server.url}/${route}_lora_adapter`, {});
      assert.equal(miss.status, 400, route);
      assert.equal(miss.body.error.param, 'lora_name');
      const unknown = await post(`${server.url}/${route}_lora_adapter`, { lora_name: 'nope' });
      assert.equal(unknown.status, 404, route);
      const base = await post(`${server.url}/${route}_lora_adapter`, { lora_name: 'rs', model: 'nope' });
      assert.equal(base.status, 404, route);
      const badBase = await post(`${server.url}/${route}_lora_adapter`, { lora_name: 'rs', model: 3 });
      assert.equal(badBase.status, 400, route);
    }
  });

  test('requests served and last use are counted per adapter', async () => {
    const before = await row('whisper');
    const r = await post(`${server.url}/completions`, { model: 'tiny-shakespeare:whisper', prompt: 'O', max_tokens: 1 });
    assert.equal(r.status, 200);
    const a = await row('whisper');
    assert.equal(a.served, before.served + 1);
    assert.ok(a.lastUsed >= Date.now() - 60_000);
    assert.equal(a.tier, 'device');
  });

  test('unloading a pinned adapter drops the operator pin and the adapter', async () => {
    assert.equal((await post(`${server.url}/pin_lora_adapter`, { lora_name: 'shout' })).status, 200);
    const r = await post(`${server.url}/unload_lora_adapter`, { lora_name: 'shout' });
    assert.equal(r.status, 200);
    assert.equal(await row('shout'), undefined);
    const st = await (await fetch(`${origin}/console/api/state`)).json();
    assert.equal(st.models[0].adapters.some((a: { operatorPinned: boolean }) => a.operatorPinned), false);
  });
});

test('pins never take the last slot: with 2 slots the second pin is a 409, other adapters keep being served', async () => {
  const s = await startDemo({ allowRuntimeLoraUpdating: true, engine: { threads: 2, maxLoras: 2 } });
  try {
    assert.equal((await post(`${s.url}/pin_lora_adapter`, { lora_name: 'rs' })).status, 200);
    const second = await post(`${s.url}/pin_lora_adapter`, { lora_name: 'romeo' });
    assert.equal(second.status, 409, JSON.stringify(second.body));
    assert.deepEqual([second.body.error.code, second.body.error.param], ['too_many_pins', 'lora_name']);
    assert.match(second.body.error.message, /1 of the 2 slots are pinned by an operator, and at least one must stay free/);
    for (const name of ['romeo', 'whisper', 'shout']) {
      const r = await post(`${s.url}/completions`, { model: `tiny-shakespeare:${name}`, prompt: 'O', max_tokens: 1 });
      assert.equal(r.status, 200, `${name}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await post(`${s.url}/pin_lora_adapter`, { lora_name: 'rs' })).status, 200, 'pinning a pinned adapter changes nothing');
    assert.equal((await post(`${s.url}/unpin_lora_adapter`, { lora_name: 'rs' })).status, 200);
    assert.equal((await post(`${s.url}/pin_lora_adapter`, { lora_name: 'romeo' })).status, 200, 'after the unpin there is room again');
  } finally {
    await s.close();
  }
});

test('without runtime updating the residency routes are not mounted', async () => {
  const s = await startDemo({});
  try {
    const r = await post(`${s.url}/pin_lora_adapter`, { lora_name: 'rs' });
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'unknown_url');
  } finally {
    await s.close();
  }
});
