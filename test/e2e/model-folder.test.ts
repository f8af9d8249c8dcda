/**
 * Starting on a model folder that cannot be served fails with the file named, and the tokenizer
 * is read before the weights: a missing tokenizer.json is reported at once (here beside a
 * truncated model.safetensors, which the engine would refuse only after reading it).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { defaultConfigInput, parseConfig } from '../../config/load.ts';
import { createOpenLora } from '../../plugin/server.ts';

const DEMO = defaultConfigInput().models[0]!.path;

test('a folder without tokenizer.json: the error names it, before the weights are read', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'openlora-folder-'));
  try {
    await copyFile(path.join(DEMO, 'config.json'), path.join(dir, 'config.json'));
    await copyFile(path.join(DEMO, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
    await writeFile(path.join(dir, 'model.safetensors'), Buffer.alloc(16));  // truncated: the engine would refuse it
    const config = parseConfig({ models: [{ name: 'broken', path: dir }], logLevel: 'silent' });
    await assert.rejects(createOpenLora(config), /tokenizer\.json: no such file \(a model folder needs tokenizer\.json and tokenizer_config\.json\)/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
