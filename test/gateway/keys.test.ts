/**
 * API keys on the fake model: 401s, constant-time lookup by hash, keys never logged, per-key
 * models/adapters (404 without leaking existence, filtered /v1/models), rpm and concurrent
 * limits (429 + Retry-After), and the admin guard.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fakeServer, get, post, until } from './helpers.ts';

type Srv = Awaited<ReturnType<typeof fakeServer>>;
let srv: Srv;
const SHOUT_KEY = 'sk-shout-only-abcdef';
const HASHED_KEY = 'sk-hashed-key-abcdef';
const RPM_KEY = 'sk-rpm-two-abcdef';
const ONE_KEY = 'sk-one-stream-abcdef';
const ADMIN_KEY = 'sk-admin-abcdef';

before(async () => {
  srv = await fakeServer(() => [65, 66, 67], {
    engine: { repeat: true },
    allowRuntimeLoraUpdating: true,
    keys: [
      { key: SHOUT_KEY, name: 'shout-only', models: [], adapters: ['tiny:shout'], admin: false },
      { keyHash: createHash('sha256').update(HASHED_KEY).digest('hex'), name: 'hashed', models: ['tiny'], adapters: ['tiny:w*'], admin: false },
      { key: RPM_KEY, name: 'rpm', models: ['*'], adapters: ['*'], rpm: 2, admin: false },
      { key: ONE_KEY, name: 'one', models: ['*'], adapters: ['*'], maxConcurrentStreams: 1, admin: false },
      { key: ADMIN_KEY, name: 'admin', models: ['*'], adapters: ['*'], admin: true },
    ],
  });
});
after(async () => {
  await srv?.close();
});

const CHAT = '/v1/chat/completions';
const chat = (model: string, extra: object = {}) => ({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 3, ...extra });

test('no key or a wrong key is 401 with an OpenAI body; the key is never logged', async () => {
  const none = await post(srv.url + CHAT, chat('tiny'));
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, 'missing_api_key');
  const wrong = await post(srv.url + CHAT, chat('tiny'), 'sk-wrong-key-123456');
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.error.code, 'invalid_api_key');
  assert.doesNotMatch(wrong.text, /sk-wrong/);
  await post(srv.url + CHAT, chat('tiny:shout'), SHOUT_KEY);
  const log = srv.logger.lines.join('\n');
  for (const k of ['sk-wrong-key-123456', SHOUT_KEY, HASHED_KEY, RPM_KEY]) assert.ok(!log.includes(k), `${k} in the log`);
  assert.match(log, /shout-only/); // the key's name is
});

test('a key limited to tiny:shout uses only it; every other model answers like an unknown one', async () => {
  assert.equal((await post(srv.url + CHAT, chat('tiny:shout'), SHOUT_KEY)).status, 200);
  assert.equal((await post(srv.url + CHAT, chat('shout'), SHOUT_KEY)).status, 200); // alias
  const unknown = await post(srv.url + CHAT, chat('tiny:does-not-exist'), SHOUT_KEY);
  assert.equal(unknown.status, 404);
  for (const [model, extra] of [
    ['tiny:whisper', {}],
    ['whisper', {}],
    ['tiny', {}],
    ['tiny:shout@0.5+whisper@0.5', {}],
    ['tiny', { adapters: [{ name: 'shout', weight: 0.5 }, { name: 'romeo', weight: 0.5 }] }],
  ] as Array<[string, object]>) {
    const r = await post(srv.url + CHAT, chat(model, extra), SHOUT_KEY);
    assert.equal(r.status, 404, `${model}: ${r.text}`);
    assert.deepEqual(r.body, { error: { ...unknown.body.error, message: unknown.body.error.message.replace('tiny:does-not-exist', model) } });
  }
  const list = await get(srv.url + '/v1/models', SHOUT_KEY);
  assert.deepEqual(list.body.data.map((m: { id: string }) => m.id), ['tiny:shout']);
  assert.equal((await get(srv.url + '/v1/models/tiny:shout', SHOUT_KEY)).status, 200);
  assert.equal((await get(srv.url + '/v1/models/tiny:whisper', SHOUT_KEY)).status, 404);
});

test('keyHash keys work; globs pick adapters', async () => {
  const list = await get(srv.url + '/v1/models', HASHED_KEY);
  assert.deepEqual(list.body.data.map((m: { id: string }) => m.id), ['tiny', 'tiny:whisper']);
  assert.equal((await post(srv.url + CHAT, chat('tiny:whisper'), HASHED_KEY)).status, 200);
  assert.equal((await post(srv.url + CHAT, chat('tiny:shout'), HASHED_KEY)).status, 404);
});

test('rpm: past the limit 429 with Retry-After', async () => {
  assert.equal((await get(srv.url + '/v1/models', RPM_KEY)).status, 200);
  assert.equal((await post(srv.url + CHAT, chat('tiny'), RPM_KEY)).status, 200);
  const r = await post(srv.url + CHAT, chat('tiny'), RPM_KEY);
  assert.equal(r.status, 429);
  assert.equal(r.body.error.code, 'rate_limit_exceeded');
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
});

test('maxConcurrentStreams: a second request while one runs is 429', async () => {
  srv.engine.paused = true;
  const first = post(srv.url + CHAT, chat('tiny', { stream: true, max_tokens: 5 }), ONE_KEY);
  await until(() => srv.router.inFlight === 1);
  const second = await post(srv.url + CHAT, chat('tiny'), ONE_KEY);
  assert.equal(second.status, 429);
  assert.equal(second.body.error.code, 'concurrent_limit_exceeded');
  srv.engine.resume();
  assert.equal((await first).status, 200);
  await until(() => srv.router.inFlight === 0);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal((await post(srv.url + CHAT, chat('tiny'), ONE_KEY)).status, 200);
});

test('admin routes need an admin key (requireAdmin)', async () => {
  const body = { lora_name: 'x', lora_path: '/nowhere' };
  assert.equal((await post(srv.url + '/v1/load_lora_adapter', body)).status, 401);
  const user = await post(srv.url + '/v1/load_lora_adapter', body, SHOUT_KEY);
  assert.equal(user.status, 403);
  assert.equal(user.body.error.code, 'insufficient_permissions');
  assert.equal((await post(srv.url + '/v1/unload_lora_adapter', { lora_name: 'shout' }, HASHED_KEY)).status, 403);
  const admin = await post(srv.url + '/v1/load_lora_adapter', body, ADMIN_KEY);
  assert.notEqual(admin.status, 403); // past the guard (the fake provider has no runtime loads: 501)
  assert.notEqual(admin.status, 401);
});
