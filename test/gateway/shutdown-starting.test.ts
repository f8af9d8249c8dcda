/**
 * A request whose generation is still starting (its adapter waits for a slot) when the router
 * closes: close() waits for it within the grace like an in-flight one, then answers it the
 * shutdown's 503 (it used to get no answer: the connection was closed under it), and the
 * generation that starts afterwards is aborted with its pins released.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import express from 'express';
import { openLora } from '../../plugin/index.ts';
import type { AdapterLease } from '../../adapters/types.ts';
import { demoTokenizer, FakeAdapters, ScriptedEngine } from '../plugin/fakes.ts';
import { listen, memoryLogger, post, until } from './helpers.ts';

/** FakeAdapters whose acquire waits until `open()` (an adapter slot that frees up late). */
class GatedAdapters extends FakeAdapters {
  waiting = 0;
  private gate!: () => void;
  private readonly opened = new Promise<void>((r) => (this.gate = r));
  open(): void {
    this.gate();
  }
  override async acquire(name: string): Promise<AdapterLease> {
    this.waiting++;
    await this.opened;
    return super.acquire(name);
  }
}

test('close(): a request waiting for an adapter slot gets the 503 at the grace; its late generation is aborted and unpinned', async () => {
  const adapters = new GatedAdapters('tiny');
  const engine = new ScriptedEngine(() => [65, 66, 67], { repeat: true });
  const router = openLora({ logger: memoryLogger(), models: [{ name: 'tiny', engine: engine.asEngine(), tokenizer: await demoTokenizer(), adapters }] });
  const app = express();
  app.use(router);
  await router.ready;
  const l = await listen(app);
  try {
    const pending = post(l.url + '/v1/chat/completions', { model: 'tiny:shout', messages: [{ role: 'user', content: 'x' }], max_tokens: 50 });
    const streamed = post(l.url + '/v1/chat/completions', { model: 'tiny:shout', messages: [{ role: 'user', content: 'y' }], max_tokens: 50, stream: true });
    await until(() => adapters.waiting === 2);
    const t0 = Date.now();
    await router.close(300);
    const waited = Date.now() - t0;
    assert.ok(waited >= 250, `close waited ${waited} ms for the starting requests`);
    for (const r of [await pending, await streamed]) {
      assert.equal(r.status, 503, r.text);
      assert.match(r.body.error.message, /shutting down/);
    }
    adapters.open();
    await until(() => adapters.acquired === 2 && adapters.released === 2);
  } finally {
    await l.close();
  }
});
