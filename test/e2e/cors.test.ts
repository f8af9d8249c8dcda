/**
 * CORS of `npm start` (config `cors`, examples/server.ts corsFor): by default any origin, as
 * vLLM's --allowed-origins; a preflight is answered before the key check; listed origins only
 * when the config lists them; no CORS headers at all with `allowedOrigins: []`; credentials with
 * "*" refused when the config is read.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultConfigInput, parseConfig } from '../../config/load.ts';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo } from './server.ts';

const KEY = 'sk-cors-test-key';
const chat = { model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };

/** A browser's preflight for a POST with Authorization and a JSON body. */
function preflight(url: string, origin: string): Promise<Response> {
  return fetch(url + '/chat/completions', {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
}

/** Start the demo with `extra` config for the enclosing describe; the returned getter gives it. */
function serve(extra: Record<string, unknown>): () => RunningServer {
  let srv: RunningServer | undefined;
  before(async () => {
    srv = await startDemo(extra);
  });
  after(async () => {
    await srv?.close();
  });
  return () => srv!;
}

function post(url: string, origin: string, key?: string): Promise<Response> {
  return fetch(url + '/chat/completions', {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(chat),
  });
}

describe('default: any origin, with keys', () => {
  const server = serve({ keys: [{ key: KEY, name: 'k' }] });

  test('a preflight gets 204 and the allow headers without a key', async () => {
    const r = await preflight(server().url, 'https://app.example');
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), '*');
    assert.match(r.headers.get('access-control-allow-methods') ?? '', /POST/);
    assert.match(r.headers.get('access-control-allow-headers') ?? '', /authorization/i);
    assert.equal(r.headers.get('access-control-allow-credentials'), null);
  });

  test('the request itself: CORS headers on the answer and on a 401', async () => {
    const ok = await post(server().url, 'https://app.example', KEY);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), '*');
    assert.match(ok.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
    await ok.arrayBuffer();
    const denied = await post(server().url, 'https://app.example');
    assert.equal(denied.status, 401, 'the key is still required');
    assert.equal(denied.headers.get('access-control-allow-origin'), '*', 'the page can read the error');
    await denied.arrayBuffer();
  });
});

describe('listed origins', () => {
  const server = serve({ cors: { allowedOrigins: ['https://app.example'], allowCredentials: true } });

  test('a listed origin is echoed with credentials; another gets no allow-origin', async () => {
    const listed = await preflight(server().url, 'https://app.example');
    assert.equal(listed.status, 204);
    assert.equal(listed.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.equal(listed.headers.get('access-control-allow-credentials'), 'true');
    const other = await preflight(server().url, 'https://evil.example');
    assert.equal(other.headers.get('access-control-allow-origin'), null);
    const r = await post(server().url, 'https://evil.example');
    assert.equal(r.headers.get('access-control-allow-origin'), null, 'the browser will not hand the answer to that page');
    await r.arrayBuffer();
  });
});

describe('off', () => {
  const server = serve({ cors: { allowedOrigins: [] } });

  test('no CORS headers; a preflight is the 404 of an unknown route', async () => {
    const r = await preflight(server().url, 'https://app.example');
    assert.equal(r.status, 404);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
    await r.arrayBuffer();
  });
});

test('config: allowCredentials with "*" is refused, naming the field', () => {
  assert.throws(() => parseConfig({ ...defaultConfigInput(), cors: { allowCredentials: true } }), /cors\.allowCredentials.*origins listed/s);
});
