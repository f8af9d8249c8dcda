/**
 * Memory that fits (issue 15 item 5): the automatic KV budget is EngineOptions.kvCacheMemoryFraction
 * of the memory available after the weights load (bounded by maxNumSeqs full-length sequences,
 * at least one), the option is checked naming the field, and stats() reports memory by part
 * (weights as stored, KV pool, used KV, adapters) for /metrics. Peak and steady resident sizes at
 * real shapes are measured by the bench (bench/README.md), not here.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import type { EngineOptions } from '../../native/types.ts';
import { adapterSpec, modelDir, testThreads } from './helpers.ts';

function memAvailable(): number {
  const m = readFileSync('/proc/meminfo', 'utf8').match(/^MemAvailable:\s+(\d+) kB/m);
  return Number(m![1]) * 1024;
}

test('the automatic KV pool takes kvCacheMemoryFraction of available memory, within [one sequence, maxNumSeqs sequences]', { skip: existsSync('/proc/meminfo') ? false : 'needs /proc/meminfo' }, async () => {
  // maxNumSeqs 4096 full contexts of the demo would be far more than 1% of memory: the fraction decides.
  const before = memAvailable();
  const small = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 4096, kvCacheMemoryFraction: 0.01 });
  const big = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 4096, kvCacheMemoryFraction: 0.02 });
  const after = memAvailable();
  try {
    const a = small.info().kvCacheBytes;
    const b = big.info().kvCacheBytes;
    assert.ok(a <= 0.01 * Math.max(before, after) * 1.05 && a >= 0.01 * Math.min(before, after) * 0.5, `1%: ${a} of ${before}..${after}`);
    assert.ok(b > 1.5 * a, `2% (${b}) is about twice 1% (${a})`);
    assert.equal(small.stats().kvCacheBytes, a);
  } finally {
    await small.dispose();
    await big.dispose();
  }
  // Few sequences: every one at full context fits, and that is all the pool takes.
  const e = await Engine.load(modelDir, { threads: testThreads, maxNumSeqs: 1, blockSize: 16 });
  try {
    const info = e.info();
    assert.equal(info.numKvBlocks, Math.ceil(info.maxModelLen / 16));
  } finally {
    await e.dispose();
  }
});

test('kvCacheMemoryFraction outside [0.01, 0.95] or not a number is refused, naming the field', async () => {
  for (const bad of [0, 0.96, -1, 'half']) {
    await assert.rejects(Engine.load(modelDir, { kvCacheMemoryFraction: bad } as unknown as EngineOptions), /EngineOptions\.kvCacheMemoryFraction/);
  }
});

test('stats() reports memory by part: weights as stored (int8 < 0.6 x the BF16 demo, int4 smaller), KV pool and use, adapters', async () => {
  const e = await Engine.load(modelDir, { threads: testThreads, numKvBlocks: 64 });
  const q8 = await Engine.load(modelDir, { threads: testThreads, numKvBlocks: 64, quantization: 'int8' });
  const q4 = await Engine.load(modelDir, { threads: testThreads, numKvBlocks: 64, quantization: 'int4' });
  try {
    const s = e.stats();
    assert.ok(s.weightBytes > 1e6);
    assert.ok(q8.stats().weightBytes < 0.6 * s.weightBytes, `int8 ${q8.stats().weightBytes} vs float32 ${s.weightBytes}`);
    assert.ok(q4.stats().weightBytes < q8.stats().weightBytes);
    assert.equal(s.kvCacheBytes, e.info().kvCacheBytes);
    assert.equal(s.kvUsedBytes, 0);
    assert.equal(s.adapterBytes, 0);
    const slot = await e.loadAdapter(adapterSpec('shout'));
    assert.ok(e.stats().adapterBytes > 0);
    await e.forward([1, 2, 3]);
    e.unloadAdapter(slot);
    assert.equal(e.stats().adapterBytes, 0);
  } finally {
    await e.dispose();
    await q8.dispose();
    await q4.dispose();
  }
});
