/**
 * Adapter sources against a local hub on loopback (never the internet): folder URLs with
 * sha256, size and time limits, atomic writes into the disk cache, the hub `resolve` layout,
 * the offline Hugging Face cache layout, the disk LRU, and runtime path confinement.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdapterManager } from '../../adapters/manager.ts';
import { AdapterSources, confinePath, parseHubId } from '../../adapters/sources.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { writeRandomAdapter } from './gen.ts';
import { ScriptedEngine, tinyInfo } from './helpers.ts';

let tmp: string;
let server: Server;
let hub: string;
const files = new Map<string, Buffer>(); // url path -> body
const hits: string[] = [];
let slowMs = 0;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'openlora-sources-'));
  const src = join(tmp, 'src');
  await writeRandomAdapter(src, tinyInfo(), { rank: 8, modules: ['q_proj', 'v_proj'], dtype: 'F32', seed: 3 });
  const cfg = await readFile(join(src, 'adapter_config.json'));
  const w = await readFile(join(src, 'adapter_model.safetensors'));
  for (const p of ['/plain/', '/org/style/resolve/main/', '/org/style/resolve/v1/', '/slow/']) {
    files.set(p + 'adapter_config.json', cfg);
    files.set(p + 'adapter_model.safetensors', w);
  }
  server = createServer((req, res) => {
    hits.push(req.url!);
    const body = files.get(req.url!);
    if (!body) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-length': body.length });
    if (req.url!.startsWith('/slow/') && slowMs) setTimeout(() => res.end(body), slowMs);
    else res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await rm(tmp, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function manager(over: Partial<ConstructorParameters<typeof AdapterSources>[0]> = {}) {
  const sources = new AdapterSources({ cacheDir: join(tmp, `cache-${Math.random().toString(36).slice(2)}`), hubEndpoint: hub, hfCacheDir: join(tmp, 'hf'), ...over });
  const engine = new ScriptedEngine(() => [], { slots: 4, loadDelayMs: 1 });
  return { sources, engine, m: new AdapterManager({ engine: engine.asEngine(), baseName: 'tiny', modelInfo: tinyInfo(), sources, allowUrls: true, adapterRoots: [join(tmp, 'roots')] }) };
}

describe('sources', () => {
  test('URL folder: downloaded once into the cache, sha256 checked, then served from disk', async () => {
    const { m, sources } = manager();
    const w = files.get('/plain/adapter_model.safetensors')!;
    const info = await m.registerSource('u', { kind: 'url', url: `${hub}/plain/`, sha256: sha(w) });
    assert.equal(info.source, 'url');
    assert.equal(info.root, `${hub}/plain/`);
    assert.equal(sources.stats().downloads, 1);
    (await m.acquire('u')).release();
    assert.equal(sources.stats().downloads, 1, 'the acquire used the disk cache');
    const names = await readdir(sources.cacheDir);
    assert.equal(names.filter((n) => n.startsWith('.tmp-')).length, 0);
    assert.equal(m.get('u')!.tier, 'device');
  });

  test('sha256 mismatch, 404, size limit and time-out are refused naming the URL; nothing is left in the cache', async () => {
    const cases: Array<[ReturnType<typeof manager>, string, string | undefined, RegExp, string]> = [
      [manager(), `${hub}/plain/`, '0'.repeat(64), /sha256 mismatch/, 'adapter_checksum_mismatch'],
      [manager(), `${hub}/absent/`, undefined, /not found \(HTTP 404\)/, 'adapter_not_found'],
      [manager({ maxDownloadBytes: 1000 }), `${hub}/plain/`, undefined, /exceeds the download limit of 1000 bytes/, 'adapter_too_large'],
      [manager({ downloadTimeoutMs: 100 }), `${hub}/slow/`, undefined, /timed out after 100 ms/, 'adapter_download_timeout'],
    ];
    slowMs = 400;
    for (const [{ m, sources }, url, sum, re, code] of cases) {
      await assert.rejects(m.registerSource('x', { kind: 'url', url, sha256: sum }), (e: unknown) => e instanceof AdapterError && re.test(e.message) && e.message.includes(url.replace(/\/$/, '')) && e.code === code);
      assert.deepEqual(await readdir(sources.cacheDir), [], `${url}: no file (not even a temp) is left`);
      assert.equal(m.get('x'), undefined);
    }
    slowMs = 0;
  });

  test('a crash leftover (.tmp-*) is never trusted and is swept at start; a complete folder is reused', async () => {
    const { m, sources } = manager();
    await m.registerSource('u', { kind: 'url', url: `${hub}/plain/` });
    const key = sources.keyOf({ kind: 'url', url: `${hub}/plain/` });
    await mkdir(join(sources.cacheDir, `.tmp-${key}-dead`), { recursive: true });
    await writeFile(join(sources.cacheDir, `.tmp-${key}-dead`, 'adapter_model.safetensors'), 'half');
    const again = new AdapterSources({ cacheDir: sources.cacheDir, hubEndpoint: hub });
    const before = hits.length;
    assert.equal(await again.ensureLocal({ kind: 'url', url: `${hub}/plain/` }), join(sources.cacheDir, key));
    assert.equal(hits.length, before, 'reused without a download');
    assert.deepEqual((await readdir(sources.cacheDir)).filter((n) => n.startsWith('.tmp-')), []);
  });

  test('hub ids use the resolve layout {endpoint}/{org}/{name}/resolve/{rev}/{file}', async () => {
    assert.deepEqual(parseHubId('org/style@v1'), { repo: 'org/style', revision: 'v1' });
    assert.deepEqual(parseHubId('org/style'), { repo: 'org/style', revision: 'main' });
    assert.equal(parseHubId('../etc'), undefined);
    const { m } = manager();
    const before = hits.length;
    await m.registerSource('h', { kind: 'hub', repo: 'org/style', revision: 'v1' });
    assert.deepEqual(hits.slice(before), ['/org/style/resolve/v1/adapter_config.json', '/org/style/resolve/v1/adapter_model.safetensors']);
    (await m.acquire('h')).release();
  });

  test('hub ids are found offline in a Hugging Face cache (refs/REV -> snapshots/COMMIT)', async () => {
    const hf = join(tmp, 'hf');
    const snap = join(hf, 'models--off--line', 'snapshots', 'abc123');
    await writeRandomAdapter(snap, tinyInfo(), { rank: 4, modules: ['o_proj'], dtype: 'BF16', seed: 9 });
    await mkdir(join(hf, 'models--off--line', 'refs'), { recursive: true });
    await writeFile(join(hf, 'models--off--line', 'refs', 'main'), 'abc123\n');
    const { m, sources } = manager({ hubEndpoint: undefined });
    const before = hits.length;
    const info = await m.loadRuntime('off', 'off/line');
    assert.equal(info.dir, snap);
    assert.equal(hits.length, before, 'no network');
    assert.equal(sources.stats().downloads, 0);
    await assert.rejects(m.loadRuntime('gone', 'off/absent@main'), /not in the Hugging Face cache .* no hub endpoint is configured/);
  });

  test('the disk tier is an LRU bounded in bytes; an evicted adapter is downloaded again on use', async () => {
    const w = files.get('/plain/adapter_model.safetensors')!;
    const { m, sources } = manager({ maxDiskBytes: w.length + 500 });
    await m.registerSource('p', { kind: 'url', url: `${hub}/plain/` });
    await m.registerSource('h', { kind: 'hub', repo: 'org/style', revision: 'main' });
    assert.equal(sources.stats().evictions, 1);
    assert.equal(m.get('p')!.tier, 'remote');
    (await m.acquire('p')).release();
    assert.equal(sources.stats().downloads, 3);
    assert.equal(m.get('p')!.tier, 'device');
  });

  test('confinePath: inside ok; .., relative, outside and symlink escapes refused', async () => {
    const roots = join(tmp, 'roots');
    await mkdir(join(roots, 'in'), { recursive: true });
    await mkdir(join(tmp, 'out'), { recursive: true });
    await symlink(join(tmp, 'out'), join(roots, 'link'));
    assert.ok((await confinePath(join(roots, 'in'), [roots])).endsWith('/roots/in'));
    for (const [p, re] of [
      [`${roots}/../out`, /"\.\." segments/], ['in', /must be an absolute path/],
      [join(tmp, 'out'), /outside the adapter roots/], [join(roots, 'link'), /outside the adapter roots/],
      [join(roots, 'nope'), /cannot be read \(ENOENT\)/],
    ] as const) {
      await assert.rejects(confinePath(p, [roots]), re, p);
    }
    await assert.rejects(confinePath(join(roots, 'in'), []), /no adapter roots are configured/);
  });
});
