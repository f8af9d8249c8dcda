/**
 * Adapter loading checks without the native engine (adapters/runtime-load.ts, the host tier's
 * value check adapters/finite-weights.ts, the scan's root confinement in adapters/registry.ts):
 * runtime loads of one name run in turn; NaN / Inf weights and a scaling past float32 are refused
 * before the engine; a symlinked folder of a scanned directory is held to the adapter roots as a
 * runtime load's path is.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdapterError } from '../../adapters/errors.ts';
import { checkFiniteWeights, firstNonFinite } from '../../adapters/finite-weights.ts';
import { AdapterManager, type Logger } from '../../adapters/manager.ts';
import { writeRandomAdapter, type GenOptions } from './gen.ts';
import { ScriptedEngine, tinyInfo } from './helpers.ts';

let tmp: string;
let roots: string; // the runtime adapter root
let scanned: string; // a scanned adapter directory
let outside: string; // under no root
const info = tinyInfo();

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'openlora-runtime-load-'));
  [roots, scanned, outside] = [join(tmp, 'roots'), join(tmp, 'scanned'), join(tmp, 'outside')];
  await Promise.all([mkdir(roots), mkdir(scanned), mkdir(outside)]);
});
after(() => rm(tmp, { recursive: true, force: true }));

/** A manager over the fake engine; `warnings` collects log.warn lines. */
function setup() {
  const engine = new ScriptedEngine(() => [], { slots: 4, loadDelayMs: 1 });
  const warnings: string[] = [];
  const log: Logger = { info() {}, error() {}, warn: (obj, msg) => void warnings.push(`${msg} ${JSON.stringify(obj)}`) };
  const m = new AdapterManager({ engine: engine.asEngine(), baseName: 'tiny', modelInfo: info, log, adapterRoots: [roots] });
  return { engine, m, warnings };
}
const adapter = (dir: string, o: Partial<GenOptions> = {}) => writeRandomAdapter(dir, info, { rank: 4, modules: ['q_proj'], dtype: 'F32', seed: 1, ...o });
const code = (c: string, re?: RegExp) => (e: unknown) => e instanceof AdapterError && e.code === c && (!re || re.test(e.message));

describe('runtime loads of one name', () => {
  test('20 concurrent loads: exactly one succeeds, the others and a later one are adapter_exists', async () => {
    const dir = join(roots, 'many');
    await adapter(dir);
    const { m } = setup();
    const rs = await Promise.allSettled(Array.from({ length: 20 }, () => m.loadRuntime('many', dir)));
    assert.equal(rs.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of rs) if (r.status === 'rejected') assert.ok(code('adapter_exists', /^The lora adapter 'many' has already been loaded\.$/)(r.reason), String(r.reason));
    await assert.rejects(m.loadRuntime('many', dir), code('adapter_exists'));
    assert.equal(m.get('many')!.tier, 'host', 'filled at load');
  });

  test('run in turn: a load that fails leaves the name to the next one, whose adapter it never unregisters', async () => {
    const bad = join(roots, 'bad-rank');
    await adapter(bad, { rank: 8 });
    await writeFile(join(bad, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['q_proj'] }));
    const good = join(roots, 'good');
    await adapter(good, { seed: 2 });
    const { m } = setup();
    // The bad files pass registration (the config is fine) and fail at the host-tier fill.
    const [first, second] = await Promise.allSettled([m.loadRuntime('turn', bad), m.loadRuntime('turn', good)]);
    assert.ok(first.status === 'rejected' && code('invalid_adapter', /rank 8 but adapter_config\.json gives 4/)(first.reason), String((first as PromiseRejectedResult).reason));
    assert.equal((first as PromiseRejectedResult).reason.param, 'lora_path');
    assert.equal(second.status, 'fulfilled', String((second as PromiseRejectedResult).reason));
    assert.equal(m.get('turn')?.dir, good, 'the second load kept its adapter');
  });
});

