import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidRequestError, ModelNotFoundError } from '../../plugin/errors.ts';
import { parseMerge, parseModelName, resolveComposition } from '../../plugin/resolve.ts';
import { FakeAdapters } from './fakes.ts';

const bases = new Map([
  ['tiny', new FakeAdapters('tiny')],
  ['llama3:8b', new FakeAdapters('llama3:8b', [{ ...new FakeAdapters('x').list()[0]!, name: 'shout' }, { ...new FakeAdapters('x').list()[0]!, name: 'solo' }])],
]);

test('BASE, BASE:ADAPTER and a unique ADAPTER alias resolve', () => {
  assert.deepEqual(parseModelName('tiny', bases), { base: 'tiny' });
  assert.deepEqual(parseModelName('tiny:whisper', bases), { base: 'tiny', adapter: 'whisper' });
  assert.deepEqual(parseModelName('whisper', bases), { base: 'tiny', adapter: 'whisper' });
  assert.deepEqual(parseModelName('llama3:8b', bases), { base: 'llama3:8b' });
  assert.deepEqual(parseModelName('llama3:8b:solo', bases), { base: 'llama3:8b', adapter: 'solo' });
  assert.deepEqual(parseModelName('solo', bases), { base: 'llama3:8b', adapter: 'solo' });
});

test('unknown models are 404 on param model; an unknown adapter is named', () => {
  assert.throws(() => parseModelName('gpt-4o', bases), (e: unknown) => e instanceof ModelNotFoundError && e.status === 404 && e.param === 'model');
  assert.throws(
    () => parseModelName('tiny:nope', bases),
    (e: unknown) => e instanceof ModelNotFoundError && /has no adapter `nope`/.test(e.message) && e.code === 'model_not_found',
  );
});

test('an alias owned by several bases is a 400 asking for BASE:ADAPTER', () => {
  assert.throws(() => parseModelName('shout', bases), (e: unknown) => e instanceof InvalidRequestError && e.code === 'model_ambiguous');
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
  assert.equal(parseMerge(Array(16).fill('shout@0.1').join('+'))!.length, 16);
  assert.throws(() => parseMerge(Array(17).fill('shout@0.1').join('+')), (e: unknown) => e instanceof InvalidRequestError && /17 adapters; a composition names at most 16/.test(e.message));
  assert.throws(() => parseMerge('shout@1e400'), (e: unknown) => e instanceof InvalidRequestError && /`shout` \(1e400\) is too large/.test(e.message));
  assert.deepEqual(parseMerge('shout@-.5+whisper@2e-1'), [{ name: 'shout', weight: -0.5 }, { name: 'whisper', weight: 0.2 }]);
  assert.deepEqual(parseModelName('tiny:shout@0.6+whisper@0.4', bases), {
    base: 'tiny',
    members: [
      { name: 'shout', weight: 0.6 },
      { name: 'whisper', weight: 0.4 },
    ],
  });
  assert.throws(() => parseModelName('tiny:shout@0.6+ghost@0.4', bases), (e: unknown) => e instanceof ModelNotFoundError && /`ghost`/.test(e.message));
});

test('body adapters: another base is a 400; a URL is an adapter this base lacks (404), not another base', () => {
  const tiny = bases.get('tiny')!;
  assert.throws(
    () => resolveComposition({ base: 'tiny' }, { adapters: [{ name: 'llama3:8b:solo', weight: 1 }] }, tiny),
    (e: unknown) => e instanceof InvalidRequestError && /belongs to another base model/.test(e.message) && e.param === 'adapters[0].name',
  );
  assert.throws(
    () => resolveComposition({ base: 'tiny' }, { adapters: [{ name: 'https://example.com/a.safetensors', weight: 1 }] }, tiny),
    (e: unknown) => e instanceof ModelNotFoundError && e.status === 404 && e.param === 'adapters[0].name' && /has no adapter `https:\/\/example.com\/a.safetensors`/.test(e.message),
  );
});
