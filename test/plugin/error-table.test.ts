/**
 * plugin/errors.ts: every domain error code of the layers below has one row in ERROR_TABLE,
 * and toOpenAIError answers domain errors through it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADAPTER_ERROR_CODES, AdapterError, unknownAdapter } from '../../adapters/errors.ts';
import { NATIVE_ERROR_CODES, NativeError, wrapNativeError } from '../../native/errors.ts';
import { DOMAIN_ERROR_CODES, ERROR_TABLE, ModelNotFoundError, toOpenAIError } from '../../plugin/errors.ts';

test('every AdapterError and NativeError code has exactly one row, and every row a code', () => {
  const codes = new Set<string>([...ADAPTER_ERROR_CODES, ...NATIVE_ERROR_CODES]);
  assert.deepEqual(new Set(Object.keys(ERROR_TABLE)), codes);
  assert.deepEqual(new Set(DOMAIN_ERROR_CODES), codes);
  for (const [code, row] of Object.entries(ERROR_TABLE)) {
    assert.ok(row.status >= 400 && row.status < 600, code);
    assert.equal(row.type, row.status < 500 ? 'invalid_request_error' : 'server_error', code);
  }
});

test('the answers the issue asks for: no free slot 503 + Retry-After, device 500, bad adapter 400, unknown 404', () => {
  const slot = toOpenAIError(new AdapterError('adapter a: all 4 adapter slots are in use', 'no_free_slot', { param: null, retryAfterSeconds: 2 }));
  assert.equal(slot.status, 503);
  assert.equal(slot.headers['retry-after'], '2');
  assert.equal(slot.body.error.code, 'no_free_slot');
  assert.equal(toOpenAIError(new NativeError('no free adapter slot', 'no_free_slot')).status, 503);

  const device = toOpenAIError(new NativeError('adapter a: the engine refused x: CUDA error: out of memory', 'device_error'));
  assert.deepEqual([device.status, device.body.error.type, device.body.error.code], [500, 'server_error', 'device_error']);
  assert.match(device.body.error.message, /out of memory/, 'a device failure names its cause');

  const bad = toOpenAIError(new AdapterError('/a/adapter_model.safetensors: tensor x has shape [2, 3]'));
  assert.deepEqual([bad.status, bad.body.error.type, bad.body.error.param, bad.body.error.code], [400, 'invalid_request_error', 'model', 'invalid_adapter']);

  const unknown = toOpenAIError(unknownAdapter('tiny:ghost'));
  const asPlugin = toOpenAIError(new ModelNotFoundError('tiny:ghost'));
  assert.deepEqual(unknown, asPlugin, 'an unknown adapter answers exactly as an unknown model');
  assert.equal(unknown.status, 404);

  const internal = toOpenAIError(new NativeError('std::bad_alloc at engine.cc:120', 'internal'));
  assert.equal(internal.status, 500);
  assert.doesNotMatch(internal.body.error.message, /engine\.cc/, 'engine internals are logged, not sent');

  const merge = toOpenAIError(new AdapterError('merge.density must be in (0, 1]', 'invalid_merge', { param: 'merge.density' }));
  assert.deepEqual([merge.status, merge.body.error.param], [400, 'merge.density']);
});

test('wrapNativeError keeps the addon code and field; anything uncoded is internal', () => {
  const coded = wrapNativeError(Object.assign(new Error('EngineOptions.maxLoras must be in [1, 4096], got 0'), { code: 'invalid_argument', field: 'EngineOptions.maxLoras' }));
  assert.deepEqual([coded.code, coded.param], ['invalid_argument', 'EngineOptions.maxLoras']);
  assert.deepEqual([wrapNativeError(Object.assign(new Error('all 2 slots are loaded'), { code: 'no_free_slot' })).code, wrapNativeError(new Error('x')).code], ['no_free_slot', 'internal']);
  assert.equal(wrapNativeError(Object.assign(new Error('?'), { code: 'from_a_newer_addon' })).code, 'internal');
  assert.equal(wrapNativeError('a string').message, 'a string');
  const n = new NativeError('m', 'disposed');
  assert.equal(wrapNativeError(n), n);
});
