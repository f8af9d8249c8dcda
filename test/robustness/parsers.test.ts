/**
 * Short property-based fuzz of the safetensors header reader and the adapter config resolver:
 * every generated input parses or is refused with AdapterError (the long form is `npm run soak`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fuzzAdapterConfig, fuzzSafetensorsHeader } from './parsers.ts';

test('safetensors header reader: 400 mutated files, only clean AdapterErrors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'openlora-fuzz-'));
  try {
    const r = await fuzzSafetensorsHeader(400, 11, dir);
    assert.deepEqual(r.failures, []);
    assert.ok(r.refused > 100 && r.parsed > 0, JSON.stringify(r));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('adapter config resolver: 3000 mutated configs, only clean AdapterErrors', () => {
  const r = fuzzAdapterConfig(3000, 12);
  assert.deepEqual(r.failures.slice(0, 5), []);
  assert.ok(r.refused > 100 && r.parsed > 0, JSON.stringify({ ...r, failures: r.failures.length }));
});