describe('adapter values', () => {
  test('firstNonFinite: exponent all ones in F32, F16 and BF16, at any byte offset', () => {
    const f32 = new Uint8Array(new Float32Array([1, -2, Number.NEGATIVE_INFINITY]).buffer);
    assert.equal(firstNonFinite(f32, 'F32'), 2);
    const odd = new Uint8Array(13);
    odd.set(f32, 1);
    assert.equal(firstNonFinite(odd.subarray(1), 'F32'), 2, 'unaligned');
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x3c00, 0x7bff, 0xfe00]).buffer), 'F16'), 2);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x3f80, 0x7f7f]).buffer), 'BF16'), -1);
    assert.equal(firstNonFinite(new Uint8Array(new Uint16Array([0x3f80, 0xff81]).buffer), 'BF16'), 1);
  });

  test('checkFiniteWeights: a tensor scanned in pieces names the element past the first piece', async () => {
    const n = 3 << 20;  // 12 MB of F32: three pieces of 4 MB
    const values = new Float32Array(n + 4);
    values[n + 1] = Number.NaN;  // tensor B's element n - 1 (A is the first 8 bytes)
    const file = new Uint8Array(values.buffer);
    const header = {
      tensors: new Map([['a', { dtype: 'F32', shape: [2], begin: 0, end: 8 }], ['b', { dtype: 'F32', shape: [n], begin: 8, end: 8 + 4 * n }]]),
      metadata: {},
      dataStart: 0,
    };
    const spec = { path: 'x.safetensors', modules: [{ layer: 0, module: 'q_proj', aName: 'a', bName: 'b', scaling: 1 }] } as any;
    await assert.rejects(checkFiniteWeights(spec, header, file), new RegExp(`x\\.safetensors: tensor b contains NaN or Inf \\(element ${n - 1}\\)`));
    values[n + 1] = 0;
    await checkFiniteWeights(spec, header, file);
  });

  test('NaN / Inf weights of a scanned adapter: refused at first use naming file and tensor, before the engine', async () => {
    const dir = join(tmp, 'scan-values');
    await adapter(join(dir, 'nan'), { poison: Number.NaN });
    await adapter(join(dir, 'inf16'), { dtype: 'BF16', poison: Number.NEGATIVE_INFINITY });
    const { m, engine } = setup();
    // Registration reads the config only; the tensors are read when a request first needs them.
    assert.deepEqual((await m.scanDirectory(dir)).registered.map((a) => a.name), ['inf16', 'nan']);
    for (const name of ['nan', 'inf16']) {
      await assert.rejects(m.acquire(name), code('invalid_adapter', new RegExp(
        `${name}/adapter_model\\.safetensors: tensor base_model\\.model\\.model\\.layers\\.0\\.self_attn\\.q_proj\\.lora_B\\.weight contains NaN or Inf \\(element 0\\)`)));
    }
    assert.equal(engine.loads.length, 0, 'no slot reserved, no upload tried');
    assert.equal(m.stats().pinned, 0);
  });

  test('a scaling past float32 (lora_alpha -1e308, an alpha_pattern of 2e39) is refused at registration naming the field', async () => {
    const dir = join(tmp, 'scan-scaling');
    await adapter(join(dir, 'alpha'), { alpha: -1e308 });
    await adapter(join(dir, 'pattern'), { alphaPattern: { q_proj: 2e39 } });
    await adapter(join(dir, 'large-ok'), { alpha: 1e30 });
    const { m } = setup();
    const res = await m.scanDirectory(dir);
    assert.deepEqual(res.registered.map((a) => a.name), ['large-ok']);
    const why = Object.fromEntries(res.skipped.map((s) => [s.name, s.reason]));
    assert.match(why.alpha!, /alpha\/adapter_config\.json: lora_alpha: alpha -1e\+308 \/ r 4 gives scaling -2\.5e\+307 .*not a finite 32-bit float/);
    assert.match(why.pattern!, /adapter_config\.json: alpha_pattern "q_proj": alpha 2e\+39 \/ r 4 .*not a finite 32-bit float/);
    assert.match(m.refusal('alpha')!.message, /adapter alpha of tiny was not loaded: .*lora_alpha/);
    const loadDir = join(roots, 'alpha-rt');
    await adapter(loadDir, { alpha: -1e308 });
    await assert.rejects(m.loadRuntime('alpha-rt', loadDir), (e: unknown) => code('invalid_adapter', /lora_alpha/)(e) && (e as AdapterError).param === 'lora_path');
    assert.equal(m.get('alpha-rt'), undefined);
  });
});

describe('symlinked folders in a scanned directory', () => {
  test('outside every root: skipped with a warning naming it, refused by name and at rescan; inside a root: registered', async () => {
    await adapter(join(outside, 'ow'), { seed: 3 });
    await adapter(join(scanned, 'real'), { seed: 4 });
    await adapter(join(roots, 'in-root'), { seed: 5 });
    await symlink(join(outside, 'ow'), join(scanned, 'late'));
    await symlink(join(scanned, 'real'), join(scanned, 'alias'));
    await symlink(join(roots, 'in-root'), join(scanned, 'to-root'));
    const { m, warnings } = setup();
    const res = await m.scanDirectory(scanned);
    assert.deepEqual(res.registered.map((a) => a.name), ['alias', 'real', 'to-root']);
    assert.deepEqual(res.skipped.map((s) => s.name), ['late']);
    const outsideRe = new RegExp(`scanned/late: resolves to .*outside/ow, outside the adapter roots`);
    assert.match(res.skipped[0]!.reason, outsideRe);
    assert.equal(warnings.filter((w) => /adapter skipped/.test(w) && w.includes(join(scanned, 'late'))).length, 1, 'one warning naming it');
    assert.equal(m.get('alias')!.dir, join(scanned, 'real'), 'registered from its real path');
    assert.match(m.refusal('late')!.message, outsideRe);
    await assert.rejects(m.acquire('late'), code('model_not_found'));
    // Copied in later (found by name on a request): the same rule.
    await symlink(join(outside, 'ow'), join(scanned, 'late2'));
    assert.equal(await m.discover('late2'), true, 'found, and refused');
    assert.equal(m.get('late2'), undefined);
    assert.match(m.refusal('late2')!.message, /late2: resolves to .*outside\/ow, outside the adapter roots/);
    const again = await m.rescan();
    assert.deepEqual(again.added, []);
    assert.equal(m.get('late'), undefined);
    // Removing the link unregisters the adapter found through it, though its target remains.
    await unlink(join(scanned, 'alias'));
    assert.deepEqual((await m.rescan()).removed, ['alias']);
    assert.ok(m.get('real'));
  });
});
