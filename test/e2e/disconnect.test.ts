/**
 * A client that disconnects mid-stream cancels its generation: the engine's running count
 * and the adapter pins return to zero, and the server goes on serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from './server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo();
});
after(async () => {
  await srv?.close();
});

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('disconnecting streaming clients cancel their sequences and release adapter pins', async () => {
  const { engine, adapters } = srv.openlora.models.get('tiny-shakespeare')!;
  const aborts = ['shout', 'whisper', 'romeo', 'rs'].map(async (adapter) => {
    const ac = new AbortController();
    const res = await fetch(`${srv.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: `tiny-shakespeare:${adapter}`,
        messages: [{ role: 'user', content: 'Tell a long tale.' }],
        max_tokens: 400,
        // A huge logit bias against every stop token keeps the sequence running until cancelled.
        logit_bias: { '1020': -100, '1023': -100 },
        stream: true,
      }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // first chunk: the stream is running
    ac.abort();
    await reader.closed.catch(() => {});
  });
  await Promise.all(aborts);
  const stepsAtAbort = engine.stats().steps;
  await until(() => engine.stats().running === 0 && engine.stats().waiting === 0);
  // Had the sequences run to max_tokens, the engine would have taken ~400 more steps.
  const extra = engine.stats().steps - stepsAtAbort;
  assert.ok(extra < 200, `engine ran ${extra} steps after every client had gone`);
  await until(() => adapters.stats().pinned === 0);
  const r = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare:shout', prompt: 'ROMEO:', max_tokens: 4 });
  assert.equal(r.status, 200);
});
