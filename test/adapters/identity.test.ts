/**
 * Issue 11 item 2: every artefact derived from an adapter's weights follows the bytes on disk,
 * never the name or path alone: materialised merges after an unload + load of other weights under
 * the same name and path, and host-tier load specs and merges after the files change on disk
 * between evictions. (The engine's prefix cache keys KV blocks by load generation:
 * test/native/paging.test.ts.) Files replaced while a load reads them give the adapter's 400,
 * never a raw error (a 500). A resident adapter follows its files too: the next request after a
 * rewrite runs the new version while running requests finish on the old one, and new files that
 * cannot be loaded leave the resident version serving.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Composition } from '../../adapters/composition.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { AdapterManager } from '../../adapters/manager.ts';
import { readAdapterTensors, type LoraPair } from '../../adapters/merge/tensors.ts';
import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { writeRandomAdapter } from './gen.ts';
import { ScriptedEngine, tinyInfo } from './helpers.ts';

const info = tinyInfo({ maxLoras: 1 });
let tmp: string;
before(async () => void (tmp = await mkdtemp(join(tmpdir(), 'openlora-identity-'))));
after(() => rm(tmp, { recursive: true, force: true }));

async function pairs(dir: string): Promise<Map<string, LoraPair>> {
  const parsed = await parseAdapterDir(dir, info);
  return readAdapterTensors(parsed, await buildLoadSpec(parsed, info));
}

/** Linear merge of one adapter at weight w: A' = sqrt(w s) A (PEFT), checked on one module. */
async function assertMergeOf(mergedDir: string, sourceDir: string, w: number): Promise<void> {
  const [got, src] = [await pairs(mergedDir), await pairs(sourceDir)];
  const [name, p] = [...src][0]!;
  const q = got.get(name)!;
  const c = Math.sqrt(w * p.scaling);
  for (let k = 0; k < 16; k++) assert.ok(Math.abs(q.A[k]! - c * p.A[k]!) < 1e-5, `${name} A[${k}]: ${q.A[k]} vs ${c * p.A[k]!}`);
}

const linear = (name: string, weight: number): Composition => ({ members: [{ name, weight }], merge: { strategy: 'linear' } as Composition['merge'] });

function manager(over: { maxCpuLoras?: number; slots?: number } = {}) {
  const slots = over.slots ?? 1;
  const engine = new ScriptedEngine(() => [], { slots, loadDelayMs: 1 });
  const m = new AdapterManager({
    engine: engine.asEngine(), baseName: 'tiny', modelInfo: slots === 1 ? info : tinyInfo({ maxLoras: slots }), mergeDir: join(tmp, 'merges'), slotWaitMs: 2000,
    maxCpuLoras: over.maxCpuLoras,
  });
  return { engine, m };
}

test('unload, then load other weights under the same name and path: the materialised merge follows', async () => {
  const dir = join(tmp, 'same-path');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj', 'v_proj'], dtype: 'F32', seed: 1 });
  const { m } = manager();
  await m.register('a', dir);
  const first = await m.acquireMerged(linear('a', 0.5));
  const firstDir = m.get(first.name)!.dir;
  first.release();
  await assertMergeOf(firstDir, dir, 0.5);

  m.unregister('a');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj', 'v_proj'], dtype: 'F32', seed: 2 });
  await m.register('a', dir);
  const second = await m.acquireMerged(linear('a', 0.5));
  const secondDir = m.get(second.name)!.dir;
  second.release();
  assert.notEqual(second.name, first.name, 'a new content identity names a new merge');
  await assertMergeOf(secondDir, dir, 0.5);
});

test('files rewritten on disk between evictions: the load spec and the merge follow the new bytes', async () => {
  const dir = join(tmp, 'rewritten');
  const other = join(tmp, 'other');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 3, alpha: 8 });
  await writeRandomAdapter(other, info, { rank: 2, modules: ['v_proj'], dtype: 'F32', seed: 4 });
  for (const maxCpuLoras of [1, 64]) {
    // maxCpuLoras 1: evicted from the host tier too; 64: still in the host tier with a stale spec
    const { m, engine } = manager({ maxCpuLoras });
    await m.register('a', dir);
    await m.register('b', other);
    (await m.acquire('a')).release();
    assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 2, 'alpha 8 / r 4');
    const merged = await m.acquireMerged(linear('a', 1));
    merged.release();
    (await m.acquire('b')).release(); // evicts a (and the merge) from the only slot

    await writeRandomAdapter(dir, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 5, alpha: 4 });
    (await m.acquire('a')).release();
    assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 0.5, `maxCpuLoras ${maxCpuLoras}: the new config (alpha 4 / r 8) is loaded`);
    const again = await m.acquireMerged(linear('a', 1));
    again.release();
    assert.notEqual(again.name, merged.name, `maxCpuLoras ${maxCpuLoras}: a new merge for the new bytes`);
    await assertMergeOf(m.get(again.name)!.dir, dir, 1);
    await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 3, alpha: 8 });
  }
});

