import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError, ModelNotFoundError } from '../../plugin/errors.ts';
import { parseMerge, resolveModelSpec } from '../../plugin/model-spec.ts';
import { FakeAdapters } from './fakes.ts';

const bases = new Map([
  ['tiny', new FakeAdapters('tiny')],
  ['llama3:8b', new FakeAdapters('llama3:8b', [{ ...new FakeAdapters('x').list()[0]!, name: 'shout' }, { ...new FakeAdapters('x').list()[0]!, name: 'solo' }])],
]);

test('BASE, BASE:ADAPTER and a unique ADAPTER alias resolve', () => {
  assert.deepEqual(resolveModelSpec('tiny', bases), { base: 'tiny' });
  assert.deepEqual(resolveModelSpec('tiny:whisper', bases), { base: 'tiny', adapter: 'whisper' });
  assert.deepEqual(resolveModelSpec('whisper', bases), { base: 'tiny', adapter: 'whisper' });
  assert.deepEqual(resolveModelSpec('llama3:8b', bases), { base: 'llama3:8b' });
  assert.deepEqual(resolveModelSpec('llama3:8b:solo', bases), { base: 'llama3:8b', adapter: 'solo' });
  assert.deepEqual(resolveModelSpec('solo', bases), { base: 'llama3:8b', adapter: 'solo' });
});

test('unknown models are 404 on param model; an unknown adapter is named', () => {
  assert.throws(() => resolveModelSpec('gpt-4o', bases), (e: unknown) => e instanceof ModelNotFoundError && e.status === 404 && e.param === 'model');
  assert.throws(
    () => resolveModelSpec('tiny:nope', bases),
    (e: unknown) => e instanceof ModelNotFoundError && /has no adapter `nope`/.test(e.message) && e.code === 'model_not_found',
  );
});

test('an alias owned by several bases is a 400 asking for BASE:ADAPTER', () => {
  assert.throws(() => resolveModelSpec('shout', bases), (e: unknown) => e instanceof InvalidRequestError && e.code === 'model_ambiguous');
});

test('merge syntax parses into members (unknown members 404)', () => {
  assert.deepEqual(parseMerge('shout@0.6+whisper@0.4'), [
    { name: 'shout', weight: 0.6 },
    { name: 'whisper', weight: 0.4 },
  ]);
  assert.deepEqual(parseMerge('shout+whisper'), [
    { name: 'shout', weight: 1 },
    { name: 'whisper', weight: 1 },
  ]);
  assert.equal(parseMerge('shout'), undefined);
  assert.throws(() => parseMerge('shout@x'), InvalidRequestError);
  for (const bad of ['shout@0x10', 'shout@0b1', 'shout@ 1', 'shout@1e999', 'shout@'])
    assert.throws(() => parseMerge(bad), InvalidRequestError, bad);
  assert.deepEqual(parseMerge('shout@-.5+whisper@2e-1'), [{ name: 'shout', weight: -0.5 }, { name: 'whisper', weight: 0.2 }]);
  assert.deepEqual(resolveModelSpec('tiny:shout@0.6+whisper@0.4', bases), {
    base: 'tiny',
    members: [
      { name: 'shout', weight: 0.6 },
      { name: 'whisper', weight: 0.4 },
    ],
  });
  assert.throws(() => resolveModelSpec('tiny:shout@0.6+ghost@0.4', bases), (e: unknown) => e instanceof ModelNotFoundError && /`ghost`/.test(e.message));
});
