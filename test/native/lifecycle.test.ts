/**
 * Engine lifecycle: backend choice, dispose (idempotent, cancels pending work, refuses new work)
 * and process exit with and without dispose.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

import { cudaInfo, Engine } from '../../native/engine.ts';
import { loadReference, modelDir, params, repoRoot, testThreads } from './helpers.ts';

const prompt = loadReference().prompts[0].input_ids;

test('cudaInfo and backend selection explain themselves', async () => {
  const cuda = cudaInfo();
  assert.equal(typeof cuda.compiled, 'boolean');
  assert.equal(typeof cuda.deviceCount, 'number');
  assert.equal(typeof cuda.error, 'string');
  const engine = await Engine.load(modelDir, { threads: 1 });
  const info = engine.info();
  assert.equal(info.backend, 'cpu');
  assert.match(info.backendReason, /^auto: cuda: .*; using cpu$/);
  assert.equal(info.modelType, 'llama');
  assert.equal(info.dtype, 'BF16');
  assert.deepEqual([info.vocabSize, info.hiddenSize, info.numHiddenLayers, info.headDim], [1024, 256, 4, 32]);
  await engine.dispose();
  await assert.rejects(Engine.load(modelDir, { backend: 'cuda' }), /backend "cuda" is not available: cuda: /);
  await assert.rejects(Engine.load(modelDir, { backend: 'tpu' }), /backend must be "auto", "cpu" or "cuda"/);
  await assert.rejects(Engine.load(modelDir, { threads: 0 }), /EngineOptions\.threads/);
});

test('dispose cancels pending work, is idempotent, and refuses new work', async () => {
  const engine = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 2 });
  const handles = [0, 1, 2, 3].map((i) => engine.generate(params(prompt, { maxTokens: 400, temperature: 1, seed: i })));
  const first = engine.dispose();
  const second = engine.dispose();
  await Promise.all([first, second]);
  await engine.dispose();
  for (const h of handles) {
    const r = await h.done;
    assert.ok(['cancelled', 'length'].includes(r.finishReason), r.finishReason);
  }
  assert.ok((await Promise.all(handles.map((h) => h.done))).some((r) => r.finishReason === 'cancelled'));
  assert.throws(() => engine.generate(params(prompt)), /disposed/);
  await assert.rejects(engine.forward(prompt), /disposed/);
});

/** Run a script in a fresh node and return its exit code and duration. */
function runChild(script: string): { status: number | null; ms: number; out: string } {
  const started = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], { cwd: repoRoot, timeout: 30_000, encoding: 'utf8' });
  return { status: r.status, ms: Date.now() - started, out: `${r.stdout}${r.stderr}` };
}

const addonPath = JSON.stringify(join(repoRoot, 'build', 'Release', 'openlora.node'));
const dir = JSON.stringify(modelDir);

test('a process that loads, generates and disposes exits promptly', () => {
  const r = runChild(`
    const a = require(${addonPath});
    a.loadModel(${dir}, { threads: 1 }).then(async (e) => {
      await e.forward([1, 2, 3], []);
      await e.dispose();
      console.log('ok');
    });`);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /ok/);
  assert.ok(r.ms < 15_000);
});

test('a process that forgets dispose still exits once its work is done', () => {
  const r = runChild(`
    const a = require(${addonPath});
    a.loadModel(${dir}, { threads: 1 }).then((e) => {
      e.onEvents((evs) => { for (const ev of evs) if (ev.finishReason) console.log('finished', ev.finishReason); });
      e.addSequence({ promptIds: [1019, 82], adapters: [], maxTokens: 20, temperature: 0, topP: 1, topK: 0,
        presencePenalty: 0, frequencyPenalty: 0, logitBias: [], stopTokenIds: [], seed: 0, logprobs: -1 });
    });`);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /finished length/, 'pending work keeps the process alive until it is done');
  assert.ok(r.ms < 15_000);
});
