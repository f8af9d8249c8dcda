/**
 * Upstream passthrough against a fake OpenAI-compatible upstream on loopback: bodies go
 * unchanged, the key is replaced, SSE streams through unbuffered, failures are 502/504
 * OpenAI error bodies, local models stay local; only the inference endpoints are proxied (by
 * exact path) and the client's cookies and hop-by-hop headers stay here.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import express from 'express';
import { fakeServer, get, listen, post } from './helpers.ts';

type Srv = Awaited<ReturnType<typeof fakeServer>>;
let upstream: Awaited<ReturnType<typeof listen>>;
let srv: Srv;
const seen: Array<{ path: string; auth?: string; body: string; headers?: Record<string, unknown> }> = [];
let releaseSecondChunk!: () => void;

before(async () => {
  const app = express();
  app.use(express.text({ type: '*/*' }));
  app.post('/v1/chat/completions', (req, res) => {
    seen.push({ path: req.path, auth: req.headers.authorization, body: req.body as string });
    const body = JSON.parse(req.body as string);
    if (body.model === 'gpt-slow') return; // never answers: the gateway times out
    if (!body.stream) {
      res.json({ id: 'up-1', object: 'chat.completion', model: body.model, choices: [{ index: 0, message: { role: 'assistant', content: 'from upstream' }, finish_reason: 'stop' }] });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'one' } }] })}\n\n`);
    // The second chunk waits for the test to see the first: proves no buffering.
    new Promise<void>((r) => (releaseSecondChunk = r)).then(() => {
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'two' } }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    });
  });
  app.post('/v1/embeddings', (req, res) => {
    seen.push({ path: req.path, auth: req.headers.authorization, body: req.body as string, headers: req.headers });
    res.json({ object: 'list', data: [{ object: 'embedding', index: 0, embedding: [0.5] }] });
  });
  // Any other path answers 200 (as a real upstream would for /v1/fine_tuning/jobs): whatever reaches it is seen.
  app.use((req, res) => {
    seen.push({ path: req.originalUrl, auth: req.headers.authorization, body: req.body as string, headers: req.headers });
    res.set('set-cookie', 'upstream-session=1').json({ object: 'reached', path: req.originalUrl });
  });
  upstream = await listen(app);
  srv = await fakeServer(() => [65, 66, 1023], {
    upstreams: [
      { pattern: 'gpt-slow', url: `${upstream.url}/v1`, timeoutMs: 300 },
      { pattern: 'gpt-*', url: `${upstream.url}/v1`, apiKey: 'upstream-secret', timeoutMs: 10_000 },
      { pattern: 'text-embedding-*', url: `${upstream.url}/v1`, timeoutMs: 10_000 },
      { pattern: 'dead-*', url: 'http://127.0.0.1:1/v1', timeoutMs: 10_000 },
    ],
    keys: [
      { key: 'sk-all-0123456789', name: 'all', models: ['*'], adapters: ['*'], admin: false },
      { key: 'sk-gpt4o-0123456789', name: 'gpt4o-only', models: ['gpt-4o'], adapters: [], admin: false },
    ],
  });
});
after(async () => {
  await srv?.close();
  await upstream?.close();
});

const CHAT = '/v1/chat/completions';

/** POST `path` exactly as written (fetch would normalise it), with the all-models key. */
function rawPost(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const u = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const headersOut = { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789', ...headers };
    const r = request({ host: u.hostname, port: u.port, method: 'POST', path, headers: headersOut }, (m) => {
      let text = '';
      m.setEncoding('utf8').on('data', (c: string) => (text += c));
      m.on('end', () => resolve({ status: m.statusCode ?? 0, body: text.startsWith('{') ? JSON.parse(text) : text }));
    });
    r.on('error', reject);
    r.end(JSON.stringify(body));
  });
}

test('a non-local model is proxied with its body unchanged and the upstream key', async () => {
  const raw = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],  "tools":[{"type":"function"}], "x_unknown": 1}';
  const r = await post(srv.url + CHAT, raw, 'sk-all-0123456789');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.choices[0].message.content, 'from upstream');
  const s = seen.at(-1)!;
  assert.equal(s.path, '/v1/chat/completions');
  assert.equal(s.body, raw, 'body bytes unchanged');
  assert.equal(s.auth, 'Bearer upstream-secret');
  assert.ok(r.headers.get('x-request-id'));
});

test('without an upstream apiKey the openlora key is not forwarded', async () => {
  const r = await post(srv.url + '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' }, 'sk-all-0123456789');
  assert.equal(r.status, 200, r.text);
  assert.equal(seen.at(-1)!.auth, undefined);
});

test('SSE from the upstream streams through unbuffered', async () => {
  const res = await fetch(srv.url + CHAT, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /event-stream/);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  const first = dec.decode((await reader.read()).value);
  assert.match(first, /"one"/); // arrived while the upstream still holds back the rest
  releaseSecondChunk();
  let rest = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    rest += dec.decode(value);
  }
  assert.match(rest, /"two"/);
  assert.match(rest, /\[DONE\]/);
});

test('an unreachable upstream is a 502 OpenAI error, a silent one a 504', async () => {
  const dead = await post(srv.url + CHAT, { model: 'dead-model', messages: [] }, 'sk-all-0123456789');
  assert.equal(dead.status, 502, dead.text);
  assert.equal(dead.body.error.type, 'server_error');
  assert.equal(dead.body.error.code, 'upstream_error');
  const slow = await post(srv.url + CHAT, { model: 'gpt-slow', messages: [] }, 'sk-all-0123456789');
  assert.equal(slow.status, 504, slow.text);
  assert.equal(slow.body.error.code, 'upstream_timeout');
});

test('local models stay local; unknown models that match no upstream are 404', async () => {
  const local = await post(srv.url + CHAT, { model: 'tiny:shout', messages: [{ role: 'user', content: 'x' }] }, 'sk-all-0123456789');
  assert.equal(local.status, 200, local.text);
  assert.equal(local.body.model, 'tiny:shout');
  assert.equal(srv.engine.added.length > 0, true);
  const none = await post(srv.url + CHAT, { model: 'llama-9', messages: [{ role: 'user', content: 'x' }] }, 'sk-all-0123456789');
  assert.equal(none.status, 404);
  assert.equal(none.body.error.code, 'model_not_found');
});

test('keys apply to upstream models too', async () => {
  const ok = await post(srv.url + CHAT, { model: 'gpt-4o', messages: [] }, 'sk-gpt4o-0123456789');
  assert.equal(ok.status, 200);
  const no = await post(srv.url + CHAT, { model: 'gpt-4o-mini', messages: [] }, 'sk-gpt4o-0123456789');
  assert.equal(no.status, 404);
  const anon = await post(srv.url + CHAT, { model: 'gpt-4o', messages: [] });
  assert.equal(anon.status, 401);
  const models = await get(srv.url + '/v1/models', 'sk-gpt4o-0123456789');
  assert.deepEqual(models.body.data, []);
});

test('dot segments are never forwarded upstream (400), and proxied requests are counted in /metrics', async () => {
  const before = seen.length;
  const res = await fetch(srv.url + '/v1/../admin', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
  });
  // fetch normalises the URL, so send the raw path with node:http instead when it did.
  if (res.status !== 400) assert.equal((await rawPost('/v1/../admin', { model: 'gpt-4o', messages: [] })).status, 400);
  assert.equal(seen.length, before, 'nothing reached the upstream');
  await post(srv.url + CHAT, { model: 'gpt-4o', messages: [] }, 'sk-all-0123456789');
  const metrics = await (await fetch(srv.url + '/metrics')).text();
  assert.match(metrics, /^openlora_requests_total\{model="upstream:gpt-\*",status="200"\} [1-9]\d*/m);
});

test('only the inference endpoints are proxied: /v1/fine_tuning/jobs is a 404 that never reaches the upstream', async () => {
  const before = seen.length;
  for (const path of ['/v1/fine_tuning/jobs', '/v1/images/generations', '/v1/files', '/v1/batches', '/v1/load_lora_adapter']) {
    const r = await post(srv.url + path, { model: 'gpt-4o-mini', training_file: 'file-abc', prompt: 'x' }, 'sk-all-0123456789');
    assert.equal(r.status, 404, `${path}: ${r.text}`);
    assert.equal(r.body.error.type, 'invalid_request_error');
    assert.equal(r.body.error.code, 'upstream_path_not_proxied');
    assert.match(r.body.error.message, new RegExp(`POST ${path} is not proxied`));
  }
  assert.deepEqual(seen.slice(before), [], 'nothing reached the upstream');
});

test('encoded traversal, prefixes and other spellings of an endpoint are not proxied', async () => {
  const before = seen.length;
  for (const path of [
    '/v1/chat/completions/..%2f..%2fsecret',
    '/v1/chat/completions/%2e%2e/%2e%2e/secret',
    '/v1/chat/completions/x',
    '/v1/chat%2Fcompletions',
    '/v1/chat/completions%00',
    '/v1/%63hat/completions',
    '/v1/chat/completions/',
    '/v1/Embeddings',
  ]) {
    const r = await rawPost(path, { model: 'gpt-4o', messages: [] });
    assert.equal(r.status, 404, `${path}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'upstream_path_not_proxied', path);
  }
  assert.deepEqual(seen.slice(before), [], 'nothing reached the upstream');
});

