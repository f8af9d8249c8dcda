import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, parseConfig, ConfigError, REPO_ROOT } from '../../config/load.ts';

test('defaults serve the embedded demo model on 127.0.0.1:8000', () => {
  const cfg = loadConfig([], {});
  assert.equal(cfg.host, '127.0.0.1');
  assert.equal(cfg.port, 8000);
  assert.equal(cfg.models[0].name, 'tiny-shakespeare');
  assert.equal(cfg.models[0].path, path.join(REPO_ROOT, 'examples/models/tiny-shakespeare'));
  assert.equal(cfg.engine.backend, 'auto');
});

test('environment overrides host and port; a bad port names the variable', () => {
  const cfg = loadConfig([], { PORT: '9123', HOST: '0.0.0.0' });
  assert.equal(cfg.port, 9123);
  assert.equal(cfg.host, '0.0.0.0');
  assert.throws(() => loadConfig([], { OPENLORA_PORT: '80a' }), /OPENLORA_PORT: expected an integer/);
  assert.throws(() => loadConfig([], { PORT: '99999' }), /environment: PORT: expected a port number 0\.\.65535, received "99999"/);
});

test('a config file is read with --config, paths resolved against its folder', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'openlora-cfg-'));
  const file = path.join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ port: 1234, models: [{ name: 'm', path: 'model', adapterDirs: ['loras'] }] }));
  const cfg = loadConfig(['--config', file], {});
  assert.equal(cfg.port, 1234);
  assert.equal(cfg.models[0].path, path.join(dir, 'model'));
  assert.deepEqual(cfg.models[0].adapterDirs, [path.join(dir, 'loras')]);
  assert.equal(loadConfig([`--config=${file}`], {}).port, 1234);
  assert.equal(loadConfig([], { OPENLORA_CONFIG: file }).port, 1234);
});

test('errors name the bad field and the file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'openlora-cfg-'));
  const file = path.join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({ engine: { maxLoras: 'many' } }));
  assert.throws(() => loadConfig(['--config', file], {}), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /bad\.json: engine\.maxLoras/);
    return true;
  });
  writeFileSync(file, '{not json');
  assert.throws(() => loadConfig(['--config', file], {}), /not valid JSON/);
  assert.throws(() => loadConfig(['--config', path.join(dir, 'missing.json')], {}), /cannot read config file/);
  assert.throws(() => parseConfig({ models: [], typo: 1 }), /models/);
  assert.throws(() => parseConfig({ models: [{ name: 'a', path: 'x' }], prot: 1 }), /prot/);
  assert.throws(
    () => parseConfig({ models: [{ name: 'a', path: 'x' }, { name: 'a', path: 'y' }] }),
    /models\.1\.name: duplicate model name/,
  );
});
