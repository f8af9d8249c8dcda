/**
 * The short robustness suite on the real gateway: generated hostile bodies (4xx OpenAI errors,
 * never 5xx, server alive) and a disconnect storm over many adapters (afterwards every KV block
 * and pin is free). The long forms are `npm run soak`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningServer } from '../../examples/server.ts';
import { defaultConfigInput } from '../../config/load.ts';
import { startDemo } from '../e2e/server.ts';
import { writeRandomAdapters } from './gen-adapters.ts';
import { hostileCases, sendHostile } from './hostile.ts';
import { storm, waitIdle } from './storm.ts';

let srv: RunningServer;
let dir: string;
let names: string[];
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'openlora-robust-'));
  names = await writeRandomAdapters(dir, 24, 3);
  const models = defaultConfigInput().models!;
  models[0]!.adapterDirs = [...(models[0]!.adapterDirs ?? []), dir];
  srv = await startDemo({ models, maxQueuedRequests: 1000 });
});
after(async () => {
  await srv?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('hostile bodies: each a 4xx OpenAI error (or a 2xx for the valid ones), never a 5xx', async () => {
  const cases = hostileCases(420, 5);
  const { byStatus, bad } = await sendHostile(srv.url, cases, 6);
  assert.deepEqual(bad.slice(0, 10), []);
  assert.ok(Object.keys(byStatus).every((s) => Number(s) < 500), JSON.stringify(byStatus));
  assert.ok((byStatus['400'] ?? 0) > 200, JSON.stringify(byStatus));
  const alive = await fetch(`${srv.url}/models`);
  assert.equal(alive.status, 200);
});

test('disconnect storm: 100 streams over 28 adapters, 30% cut; all blocks and pins free after', async () => {
  const models = ['tiny-shakespeare', ...['shout', 'whisper', 'romeo', 'rs', ...names].map((n) => `tiny-shakespeare:${n}`)];
  const r = await storm(srv.url, { requests: 100, models, concurrency: 12, cutFraction: 0.3, seed: 9 });
  assert.deepEqual(r.errors.slice(0, 5), []);
  const idle = await waitIdle(srv);
  assert.deepEqual(idle, { running: 0, waiting: 0, pinned: 0, leakedBlocks: 0, inFlight: 0 });
  const ok = await fetch(`${srv.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: `tiny-shakespeare:${names[0]}`, messages: [{ role: 'user', content: 'x' }], max_tokens: 3 }),
  });
  assert.equal(ok.status, 200);
});
