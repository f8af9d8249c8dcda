/**
 * The operator's surface on the real gateway (demo model, native engine): acceptance 3 (a key
 * limited to `tiny-shakespeare:shout`), /health, /ready, /metrics names and labels (incl. the
 * Gateway API Inference Extension's vllm:* metrics), x-request-id, and cancellation of a
 * non-streaming request whose client disconnects.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo } from '../e2e/server.ts';
import { get, post, until } from './helpers.ts';

let srv: RunningServer;
let root: string;
const SHOUT = 'sk-acceptance-shout-only';
const ALL = 'sk-acceptance-everything';
before(async () => {
  srv = await startDemo({
    keys: [
      { key: SHOUT, name: 'shout-only', models: [], adapters: ['tiny-shakespeare:shout'] },
      { key: ALL, name: 'all' },
    ],
  });
  root = srv.url.replace(/\/v1$/, '');
});
after(async () => {
  await srv?.close();
});

const chat = (model: string, extra: object = {}) => ({ model, messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 4, ...extra });

test('acceptance 3: a key limited to tiny-shakespeare:shout can neither use nor list any other adapter', async () => {
  const ok = await post(`${srv.url}/chat/completions`, chat('tiny-shakespeare:shout'), SHOUT);
  assert.equal(ok.status, 200, ok.text);
  const list = await get(`${srv.url}/models`, SHOUT);
  assert.deepEqual(list.body.data.map((m: { id: string }) => m.id), ['tiny-shakespeare:shout']);
  const all = await get(`${srv.url}/models`, ALL);
  assert.ok(all.body.data.length >= 5);
  for (const model of ['tiny-shakespeare:whisper', 'tiny-shakespeare:romeo', 'tiny-shakespeare:rs', 'romeo', 'tiny-shakespeare', 'tiny-shakespeare:shout@0.5+whisper@0.5']) {
    const r = await post(`${srv.url}/chat/completions`, chat(model), SHOUT);
    assert.equal(r.status, 404, `${model}: ${r.text}`);
    assert.equal(r.body.error.code, 'model_not_found');
    assert.equal(r.body.error.message, `The model \`${model}\` does not exist or you do not have access to it.`);
    assert.equal((await get(`${srv.url}/models/${model}`, SHOUT)).status, 404);
  }
  const c = await post(`${srv.url}/completions`, { model: 'tiny-shakespeare', adapters: [{ name: 'whisper', weight: 1 }], prompt: 'x', max_tokens: 2 }, SHOUT);
  assert.equal(c.status, 404);
});

test('/health and /ready answer without a key', async () => {
  assert.deepEqual((await get(`${root}/health`)).body, { status: 'ok' });
  const ready = await get(`${root}/ready`);
  assert.equal(ready.status, 200);
  assert.deepEqual(ready.body, { status: 'ready' });
});

test('x-request-id is honoured or generated', async () => {
  const given = await post(`${srv.url}/chat/completions`, chat('tiny-shakespeare:shout'), SHOUT, { 'x-request-id': 'req-abc.123' });
  assert.equal(given.headers.get('x-request-id'), 'req-abc.123');
  const made = await post(`${srv.url}/chat/completions`, chat('nope'), SHOUT);
  assert.match(made.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  const hostile = await get(`${srv.url}/models`, SHOUT);
  assert.ok(hostile.headers.get('x-request-id'));
});

test('/metrics: openlora and vllm:* names and labels, with a running adapter', async () => {
  // A long stream on shout keeps it in running_lora_adapters while we scrape.
  const ac = new AbortController();
  const res = await fetch(`${srv.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ALL}` },
    body: JSON.stringify(chat('tiny-shakespeare:shout', { max_tokens: 400, stream: true, logit_bias: { '1020': -100, '1023': -100 } })),
    signal: ac.signal,
  });
  const reader = res.body!.getReader();
  await reader.read();
  const m = await get(`${root}/metrics`);
  ac.abort();
  await reader.closed.catch(() => {});
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
  const text: string = m.text;
  const info = text.split('\n').find((l) => l.startsWith('vllm:lora_requests_info{') && l.includes('model_name="tiny-shakespeare"'));
  assert.ok(info, 'vllm:lora_requests_info');
  assert.match(info!, /max_lora="\d+"/);
  assert.match(info!, /running_lora_adapters="[^"]*tiny-shakespeare:shout[^"]*"/);
  assert.match(info!, /waiting_lora_adapters="[^"]*"/);
  assert.ok(Math.abs(Number(info!.split(' ').at(-1)) - Date.now() / 1000) < 60, 'value = timestamp');
  for (const re of [
    /^# TYPE vllm:num_requests_waiting gauge$/m,
    /^vllm:num_requests_waiting\{model_name="tiny-shakespeare"\} \d+/m,
    /^vllm:gpu_cache_usage_perc\{model_name="tiny-shakespeare"\} [\d.e-]+$/m,
    /^openlora_requests_total\{model="tiny-shakespeare",status="200"\} \d+/m,
    /^openlora_requests_total\{model="none",status="404"\} \d+/m,
    /^openlora_prompt_tokens_total\{model="tiny-shakespeare"\} \d+/m,
    /^openlora_generation_tokens_total\{model="tiny-shakespeare"\} \d+/m,
    /^openlora_time_to_first_token_seconds_bucket\{le="0.1",model="tiny-shakespeare"\} \d+/m,
    /^openlora_inter_token_latency_seconds_count\{model="tiny-shakespeare"\} [1-9]\d*/m,
    /^openlora_queue_depth\{model="tiny-shakespeare"\} 0$/m,
    /^openlora_running_sequences\{model="tiny-shakespeare"\} \d+/m,
    /^openlora_scoring_prompts\{model="tiny-shakespeare"\} 0$/m,
    /^process_resident_memory_bytes \d+/m,
  ]) {
    assert.match(text, re);
  }
  const { engine } = srv.openlora.models.get('tiny-shakespeare')!;
  if ((engine.stats() as { kvBlocksTotal?: number }).kvBlocksTotal !== undefined) {
    assert.match(text, /^openlora_kv_blocks\{model="tiny-shakespeare",state="free"\} \d+/m);
    assert.match(text, /^openlora_kv_blocks\{model="tiny-shakespeare",state="used"\} \d+/m);
    const blocks = (state: string) => Number(new RegExp(`^openlora_kv_blocks\\{model="tiny-shakespeare",state="${state}"\\} (\\d+)`, 'm').exec(text)?.[1]);
    assert.ok(blocks('cached') >= 0, 'the cached state is reported');
    assert.equal(blocks('used') + blocks('cached') + blocks('free'), (engine.stats() as { kvBlocksTotal: number }).kvBlocksTotal);
  }
  // Memory by part: the engine's weights as stored (the demo: ~3.5M float32 parameters) and KV
  // pool, with the adapters the requests above loaded (shout, at least) in their slots.
  const part = (p: string) => Number(text.match(new RegExp(`^openlora_memory_bytes\\{model="tiny-shakespeare",part="${p}"\\} (\\d+)`, 'm'))?.[1]);
  const st = engine.stats();
  assert.equal(part('weights'), st.weightBytes);
  assert.ok(part('weights') > 1e6, `weights ${part('weights')}`);
  assert.ok(part('kv_cache') > 0 && part('kv_cache') === st.kvCacheBytes);
  assert.ok(part('kv_used') >= 0 && part('kv_used') <= part('kv_cache'));
  assert.ok(part('adapters') > 0, `adapters ${part('adapters')}`);
});

