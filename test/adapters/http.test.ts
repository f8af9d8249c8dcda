/**
 * Acceptance of the adapter lifecycle over HTTP with the real engine (issue 3):
 * a Zipf stream over 200 generated adapters with 8 slots / 64 host slots, checked token for
 * token against each request run alone with only its adapter resident; single-flight of a
 * cold adapter; unload during generation; refused bad adapters; the runtime API and its path
 * confinement; Retry-After on a 503; the tier in /v1/models; a folder copied into a scanned
 * directory after start-up found by name; non-finite weights or scaling refused at a runtime
 * load; concurrent runtime loads of one name; symlinked folders outside the roots refused
 * everywhere. (The 1,000-adapter run is bench/adapters-load.ts.)
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import type { AdapterManager } from '../../adapters/manager.ts';
import type { RunningServer } from '../../examples/server.ts';
import { postJson, startDemo } from '../e2e/server.ts';
import { writeAdapterSet, writeRandomAdapter, rng, type GenOptions } from './gen.ts';
import { EXAMPLES, tinyInfo } from './helpers.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = existsSync(`${root}build/Release/openlora.node`);
const COUNT = Number(process.env.OPENLORA_TEST_ADAPTERS ?? 200);
const PROMPT = [72, 101, 108, 108, 111, 44, 32, 109, 121, 32, 108, 111, 114, 100];

let tmp: string;
let gen: string; // scanned generated adapters
let rt: string; // the runtime adapter root
let names: string[];
let main: RunningServer; // 8 slots, 64 host slots, runtime API on
let solo: RunningServer; // 1 slot: "only that adapter resident"; slotWaitMs 150
const mgr = (s: RunningServer) => s.openlora.models.get('tiny-shakespeare')!.adapters as AdapterManager;
const engine = (s: RunningServer) => s.openlora.models.get('tiny-shakespeare')!.engine;

function model(dirs: string[], extra: Record<string, unknown> = {}) {
  return { models: [{ name: 'tiny-shakespeare', path: join(root, 'examples/models/tiny-shakespeare'), adapterDirs: dirs }], ...extra };
}

before(async () => {
  if (!built) return;
  tmp = await mkdtemp(join(tmpdir(), 'openlora-http-'));
  gen = join(tmp, 'gen');
  rt = join(tmp, 'runtime');
  await mkdir(rt, { recursive: true });
  const t0 = performance.now();
  names = await writeAdapterSet(gen, tinyInfo(), COUNT);
  console.log(`# generated ${COUNT} adapters in ${Math.round(performance.now() - t0)} ms`);
  main = await startDemo(model([gen, EXAMPLES], {
    engine: { threads: 2, maxLoras: 8 }, adapterCache: { maxCpuLoras: 64 }, allowRuntimeLoraUpdating: true, adapterRoots: [rt],
  }));
  solo = await startDemo(model([gen], { engine: { threads: 2, maxLoras: 1 }, adapterCache: { maxCpuLoras: 2, slotWaitMs: 150 } }));
});
after(async () => {
  await main?.close();
  await solo?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function complete(s: RunningServer, adapter: string, maxTokens = 4): Promise<{ status: number; body: any }> {
  return postJson(s.url, '/completions', { model: `tiny-shakespeare:${adapter}`, prompt: PROMPT, max_tokens: maxTokens, temperature: 0, logprobs: 0 });
}
const tokensOf = (b: any): string => JSON.stringify(b.choices[0].logprobs.tokens);

describe('adapter lifecycle over HTTP', { skip: built ? false : 'native addon not built', timeout: 600_000 }, () => {
  test(`Zipf stream over ${COUNT} adapters, 8 slots / 64 host slots: every response equals the request run alone`, async (t) => {
    const rand = rng(7);
    // Zipf(s = 1.1) over a shuffled ranking of the adapters.
    const order = [...names].sort(() => rand() - 0.5);
    const w = order.map((_, i) => 1 / Math.pow(i + 1, 1.1));
    const total = w.reduce((a, b) => a + b, 0);
    const pick = () => {
      let x = rand() * total;
      for (let i = 0; i < w.length; i++) if ((x -= w[i]!) <= 0) return order[i]!;
      return order[order.length - 1]!;
    };
    const N = 400;
    const stream = Array.from({ length: N }, pick);
    const out = new Map<number, { adapter: string; tokens: string }>();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < N) {
        const i = next++;
        const r = await complete(main, stream[i]!);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        out.set(i, { adapter: stream[i]!, tokens: tokensOf(r.body) });
      }
    }));
    const ms = performance.now() - t0;
    const st = mgr(main).stats();
    const distinct = [...new Set(stream)];
    const ref = new Map<string, string>();
    for (const a of distinct) {
      const r = await complete(solo, a);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      ref.set(a, tokensOf(r.body));
    }
    let same = 0;
    for (const [i, o] of out) {
      assert.equal(o.tokens, ref.get(o.adapter), `request ${i} (${o.adapter})`);
      same++;
    }
    assert.equal(same, N);
    // Distinct adapters must not all give the same tokens (the adapters matter).
    assert.ok(new Set(ref.values()).size > 1, 'adapters change the output');
    assert.equal(st.pinned, 0, 'no pin leaked');
    assert.ok(st.resident <= 8 && st.host.entries <= 64, JSON.stringify(st));
    assert.equal(engine(main).stats().slotsUsed, st.resident, 'engine slots == manager residents');
    assert.equal(mgr(main).slotsInUse, st.resident);
    t.diagnostic(`${N} requests (16 concurrent), ${distinct.length} distinct adapters: ${Math.round(ms)} ms, ` +
      `device hits ${st.hits} / loads ${st.engineLoads} / evictions ${st.evictions}; host hits ${st.host.hits} misses ${st.host.misses} evictions ${st.host.evictions}; slot waits ${st.slotWaits}`);
  });

  test('50 concurrent requests for one cold adapter: one disk read, one upload', async (t) => {
    const cold = names.find((n) => mgr(main).get(n)!.tier === 'disk')!;
    const before = mgr(main).stats();
    const rs = await Promise.all(Array.from({ length: 50 }, () => complete(main, cold)));
    const after = mgr(main).stats();
    assert.ok(rs.every((r) => r.status === 200));
    assert.equal(new Set(rs.map((r) => tokensOf(r.body))).size, 1);
    assert.equal(after.host.loads - before.host.loads, 1, 'one disk read (host fill)');
    assert.equal(after.engineLoads - before.engineLoads, 1, 'one upload');
    assert.equal(after.pinned, 0);
    t.diagnostic(`cold ${cold}: host loads +${after.host.loads - before.host.loads}, engine loads +${after.engineLoads - before.engineLoads}, device hits +${after.hits - before.hits}`);
  });

  test('/v1/models lists every adapter with parent and tier; counters in the base entry; metrics once', async () => {
    const res = await fetch(main.url + '/models');
    const body = (await res.json()) as any;
    const adapters = body.data.filter((m: any) => m.openlora?.kind === 'adapter');
    assert.equal(adapters.length, COUNT + 4);
    assert.ok(adapters.every((m: any) => m.parent === 'tiny-shakespeare' && ['disk', 'host', 'device'].includes(m.openlora.tier)));
    assert.equal(adapters.filter((m: any) => m.openlora.tier === 'device').length, mgr(main).stats().resident);
    const base = body.data.find((m: any) => m.id === 'tiny-shakespeare');
    assert.equal(base.openlora.adapter_stats.pinned, 0);
    const text = await client.register.metrics();
    for (const name of ['openlora_adapter_cache_hits_total', 'openlora_adapter_loads_total', 'openlora_adapter_evictions_total', 'openlora_adapter_load_seconds_bucket', 'openlora_adapter_pinned']) {
      assert.match(text, new RegExp(`^${name}\\{[^}]*model="tiny-shakespeare"`, 'm'), name);
    }
  });

  test('unload during generation: the running request finishes correctly, new ones 404, the slot returns', async () => {
    const a = names[names.length - 1]!;
    const alone = await complete(solo, a, 48);
    assert.equal(alone.status, 200);
    const res = await fetch(main.url + '/completions', {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: `tiny-shakespeare:${a}`, prompt: PROMPT, max_tokens: 48, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read(); // generation has started: the adapter is resident and pinned
    assert.ok(!first.done);
    const residentBefore = mgr(main).stats().resident;
    const un = await fetch(main.url + '/unload_lora_adapter', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ lora_name: a }) });
    assert.equal(un.status, 200);
    assert.equal(await un.text(), `Success: LoRA adapter '${a}' removed successfully.`);
    const late = await complete(main, a);
    assert.equal(late.status, 404);
    assert.equal(late.body.error.code, 'model_not_found');
    let sse = new TextDecoder().decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      sse += new TextDecoder().decode(value);
    }
    const text = sse.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)).choices[0]?.text ?? '').join('');
    assert.equal(text, alone.body.choices[0].text, 'the running request finished as if nothing happened');
    await new Promise((r) => setTimeout(r, 50));
    const st = mgr(main).stats();
    assert.equal(st.draining, 0);
    assert.equal(st.resident, residentBefore - 1, 'its slot was freed');
    assert.equal(engine(main).stats().slotsUsed, st.resident);
    const un2 = await postJson(main.url, '/unload_lora_adapter', { lora_name: a });
    assert.equal(un2.status, 404);
    assert.match(un2.body.error.message, /cannot be found/);
  });

  test('runtime load: success, duplicate 400, path confinement (.., outside, symlink escape), missing fields', async () => {
    await writeRandomAdapter(join(rt, 'fresh'), tinyInfo(), { rank: 8, modules: ['q_proj', 'v_proj'], dtype: 'BF16', seed: 99 });
    const ok = await fetch(main.url + '/load_lora_adapter', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ lora_name: 'fresh', lora_path: join(rt, 'fresh') }) });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "Success: LoRA adapter 'fresh' added successfully.");
    assert.equal((await complete(main, 'fresh')).status, 200);
    const dup = await postJson(main.url, '/load_lora_adapter', { lora_name: 'fresh', lora_path: join(rt, 'fresh') });
    assert.equal(dup.status, 400);
    assert.match(dup.body.error.message, /has already been loaded/);
    const outside = join(tmp, 'outside');
    await writeRandomAdapter(outside, tinyInfo(), { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 5 });
    await symlink(outside, join(rt, 'escape'));
    for (const [p, re] of [
      [outside, /outside the adapter roots/],
      [join(rt, 'escape'), /outside the adapter roots/],
      [`${rt}/../outside`, /"\.\." segments are not allowed/],
      ['relative/dir/x', /expected an absolute path, an http\(s\) URL or a hub id|not in the Hugging Face cache/],
      ['https://example.invalid/a', /URL sources are disabled/],
    ] as const) {
      const r = await postJson(main.url, '/load_lora_adapter', { lora_name: 'evil', lora_path: p });
      assert.ok(r.status === 400 || r.status === 404, `${p}: ${r.status}`);
      assert.match(r.body.error.message, re, p);
    }
    assert.equal(mgr(main).get('evil'), undefined);
    // A bad lora_name is the lora_name's 400 (not the path's; merge- names are the merge cache's); the base's own name is a 409 conflict.
    for (const [name, status, re] of [
      ['bad name', 400, /lora_name: invalid adapter name "bad name"/],
      ['a+b', 400, /lora_name: invalid adapter name "a\+b"/],
      ['x'.repeat(5000), 400, /lora_name: invalid adapter name \(5000 characters\): at most 128/],
      ['merge-bdc7d5386229e3fd', 400, /reserved for materialised merges/],
      ['tiny-shakespeare', 409, /the base model's own name/],
    ] as const) {
      const r = await postJson(main.url, '/load_lora_adapter', { lora_name: name, lora_path: join(rt, 'fresh') });
      assert.equal(r.status, status, name.slice(0, 20));
      assert.equal(r.body.error.param, 'lora_name', name.slice(0, 20));
      assert.match(r.body.error.message, re);
    }
    const typed = await postJson(main.url, '/load_lora_adapter', { lora_name: 123, lora_path: join(rt, 'fresh') });
    assert.equal(typed.status, 400);
    assert.equal(typed.body.error.param, 'lora_name');
    assert.match(typed.body.error.message, /'lora_name' must be a string, got number/);
    const missing = await postJson(main.url, '/load_lora_adapter', { lora_name: 'x' });
    assert.equal(missing.status, 400);
    assert.match(missing.body.error.message, /Both 'lora_name' and 'lora_path' must be provided/);
    // Not enabled on the other server.
    assert.equal((await postJson(solo.url, '/load_lora_adapter', { lora_name: 'x', lora_path: rt })).status, 404);
  });

  test('corrupt, truncated, oversized, wrong-shape and wrong-rank adapters are refused with a 4xx naming the problem; neighbours keep serving', async () => {
    const info = tinyInfo();
    const good = join(rt, 'good');
    await writeRandomAdapter(good, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 1 });
    const cfg = (r: number) => JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8, target_modules: ['q_proj'] });
    const bad: Record<string, [() => Promise<void>, RegExp]> = {
      corrupt: [async () => {
        await mkdir(join(rt, 'corrupt'), { recursive: true });
        await writeFile(join(rt, 'corrupt/adapter_config.json'), cfg(8));
        await writeFile(join(rt, 'corrupt/adapter_model.safetensors'), Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"not json"     ')]));
      }, /header is not valid JSON/],
      truncated: [async () => {
        await writeRandomAdapter(join(rt, 'truncated'), info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 2 });
        const { truncate } = await import('node:fs/promises');
        await truncate(join(rt, 'truncated/adapter_model.safetensors'), 4000);
      }, /truncated\?/],
      oversized: [async () => {
        await mkdir(join(rt, 'oversized'), { recursive: true });
        await writeFile(join(rt, 'oversized/adapter_config.json'), cfg(8));
        const b = Buffer.alloc(16);
        b.writeBigUInt64LE(1n << 40n, 0);
        await writeFile(join(rt, 'oversized/adapter_model.safetensors'), b);
      }, /exceeds the .*-byte limit/],
      'wrong-shape': [async () => {
        await writeRandomAdapter(join(rt, 'wrong-shape'), tinyInfo({ hiddenSize: 128, numAttentionHeads: 4, numKeyValueHeads: 2 }), { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 3 });
      }, /does not fit the base's q_proj .*wrong base model\?/],
      'wrong-rank': [async () => {
        await writeRandomAdapter(join(rt, 'wrong-rank'), info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 4 });
        await writeFile(join(rt, 'wrong-rank/adapter_config.json'), cfg(4));
      }, /rank 8 but adapter_config\.json gives 4/],
      'over-max-rank': [async () => {
        await writeRandomAdapter(join(rt, 'over-max-rank'), info, { rank: 128, modules: ['q_proj'], dtype: 'BF16', seed: 6 });
      }, /greater than the engine's max LoRA rank 64/],
    };
    await postJson(main.url, '/load_lora_adapter', { lora_name: 'good', lora_path: good });
    for (const [name, [make, re]] of Object.entries(bad)) {
      await make();
      const [r, neighbour] = await Promise.all([
        postJson(main.url, '/load_lora_adapter', { lora_name: name, lora_path: join(rt, name) }),
        complete(main, 'good'),
      ]);
      assert.ok(r.status >= 400 && r.status < 500, `${name}: ${r.status}`);
      assert.match(r.body.error.message, re, name);
      assert.equal(r.body.error.param, 'lora_path', `${name}: the files are the request's lora_path`);
      assert.equal(neighbour.status, 200, `neighbour while loading ${name}`);
      assert.equal(mgr(main).get(name), undefined, `${name} not registered`);
    }
    // A scanned adapter broken on disk after registration: the request gets a 400 naming the file.
    const victim = names[3]!;
    const { truncate } = await import('node:fs/promises');
    mgr(main).unregister(victim);
    await mgr(main).register(victim, join(gen, victim));
    await truncate(join(gen, victim, 'adapter_model.safetensors'), 100);
    const r = await complete(main, victim);
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, new RegExp(`${victim}/adapter_model\\.safetensors: .*`));
    assert.equal((await complete(main, 'good')).status, 200);
    assert.equal(mgr(main).stats().pinned, 0);
  });

  test('every slot pinned past slotWaitMs: 503 with Retry-After over HTTP', async () => {
    // NOTE(why): the slot is pinned through the manager (what a running request holds), not by
    // a long stream: the engine finishes 400 tokens well inside slotWaitMs on a fast machine.
    const [a, b] = [names[10]!, names[11]!];
    const lease = await mgr(solo).acquire(a);
    let body: any;
    let blocked: Response;
    try {
      blocked = await fetch(solo.url + '/completions', {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: `tiny-shakespeare:${b}`, prompt: PROMPT, max_tokens: 2, temperature: 0 }),
      });
      body = (await blocked.json()) as any;
    } finally {
      lease.release();
    }
    assert.equal(blocked.status, 503, JSON.stringify(body));
    assert.equal(blocked.headers.get('retry-after'), '1');
    assert.match(body.error.message, /all 1 adapter slots are in use/);
    assert.equal((await complete(solo, b)).status, 200, 'served once the slot is free');
    assert.equal(mgr(solo).stats().pinned, 0);
  });

  test('a folder copied into a scanned directory after start-up is served on the first request naming it', async () => {
    const src = names[1]!;
    const alone = await complete(main, src, 8);
    assert.equal(alone.status, 200);
    assert.equal((await complete(main, 'copied-later', 8)).status, 404, 'not there yet: 404');
    await cp(join(gen, src), join(gen, 'copied-later'), { recursive: true });
    const late = await complete(main, 'copied-later', 8);
    assert.equal(late.status, 200, JSON.stringify(late.body));
    assert.equal(tokensOf(late.body), tokensOf(alone.body), 'the copy answers as its source');
    await cp(join(gen, src), join(gen, 'copied-bare'), { recursive: true });
    const bare = await postJson(main.url, '/chat/completions', { model: 'copied-bare', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    assert.equal(bare.status, 200, JSON.stringify(bare.body));
    assert.equal(bare.body.model, 'copied-bare');
    await cp(join(gen, src), join(gen, 'copied-dora'), { recursive: true });
    const config = join(gen, 'copied-dora', 'adapter_config.json');
    await writeFile(config, JSON.stringify({ ...JSON.parse(await readFile(config, 'utf8')), use_dora: true }));
    const dora = await complete(main, 'copied-dora');
    assert.equal(dora.status, 400, 'a refused folder answers its reason, as at start-up');
    assert.match(dora.body.error.message, /DoRA/);
    // Caught half-copied (the config before the weights): refused, then served once the copy ends.
    await mkdir(join(gen, 'copied-slowly'));
    await cp(join(gen, src, 'adapter_config.json'), join(gen, 'copied-slowly', 'adapter_config.json'));
    const half = await complete(main, 'copied-slowly', 8);
    assert.equal(half.status, 400);
    assert.match(half.body.error.message, /adapter_model\.safetensors/);
    await cp(join(gen, src, 'adapter_model.safetensors'), join(gen, 'copied-slowly', 'adapter_model.safetensors'));
    const whole = await complete(main, 'copied-slowly', 8);
    assert.equal(whole.status, 200, JSON.stringify(whole.body));
    assert.equal(tokensOf(whole.body), tokensOf(alone.body));
  });

  test('runtime load: NaN / Inf weights and a non-finite scaling are a 400 naming the file and tensor or field; nothing is registered', async () => {
    const info = tinyInfo();
    const B0 = /adapter_model\.safetensors: tensor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.weight contains NaN or Inf/;
    const cases: Array<[string, Partial<GenOptions>, RegExp]> = [
      ['nan-f32', { dtype: 'F32', poison: Number.NaN }, B0],
      ['inf-bf16', { dtype: 'BF16', poison: Number.POSITIVE_INFINITY }, B0],
      ['huge-alpha', { dtype: 'F32', alpha: -1e308 }, /adapter_config\.json: lora_alpha: .*scaling .* is not a finite 32-bit float/],
    ];
    for (const [name, over, re] of cases) {
      const dir = join(rt, name);
      await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 21, ...over });
      const r = await postJson(main.url, '/load_lora_adapter', { lora_name: name, lora_path: dir });
      assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error.message, re, name);
      assert.ok(r.body.error.message.includes(dir), `${name}: the message names the folder`);
      assert.equal(r.body.error.param, 'lora_path', name);
      assert.equal(mgr(main).get(name), undefined, `${name} not registered`);
      const listed = ((await (await fetch(main.url + '/models')).json()) as any).data.map((m: any) => m.id);
      assert.ok(!listed.some((id: string) => id.endsWith(`:${name}`) || id === name), `${name} not listed`);
      assert.equal((await complete(main, name)).status, 404, `${name}: unknown afterwards`);
    }
  });

  test('20 concurrent runtime loads of one name: exactly one 200, the others the 400 adapter_exists a later load gets', async () => {
    const dir = join(rt, 'raced');
    await writeRandomAdapter(dir, tinyInfo(), { rank: 4, modules: ['v_proj'], dtype: 'F32', seed: 22 });
    const rs = await Promise.all(Array.from({ length: 20 }, () => postJson(main.url, '/load_lora_adapter', { lora_name: 'raced', lora_path: dir })));
    const later = await postJson(main.url, '/load_lora_adapter', { lora_name: 'raced', lora_path: dir });
    assert.equal(rs.filter((r) => r.status === 200).length, 1, JSON.stringify(rs.map((r) => r.status)));
    for (const r of [...rs.filter((x) => x.status !== 200), later]) {
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'adapter_exists');
      assert.equal(r.body.error.param, 'lora_name');
      assert.equal(r.body.error.message, "The lora adapter 'raced' has already been loaded.");
    }
    assert.equal((await complete(main, 'raced')).status, 200);
  });

  test('a symlinked folder in a scanned directory: outside every root refused (by name 400, rescan skips it), inside a root served', async () => {
    const outside = join(tmp, 'outside-scan');
    await writeRandomAdapter(outside, tinyInfo(), { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 23 });
    await symlink(outside, join(gen, 'late2'));
    const r = await complete(main, 'late2');
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(r.body.error.message, /late2: resolves to .*outside-scan, outside the adapter roots/);
    assert.equal(mgr(main).get('late2'), undefined);
    const rescan = await postJson(main.url, '/rescan_lora_adapters', {});
    assert.equal(rescan.status, 200);
    assert.ok(!rescan.body.added.includes('late2'));
    assert.equal(mgr(main).get('late2'), undefined, 'a rescan does not register it either');
    assert.equal((await complete(main, 'late2')).status, 400);
    // The same rule as the runtime load of that path.
    const load = await postJson(main.url, '/load_lora_adapter', { lora_name: 'late3', lora_path: join(gen, 'late2') });
    assert.equal(load.status, 400);
    assert.match(load.body.error.message, /outside the adapter roots/);
    // A symlink that stays inside a root is an adapter like any other.
    const src = names[2]!;
    await symlink(join(gen, src), join(gen, 'alias-inside'));
    const [alias, orig] = [await complete(main, 'alias-inside', 8), await complete(main, src, 8)];
    assert.equal(alias.status, 200, JSON.stringify(alias.body));
    assert.equal(tokensOf(alias.body), tokensOf(orig.body));
  });
});
