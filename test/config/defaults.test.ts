/**
 * One home for each default, on each side: config/schema.ts for TypeScript, the engine header
 * (native/src/engine_options.h, exported by the addon as `engineDefaults()`) for C++. This ties
 * the two: every engine option the config exposes has the engine's default and bounds, and the
 * TypeScript code that runs without a config takes its defaults from the schema.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { z } from 'zod';

import { DEFAULTS, EngineOptionsSchema } from '../../config/schema.ts';
import { engineDefaults } from '../../native/engine.ts';

/** A zod number field's default (undefined when optional) and inclusive bounds. */
function numberField(field: z.ZodType): { def: number | undefined; min: number; max: number } {
  let inner = field as unknown as { unwrap?: () => unknown; def: { type: string } };
  const def = inner.def.type === 'default' ? (field.parse(undefined) as number) : undefined;
  while (inner.def.type === 'default' || inner.def.type === 'optional') inner = inner.unwrap!() as typeof inner;
  const n = inner as unknown as { minValue: number | null; maxValue: number | null; isInt: boolean };
  assert.ok(n.isInt, 'an integer field');
  return { def, min: n.minValue ?? -Infinity, max: n.maxValue ?? Infinity };
}

const shape = EngineOptionsSchema.shape;

test('every integer engine option: config/schema.ts default and bounds equal the engine header', () => {
  const engine = engineDefaults().options;
  assert.deepEqual(Object.keys(engine).sort(), Object.keys(shape).filter((k) => k in engine).sort(), 'the config exposes every integer engine option');
  for (const [name, e] of Object.entries(engine)) {
    const c = numberField(shape[name as keyof typeof shape]);
    if (name === 'threads') {
      // NOTE(why): the config's 0 means "every core but one" (the server factory's
      // defaultEngineThreads), the engine alone defaults to every core: the one deliberate difference.
      assert.deepEqual([c.def, c.min, c.max], [0, 0, e.max], name);
      continue;
    }
    if (name === 'maxNumBatchedTokens') {
      // Absent in the config so the engine applies max(512, maxNumSeqs).
      assert.equal(c.def, undefined, name);
    } else {
      assert.equal(c.def, e.default, `${name}: config default ${c.def}, engine default ${e.default}`);
    }
    assert.deepEqual([c.min, c.max], [e.min, e.max], `${name}: config bounds [${c.min}, ${c.max}], engine [${e.min}, ${e.max}]`);
  }
});

test('the other engine defaults agree: backend, prefix caching, quantization, KV dtype', () => {
  const d = engineDefaults();
  const c = EngineOptionsSchema.parse({});
  assert.deepEqual(
    [c.backend, c.enablePrefixCaching, c.quantization, c.kvCacheDtype, c.activationDtype],
    [d.backend, d.enablePrefixCaching, d.quantization, d.kvCacheDtype, d.activationDtype],
  );
});

test('kvCacheMemoryFraction: config default and bounds equal the engine header', () => {
  const e = engineDefaults().kvCacheMemoryFraction;
  const f = shape.kvCacheMemoryFraction;
  const inner = f.unwrap() as unknown as { minValue: number | null; maxValue: number | null };
  assert.deepEqual([f.parse(undefined), inner.minValue, inner.maxValue], [e.default, e.min, e.max]);
});

test('the unified values (issue 12): maxLoras 16, maxLoraRank <= 512, threadNice 5, bodyLimit 16mb', () => {
  const c = EngineOptionsSchema.parse({});
  assert.deepEqual([c.maxLoras, c.maxLoraRank, c.threadNice], [16, 64, 5]);
  assert.equal(numberField(shape.maxLoraRank).max, 512);
  assert.equal(DEFAULTS.bodyLimit, '16mb');
  assert.equal(DEFAULTS.engine.maxLoras, c.maxLoras);
});