test('a proxied body naming `model` twice is a 400 that never reaches the upstream (it might read the other one)', async () => {
  const before = seen.length;
  for (const body of ['{"model":"gpt-4o-mini","model":"gpt-4o","messages":[]}', '{"model":"gpt-4o","messages":[],"mod\\u0065l":"gpt-4o"}']) {
    const r = await fetch(srv.url + CHAT, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' }, body });
    const e = ((await r.json()) as { error: { param: string; message: string } }).error;
    assert.equal(r.status, 400, body);
    assert.equal(e.param, 'model');
    assert.match(e.message, /names `model` more than once/);
  }
  assert.deepEqual(seen.slice(before), [], 'nothing reached the upstream');
  // Nested "model" keys and strings are not the top-level field: forwarded.
  const ok = await fetch(srv.url + CHAT, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' },
    body: '{"model":"gpt-4o","messages":[{"role":"user","content":"\\"model\\":"}],"metadata":{"model":"x"}}',
  });
  assert.equal(ok.status, 200);
  assert.equal(seen.length, before + 1);
});

test('every inference endpoint is proxied, with its query string, to the same path upstream', async () => {
  for (const path of ['/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/responses']) {
    const r = await post(`${srv.url}${path}?api-version=1`, { model: 'gpt-4o', input: 'x', prompt: 'x', messages: [] }, 'sk-all-0123456789');
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    const s = seen.at(-1)!;
    assert.equal(s.auth, 'Bearer upstream-secret');
    assert.equal(s.path.replace(/\?.*/, ''), path);
  }
  assert.equal(seen.at(-1)!.path, '/v1/responses?api-version=1');
});

