/**
 * The addon's error contract and its defaults table, on the raw addon (no TypeScript validation
 * in front): every refusal carries a stable `err.code` (native/src/errors.h) and, when it is
 * about one field, `err.field`; `engineDefaults()` lists the engine's defaults and bounds
 * (native/src/engine_options.h) and the engine applies exactly those.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { loadNativeAddon } from '../../native/binding.ts';
import { adapterSpec, modelDir, params, testThreads } from './helpers.ts';

/** The raw addon with the export this test is about (typed loosely on purpose). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const addon = loadNativeAddon() as any;

/** Assert that `p` rejects (or `fn` throws) with this code and, if given, this field. */
async function rejectsWith(p: Promise<unknown>, code: string, field?: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string; field?: string }) => {
    assert.equal(err.code, code, `code of "${err.message}"`);
    if (field !== undefined) assert.equal(err.field, field, `field of "${err.message}"`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

test('engineDefaults lists every option with default and bounds, and the error codes', () => {
  const d = addon.engineDefaults();
  const o = d.options;
  assert.deepEqual(o.maxLoras, { default: 16, min: 1, max: 4096 });
  assert.deepEqual(o.maxLoraRank, { default: 64, min: 1, max: 512 });
  assert.deepEqual(o.threadNice, { default: 5, min: 0, max: 19 });
  assert.deepEqual(o.maxNumSeqs, { default: 64, min: 1, max: 4096 });
  assert.deepEqual(o.maxNumBatchedTokens, { default: 512, min: 1, max: 1 << 20 });
  assert.deepEqual(o.blockSize, { default: 16, min: 1, max: 1024 });
  assert.equal(o.numKvBlocks.default, 0);
  assert.equal(o.kvCacheBytes.default, 0);
  assert.ok(o.threads.default >= 1 && o.threads.min === 1 && o.threads.max === 1024);
  assert.equal(d.enablePrefixCaching, true);
  assert.equal(d.kvCacheDtype, 'float32');
  assert.equal(d.quantization, 'none');
  assert.equal(d.maxLogprobs, 20);
  assert.equal(d.cudaMaxLoraRank, 256);
  assert.deepEqual(d.errorCodes, [
    'invalid_argument', 'not_found', 'no_free_slot', 'busy', 'out_of_memory', 'device_error', 'unsupported_model', 'bad_file', 'disposed', 'internal',
  ]);
});

test('option bounds are the table\'s: refused with invalid_argument naming the field', async () => {
  const o = addon.engineDefaults().options;
  for (const [name, bound] of Object.entries(o) as Array<[string, { min: number; max: number }]>) {
    if (name === 'kvCacheBytes') continue;  // its upper bound is beyond any test's memory
    await rejectsWith(addon.loadModel(modelDir, { threads: 1, [name]: bound.max + 1 }), 'invalid_argument', `EngineOptions.${name}`,
      new RegExp(`EngineOptions\\.${name} must be in \\[${bound.min}, ${bound.max}\\]`));
  }
  await rejectsWith(addon.loadModel(modelDir, { threads: 1, maxLoras: 0 }), 'invalid_argument', 'EngineOptions.maxLoras');
  await rejectsWith(addon.loadModel(modelDir, { threads: '2' }), 'invalid_argument', 'EngineOptions.threads', /Expected an integer for EngineOptions\.threads but received a string/);
  await rejectsWith(addon.loadModel(modelDir, { kvCacheDtype: 'f8' }), 'invalid_argument', 'EngineOptions.kvCacheDtype');
  await rejectsWith(addon.loadModel(modelDir, { backend: 'tpu' }), 'invalid_argument', 'EngineOptions.backend');
  await rejectsWith(addon.loadModel(modelDir, { backend: 'cuda' }), 'device_error');
});

describe('refusals of a running engine carry a code', () => {
  let tmp: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let engine: any;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'openlora-codes-'));
    engine = await addon.loadModel(modelDir, { threads: testThreads, maxLoras: 1, maxLoraRank: 8 });
  });
  after(async () => {
    await engine.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('files: not_found, bad_file, unsupported_model', async () => {
    await rejectsWith(addon.loadModel(join(tmp, 'nothing-here'), { threads: 1 }), 'not_found');
    const junk = join(tmp, 'junk.safetensors');
    writeFileSync(junk, Buffer.from([1, 2, 3, 4]));
    await rejectsWith(engine.loadAdapter({ ...adapterSpec('romeo'), path: junk }), 'bad_file', undefined, /truncated/);
    await rejectsWith(engine.loadAdapter({ ...adapterSpec('romeo'), path: join(tmp, 'missing.safetensors') }), 'not_found');
    assert.equal(engine.stats().slotsUsed, 0, 'a refused load leaves no slot behind');
  });

  test('slots: invalid_argument, not_found, no_free_slot, busy', async () => {
    assert.throws(() => engine.unloadAdapter(5), (e: Error & { code?: string }) => e.code === 'invalid_argument');
    assert.throws(() => engine.unloadAdapter(0), (e: Error & { code?: string; field?: string }) => e.code === 'not_found' && e.field === 'slot');
    const slot = await engine.loadAdapter(adapterSpec('romeo'));
    await rejectsWith(engine.loadAdapter(adapterSpec('romeo')), 'no_free_slot');
    engine.onEvents(() => {});
    engine.addSequence(params([1, 2, 3], { maxTokens: 200, adapters: [{ slot, weight: 1 }] }));
    assert.throws(() => engine.unloadAdapter(slot), (e: Error & { code?: string }) => e.code === 'busy');
  });

  test('sequence parameters: invalid_argument naming SequenceParams.<field>', () => {
    const check = (over: Record<string, unknown>, field: string) =>
      assert.throws(() => engine.addSequence({ ...params([1, 2, 3]), ...over }),
        (e: Error & { code?: string; field?: string }) => e.code === 'invalid_argument' && e.field === field, field);
    check({ promptIds: [1, 99999] }, 'SequenceParams.promptIds[1]');
    check({ promptIds: [] }, 'SequenceParams.promptIds');
    check({ maxTokens: 0 }, 'SequenceParams.maxTokens');
    check({ topP: 2 }, 'SequenceParams.topP');
    check({ logprobs: 21 }, 'SequenceParams.logprobs');
    check({ maxTokens: 'x' }, 'SequenceParams.maxTokens');
    assert.throws(() => engine.addSequence({ ...params([1, 2]), adapters: [{ slot: 0, weight: Number.NaN }] }),
      (e: Error & { code?: string }) => e.code === 'invalid_argument');
  });

  test('a disposed engine answers disposed', async () => {
    const e2 = await addon.loadModel(modelDir, { threads: 1 });
    await e2.dispose();
    assert.throws(() => e2.addSequence(params([1, 2, 3])), (e: Error & { code?: string }) => e.code === 'disposed');
    await rejectsWith(e2.forward([1, 2, 3], []), 'disposed');
  });
});