test('files replaced on disk (rm + cp) while a load reads them: each acquire succeeds or gets the adapter 400, never a raw error', async () => {
  const dir = join(tmp, 'replaced');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj', 'v_proj'], dtype: 'F32', seed: 3 });
  const good = join(tmp, 'replaced-copy.safetensors');
  await cp(join(dir, 'adapter_model.safetensors'), good);
  const { m } = manager({ maxCpuLoras: 1 });
  await m.register('a', dir);
  await writeRandomAdapter(join(tmp, 'other'), info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 4 });
  await m.register('b', join(tmp, 'other'));
  // Another process replaces the weights file in a loop, as an operator's `rm` then `cp` would.
  const loop = spawn('bash', ['-c', `end=$((SECONDS+3)); while [ $SECONDS -lt $end ]; do rm -f '${dir}/adapter_model.safetensors'; cp '${good}' '${dir}/adapter_model.safetensors'; done`], { stdio: 'ignore' });
  let running = true;
  loop.on('exit', () => (running = false));
  after(() => void loop.kill());
  let ok = 0;
  let refused = 0;
  while (running) {
    for (const name of ['a', 'b']) {  // b evicts a from the one host-tier entry: a is read again each time
      try {
        (await m.acquire(name)).release();
        ok++;
      } catch (err) {
        assert.ok(err instanceof AdapterError, `a raw error escaped: ${String(err)}`);
        assert.equal(err.code, 'invalid_adapter');
        assert.match(err.message, /replaced|adapter_model\.safetensors|adapter_config\.json|kept changing/);
        refused++;
      }
    }
  }
  assert.ok(ok > 0, `some loads succeeded (${ok} ok, ${refused} refused)`);
});

test('a resident adapter rewritten on disk: the next request loads the new version, a running one finishes on the old', async () => {
  const dir = join(tmp, 'resident-rewritten');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 6, alpha: 8 });
  const { m, engine } = manager({ slots: 2 });
  await m.register('a', dir);
  const running = await m.acquire('a');
  assert.equal(engine.loads.length, 1);

  await writeRandomAdapter(dir, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 7, alpha: 4 });
  const next = await m.acquire('a');
  assert.equal(engine.loads.length, 2, 'the new files are uploaded');
  assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 0.5, 'the new config (alpha 4 / r 8)');
  assert.notEqual(next.slot, running.slot, 'the new version has its own slot');
  assert.deepEqual(engine.unloads, [], 'the running request keeps the old version');
  assert.equal(m.stats().draining, 1);
  const again = await m.acquire('a');
  assert.equal(again.slot, next.slot, 'unchanged files: the resident new version, no upload');
  assert.equal(engine.loads.length, 2);

  running.release();
  assert.deepEqual(engine.unloads, [running.slot], 'the old version is unloaded when its last request ends');
  assert.equal(m.stats().draining, 0);
  assert.equal(m.stats().resident, 1);
  next.release();
  again.release();

  // Rewritten while nothing runs: the old version goes at once.
  await writeRandomAdapter(dir, info, { rank: 2, modules: ['q_proj'], dtype: 'F32', seed: 8, alpha: 2 });
  const third = await m.acquire('a');
  assert.equal(engine.loads.length, 3);
  assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 1, 'alpha 2 / r 2');
  assert.deepEqual(engine.unloads, [running.slot, next.slot]);
  assert.equal(m.stats().resident, 1);
  third.release();
});

