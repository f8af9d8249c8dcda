/** Adapter knobs in the config and the environment (config/load.ts `applyAdapterEnv`). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../../config/load.ts';

test('OPENLORA_MAX_LORAS / _MAX_CPU_LORAS / _MAX_LORA_RANK / _ADAPTER_DIRS / _ALLOW_RUNTIME_LORA_UPDATING', () => {
  const d = loadConfig([], {});
  assert.deepEqual([d.engine.maxLoras, d.engine.maxLoraRank, d.adapterCache.maxCpuLoras, d.allowRuntimeLoraUpdating], [16, 64, 64, false]);
  const c = loadConfig([], {
    OPENLORA_MAX_LORAS: '4', OPENLORA_MAX_CPU_LORAS: '32', OPENLORA_MAX_LORA_RANK: '16',
    OPENLORA_ADAPTER_DIRS: '/a:/b', OPENLORA_ALLOW_RUNTIME_LORA_UPDATING: '1',
  });
  assert.deepEqual([c.engine.maxLoras, c.engine.maxLoraRank, c.adapterCache.maxCpuLoras, c.allowRuntimeLoraUpdating], [4, 16, 32, true]);
  assert.deepEqual(c.models[0]!.adapterDirs, ['/a', '/b']);
  assert.throws(() => loadConfig([], { OPENLORA_MAX_LORAS: 'many' }), (e: unknown) => e instanceof ConfigError && /OPENLORA_MAX_LORAS/.test(e.message));
  assert.throws(() => loadConfig([], { OPENLORA_ALLOW_RUNTIME_LORA_UPDATING: 'yes' }), /OPENLORA_ALLOW_RUNTIME_LORA_UPDATING/);
});

test('adapterCache.maxWarmBytes (host tier pre-read budget): default 4 GiB; maxCpuBytes is its deprecated name', async () => {
  const { parseConfig } = await import('../../config/load.ts');
  const base = { models: [{ name: 'a', path: 'x' }] };
  assert.equal(parseConfig(base).adapterCache.maxWarmBytes, 4 * 1024 ** 3);
  assert.equal(parseConfig({ ...base, adapterCache: { maxWarmBytes: 1000 } }).adapterCache.maxWarmBytes, 1000);
  assert.equal(parseConfig({ ...base, adapterCache: { maxCpuBytes: 2000 } }).adapterCache.maxWarmBytes, 2000);
  assert.equal('maxCpuBytes' in parseConfig({ ...base, adapterCache: { maxCpuBytes: 2000 } }).adapterCache, false);
});