test("the client's cookies, other credentials and hop-by-hop headers are not forwarded; the upstream's cookies not returned", async () => {
  const r = await rawPost('/v1/embeddings', { model: 'gpt-4o', input: 'x' }, {
    cookie: 'session=tenant-secret',
    'proxy-authorization': 'Basic dGVuYW50OnNlY3JldA==',
    'x-api-key': 'tenant-key',
    'api-key': 'tenant-key',
    connection: 'keep-alive, x-hop, Host',
    'keep-alive': 'timeout=5',
    'x-hop': 'hop-by-hop',
    te: 'trailers',
    'x-client-note': 'kept',
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const h = seen.at(-1)!.headers!;
  for (const name of ['cookie', 'proxy-authorization', 'x-api-key', 'api-key', 'keep-alive', 'x-hop', 'te']) assert.equal(h[name], undefined, name);
  assert.equal(h.authorization, 'Bearer upstream-secret');
  assert.equal(h['x-client-note'], 'kept');
  const res = await fetch(srv.url + '/v1/embeddings', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' },
    body: JSON.stringify({ model: 'gpt-4o', input: 'x' }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('set-cookie'), null);
});

test('close(grace) lets a proxied stream finish', async () => {
  const res = await fetch(srv.url + CHAT, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-all-0123456789' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [], stream: true }),
  });
  const reader = res.body!.getReader();
  await reader.read(); // the first chunk is through
  // As examples/server.ts shuts down: router.close(grace), then every connection is cut.
  const closing = srv.router.close(5_000).then(() => srv.server.closeAllConnections());
  setTimeout(() => releaseSecondChunk(), 100);
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  await closing;
  assert.match(text, /two/);
  assert.match(text, /\[DONE\]/);
});
