/**
 * The context served fits the KV cache: with a pool smaller than the model's context
 * (`numKvBlocks` 4 x 16 tokens) the server serves 64 tokens (`/v1/models` max_model_len), so a
 * longer request is the usual 400 context_length_exceeded instead of a 500 from the engine;
 * `maxModelLen` caps it explicitly (vLLM's --max-model-len), and one larger than the pool or the
 * model's context is refused at load naming the option.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RunningServer } from '../../examples/server.ts';
import { Engine } from '../../native/engine.ts';
import { postJson, startDemo } from './server.ts';
import { modelDir } from '../native/helpers.ts';
import { pino } from 'pino';
import { defaultConfigInput, parseConfig } from '../../config/load.ts';
import { createOpenLora } from '../../plugin/server.ts';

let srv: RunningServer;
before(async () => {
  srv = await startDemo({ engine: { threads: 2, numKvBlocks: 4 } });
});
after(async () => {
  await srv?.close();
});

test('a KV pool smaller than the context serves what it holds: longer requests are a 400, shorter ones run', async () => {
  const models = await (await fetch(`${srv.url}/models`)).json();
  assert.equal(models.data[0].max_model_len, 64);
  const long = Array.from({ length: 300 }, (_, i) => 1 + ((i * 37) % 1000));
  for (const extra of [{}, { echo: true, logprobs: 1 }]) {
    const r = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt: long, max_tokens: 1, ...extra });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.code, 'context_length_exceeded');
  }
  const ok = await postJson(srv.url, '/completions', { model: 'tiny-shakespeare', prompt: long.slice(0, 40), max_tokens: 20, ignore_eos: true });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.usage.completion_tokens, 20);
});

test('maxModelLen: caps the context; above the pool or the model it is refused naming the option', async () => {
  const e = await Engine.load(modelDir, { threads: 1, maxModelLen: 100 });
  try {
    assert.equal(e.info().maxModelLen, 100);
  } finally {
    await e.dispose();
  }
  await assert.rejects(Engine.load(modelDir, { threads: 1, maxModelLen: 100, numKvBlocks: 2 }), /maxModelLen .*KV/);
  await assert.rejects(Engine.load(modelDir, { threads: 1, maxModelLen: 100000 }), /maxModelLen .*above the model/);
});

test('a context shortened by the KV pool is said once at start, with the sizes', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
  const o = await createOpenLora(parseConfig({ ...defaultConfigInput(), logLevel: 'warn', engine: { threads: 1, numKvBlocks: 4 } }), log);
  await o.close();
  const warn = lines.map((l) => JSON.parse(l) as { msg: string; maxModelLen: number; wanted: number }).filter((l) => /context of tiny-shakespeare is shortened/.test(l.msg));
  assert.equal(warn.length, 1, lines.join(''));
  assert.equal(warn[0]!.maxModelLen, 64);
  assert.equal(warn[0]!.wanted, 512);
});