test('a non-streaming client that disconnects cancels its sequence and releases its pin', async () => {
  const { engine, adapters } = srv.openlora.models.get('tiny-shakespeare')!;
  await until(() => engine.stats().running === 0 && adapters.stats().pinned === 0);
  const ac = new AbortController();
  const p = fetch(`${srv.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ALL}` },
    body: JSON.stringify(chat('tiny-shakespeare:whisper', { max_tokens: 400, logit_bias: { '1020': -100, '1023': -100 } })),
    signal: ac.signal,
  }).catch(() => 'aborted');
  await until(() => engine.stats().running === 1);
  const stepsBefore = engine.stats().steps;
  ac.abort();
  await p;
  await until(() => engine.stats().running === 0 && engine.stats().waiting === 0);
  assert.ok(engine.stats().steps - stepsBefore < 50, `engine ran ${engine.stats().steps - stepsBefore} steps after the client left`);
  await until(() => adapters.stats().pinned === 0);
  const st = engine.stats() as { kvBlocksTotal?: number; kvBlocksFree?: number; kvBlocksCached?: number };
  if (st.kvBlocksTotal !== undefined) assert.equal(st.kvBlocksFree! + (st.kvBlocksCached ?? 0), st.kvBlocksTotal, 'no KV block referenced');
});