test('a resident adapter whose new files are invalid or missing keeps serving until valid files arrive', async () => {
  const dir = join(tmp, 'resident-broken');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 9, alpha: 8 });
  const { m, engine } = manager({ slots: 2 });
  await m.register('a', dir);
  const first = await m.acquire('a');
  first.release();

  await writeFile(join(dir, 'adapter_model.safetensors'), Buffer.from('not a safetensors file'));
  for (let i = 0; i < 2; i++) {
    const l = await m.acquire('a');
    assert.equal(l.slot, first.slot, 'the resident version serves');
    l.release();
  }
  await rm(join(dir, 'adapter_model.safetensors'));
  (await m.acquire('a')).release();
  assert.equal(engine.loads.length, 1, 'no upload of invalid or missing files');
  assert.deepEqual(engine.unloads, []);

  await writeRandomAdapter(dir, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 10, alpha: 4 });
  const fixed = await m.acquire('a');
  assert.equal(engine.loads.length, 2, 'valid files again: the new version is loaded');
  assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 0.5);
  fixed.release();
});

/** Adapters `a` (q_proj, alpha 8 / r 4) and `b` (v_proj) in folders `<prefix>-a`, `<prefix>-b`, registered with a 3-slot manager. */
async function composition(prefix: string, seed: number) {
  const [da, db] = [join(tmp, `${prefix}-a`), join(tmp, `${prefix}-b`)];
  await writeRandomAdapter(da, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed, alpha: 8 });
  await writeRandomAdapter(db, info, { rank: 4, modules: ['v_proj'], dtype: 'F32', seed: seed + 1, alpha: 4 });
  const { m, engine } = manager({ slots: 3 });
  await m.register('a', da);
  await m.register('b', db);
  return { m, engine, da };
}

test('a composition whose member was rewritten on disk pins the new version', async () => {
  const { m, engine, da } = await composition('comp', 11);
  const old = await m.acquireAll(['a', 'b']);
  assert.equal(engine.loads.length, 2);
  await writeRandomAdapter(da, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 13, alpha: 4 });
  const leases = await m.acquireAll(['a', 'b']);
  assert.equal(engine.loads.length, 3, 'only the rewritten member is uploaded');
  assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 0.5);
  assert.notEqual(leases[0]!.slot, old[0]!.slot);
  assert.equal(leases[1]!.slot, old[1]!.slot);
  for (const l of old) l.release();
  assert.deepEqual(engine.unloads, [old[0]!.slot]);
  for (const l of leases) l.release();
});

test('a rewritten adapter whose new weights the engine refuses keeps its resident version serving', async () => {
  const dir = join(tmp, 'resident-refused');
  await writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 14, alpha: 8 });
  const { m, engine } = manager({ slots: 2 });
  await m.register('a', dir);
  const first = await m.acquire('a');
  first.release();

  // Valid for the host tier, refused by the engine at upload (its own checks, a device failure).
  await writeRandomAdapter(dir, info, { rank: 8, modules: ['q_proj'], dtype: 'F32', seed: 15, alpha: 4 });
  engine.failNext = 1;
  const served = await m.acquire('a');
  assert.equal(served.slot, first.slot, 'the resident version serves the request');
  assert.equal(engine.loads.length, 2, 'the new version was tried once');
  assert.deepEqual(engine.unloads, [], 'the resident version was not unloaded');
  served.release();
  (await m.acquire('a')).release();
  assert.equal(engine.loads.length, 2, 'refused files are not tried again until they change');

  // An engine failure that is not the files' fault: the old version is put back and the load tried once more.
  await writeRandomAdapter(dir, info, { rank: 2, modules: ['q_proj'], dtype: 'F32', seed: 16, alpha: 2 });
  engine.failNext = 1;
  engine.failCode = undefined;
  const again = await m.acquire('a');
  engine.failCode = 'bad_file';
  assert.equal(engine.loads.length, 4, 'one failed try, one that loaded');
  assert.equal(engine.loads.at(-1)!.modules[0]!.scaling, 1, 'alpha 2 / r 2');
  assert.notEqual(again.slot, first.slot);
  assert.deepEqual(engine.unloads, [first.slot], 'the old version goes once the new one is loaded');
  assert.equal(m.stats().resident, 1);
  assert.equal(m.stats().draining, 0);
  again.release();
});

test('a composition whose resident member was rewritten with invalid files still runs on the resident version', async () => {
  const { m, engine, da } = await composition('comp-bad', 17);
  const first = await m.acquireAll(['a', 'b']);
  for (const l of first) l.release();
  await writeFile(join(da, 'adapter_config.json'), '{bad');
  const again = await m.acquireAll(['a', 'b']);
  assert.deepEqual(again.map((l) => l.slot), first.map((l) => l.slot), 'the resident versions serve');
  assert.equal(engine.loads.length, 2);
  for (const l of again) l.release();
});
