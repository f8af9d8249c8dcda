/**
 * The console's routes without a browser (fake engine): off by default (404), the page and its
 * assets, the admin data endpoints' key checks (401 / 403), the state JSON and its SSE stream,
 * and the chart quantiles (Prometheus histogram_quantile).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { histogramQuantile } from '../../plugin/console/history.ts';
import { fakeServer } from '../gateway/helpers.ts';

const KEYS = [
  { name: 'ops', key: 'ops-key-0001', admin: true, models: ['*'], adapters: ['*'] },
  { name: 'app', key: 'app-key-0001', admin: false, models: ['*'], adapters: ['*'] },
];
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

test('console is off unless asked: /console and its API answer 404', async () => {
  const s = await fakeServer(() => [1]);
  try {
    for (const p of ['/console', '/console/', '/console/api/state', '/console/static/console.js']) {
      assert.equal((await fetch(s.url + p)).status, 404, p);
    }
  } finally {
    await s.close();
  }
});

test('the page and its assets load without a key and hold no model data', async () => {
  const s = await fakeServer(() => [1], { console: true, keys: KEYS });
  try {
    const page = await fetch(s.url + '/console');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /<base href="\/console\/">/);
    assert.doesNotMatch(html, /shout|whisper/, 'no adapter names in the page itself');
    for (const f of ['console.js', 'table.js', 'playground.js', 'sse.js', 'console.css', 'uPlot.iife.min.js', 'uPlot.min.css']) {
      const r = await fetch(`${s.url}/console/static/${f}`);
      assert.equal(r.status, 200, f);
      assert.match(r.headers.get('content-type') ?? '', f.endsWith('.css') ? /text\/css/ : /javascript/, f);
    }
    assert.equal((await fetch(`${s.url}/console/static/..%2Fhistory.ts`)).status, 404);
    assert.equal((await fetch(`${s.url}/console/static/index.ts`)).status, 404);
  } finally {
    await s.close();
  }
});

test('data endpoints: 401 without or with an unknown key, 403 for a key without admin rights', async () => {
  const s = await fakeServer(() => [1], { console: true, keys: KEYS });
  try {
    for (const p of ['/console/api/state', '/console/api/events']) {
      const none = await fetch(s.url + p);
      assert.equal(none.status, 401, p);
      assert.equal((await none.json()).error.code, 'missing_api_key');
      const bad = await fetch(s.url + p, { headers: bearer('nope-nope-nope') });
      assert.equal(bad.status, 401, p);
      await bad.body?.cancel();
      const user = await fetch(s.url + p, { headers: bearer('app-key-0001') });
      assert.equal(user.status, 403, p);
      const body = await user.json();
      assert.equal(body.error.type, 'invalid_request_error');
      assert.doesNotMatch(JSON.stringify(body), /shout/);
    }
  } finally {
    await s.close();
  }
});

test('GET /console/api/state: per base model, one row per adapter with its tier, KV and sequences', async () => {
  const s = await fakeServer(() => [1], { console: true, keys: KEYS });
  try {
    const r = await fetch(s.url + '/console/api/state', { headers: bearer('ops-key-0001') });
    assert.equal(r.status, 200);
    const st = await r.json();
    assert.equal(st.object, 'console.state');
    assert.equal(st.runtimeUpdating, false);
    assert.equal(st.models.length, 1);
    const m = st.models[0];
    assert.equal(m.name, 'tiny');
    assert.deepEqual(m.adapters.map((a: { name: string }) => a.name).sort(), ['romeo', 'shout', 'whisper']);
    for (const a of m.adapters) {
      assert.deepEqual(Object.keys(a).sort(), ['bytes', 'lastUsed', 'name', 'operatorPinned', 'pins', 'rank', 'served', 'slot', 'tier']);
      assert.equal(typeof a.tier, 'string');
    }
    assert.deepEqual(m.sequences, { running: 0, waiting: 0 });
    assert.ok(Array.isArray(st.series.tiny.t));
  } finally {
    await s.close();
  }
});

test('GET /console/api/events: a full state first, then ticks', async () => {
  const s = await fakeServer(() => [1], { console: true });
  const ctl = new AbortController();
  try {
    const r = await fetch(s.url + '/console/api/events', { signal: ctl.signal });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
    const events: Array<{ type: string; models: Array<{ name: string; adapters: unknown[]; removed: string[] }> }> = [];
    let buf = '';
    while (events.length < 3) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the stream stays open');
      buf += value;
      for (let i; (i = buf.indexOf('\n\n')) >= 0; buf = buf.slice(i + 2)) events.push(JSON.parse(buf.slice(6, i)));
    }
    assert.equal(events[0]!.type, 'state');
    assert.equal(events[0]!.models[0]!.adapters.length, 3);
    assert.equal(events[1]!.type, 'tick');
    assert.deepEqual(events[1]!.models[0]!.adapters, [], 'a tick carries only rows that changed');
    assert.deepEqual(events[1]!.models[0]!.removed, []);
  } finally {
    ctl.abort();
    await s.close();
  }
});

test('histogramQuantile interpolates inside the bucket as Prometheus does', () => {
  const le = [0.1, 0.5, 1, Infinity];
  assert.equal(histogramQuantile(0.5, le, [0, 0, 0, 0]), null, 'no observations: no quantile');
  // 10 observations, all in (0.1, 0.5]: the median is halfway through that bucket.
  assert.ok(Math.abs(histogramQuantile(0.5, le, [0, 10, 10, 10])! - 0.3) < 1e-12);
  // 4 in the first bucket, 6 in the second: rank 5 is 1/6 into (0.1, 0.5].
  assert.ok(Math.abs(histogramQuantile(0.5, le, [4, 10, 10, 10])! - (0.1 + 0.4 / 6)) < 1e-12);
  // rank in +Inf: the largest finite bound.
  assert.equal(histogramQuantile(0.99, le, [0, 0, 1, 10]), 1);
});
