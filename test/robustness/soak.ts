/**
 * `npm run soak`: the long robustness run on loopback, bounded in time (SOAK_MAX_SECONDS,
 * default 1500). Prints one JSON report (and writes it to SOAK_OUT when set).
 *
 * Phases: hostile bodies (SOAK_HOSTILE, default 3000); TS parser fuzz (5000 safetensors files,
 * 50000 configs); the native safetensors reader through engine.loadAdapter / loadModel on
 * mutated files (SOAK_ASAN=1 also builds test/robustness/st_fuzz.cc with -fsanitize=address
 * and runs it over the same mutations); a disconnect storm of 500 streams (30% cut) with RSS
 * before/after; and SOAK_REQUESTS (default 20000) requests over 200 generated adapters with the
 * RSS slope.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { defaultConfigInput, REPO_ROOT } from '../../config/load.ts';
import { Engine } from '../../native/engine.ts';
import { startDemo } from '../e2e/server.ts';
import { rng, writeRandomAdapters } from './gen-adapters.ts';
import { hostileCases, sendHostile } from './hostile.ts';
import { fuzzAdapterConfig, fuzzSafetensorsHeader, mutateBytes } from './parsers.ts';
import { storm, waitIdle } from './storm.ts';

const env = (k: string, d: number) => (process.env[k] ? Number(process.env[k]) : d);
const deadline = Date.now() + env('SOAK_MAX_SECONDS', 1500) * 1000;
const report: Record<string, unknown> = {};
const mb = () => Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10;
const log = (phase: string, v: unknown) => {
  report[phase] = v;
  process.stderr.write(`[soak] ${phase}: ${JSON.stringify(v)}\n`);
};
const tmp = mkdtempSync(join(tmpdir(), 'openlora-soak-'));

// --- TS parser fuzz -------------------------------------------------------------------------
{
  const t0 = Date.now();
  const st = await fuzzSafetensorsHeader(env('SOAK_ST_CASES', 5000), 101, tmp);
  const cfg = fuzzAdapterConfig(env('SOAK_CFG_CASES', 50_000), 102);
  log('tsParsers', { safetensors: { ...st, failures: st.failures.slice(0, 5) }, config: { ...cfg, failures: cfg.failures.slice(0, 5) }, seconds: (Date.now() - t0) / 1000 });
}

// --- native reader fuzz (loadAdapter, loadModel) --------------------------------------------
{
  const t0 = Date.now();
  const modelDir = join(REPO_ROOT, 'examples/models/tiny-shakespeare');
  const engine = await Engine.load(modelDir, { backend: 'cpu', threads: 2, maxLoras: 2, maxLoraRank: 64 });
  const adapterDir = join(REPO_ROOT, 'examples/adapters/shout');
  const parsed = await parseAdapterDir(adapterDir, engine.info());
  const spec = await buildLoadSpec(parsed, engine.info());
  const src = readFileSync(parsed.weightsPath);
  const r = rng(103);
  const files: string[] = [];
  let loaded = 0;
  let refused = 0;
  const other: string[] = [];
  for (let i = 0; i < env('SOAK_NATIVE_ADAPTER_CASES', 400) && Date.now() < deadline; i++) {
    const f = join(tmp, `m${i % 50}.safetensors`);
    writeFileSync(f, mutateBytes(r, src));
    if (i < 50) files.push(f);
    try {
      const slot = await engine.loadAdapter({ ...spec, path: f });
      engine.unloadAdapter(slot);
      loaded++;
    } catch (err) {
      if (err instanceof Error) refused++;
      else other.push(String(err));
    }
  }
  // loadModel on mutated model files (header region only is mutated; the file is copied each time).
  const mdir = join(tmp, 'model');
  mkdirSync(mdir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(modelDir, f), join(mdir, f));
  const msrc = readFileSync(join(modelDir, 'model.safetensors'));
  let mLoaded = 0;
  let mRefused = 0;
  for (let i = 0; i < env('SOAK_NATIVE_MODEL_CASES', 40) && Date.now() < deadline; i++) {
    writeFileSync(join(mdir, 'model.safetensors'), mutateBytes(r, msrc));
    try {
      const e = await Engine.load(mdir, { backend: 'cpu', threads: 1, maxLoras: 1, maxLoraRank: 8 });
      await e.dispose();
      mLoaded++;
    } catch {
      mRefused++;
    }
  }
  await engine.dispose();
  let asan: unknown = 'skipped (set SOAK_ASAN=1)';
  if (process.env.SOAK_ASAN === '1') {
    const bin = join(tmp, 'st_fuzz');
    const srcs = ['safetensors.cc', 'json.cc', 'dtype.cc'].map((s) => join(REPO_ROOT, 'native/src', s));
    execFileSync('g++', ['-std=c++17', '-g', '-O1', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', `-I${join(REPO_ROOT, 'native/src')}`, join(REPO_ROOT, 'test/robustness/st_fuzz.cc'), ...srcs, '-o', bin]);
    const asanFiles: string[] = [];
    for (let i = 0; i < env('SOAK_ASAN_CASES', 2000); i++) {
      const f = join(tmp, `a${i % 200}.safetensors`);
      writeFileSync(f, mutateBytes(r, src));
      asanFiles.push(f);
      if (asanFiles.length === 200) {
        const out = execFileSync(bin, asanFiles, { encoding: 'utf8' }); // throws (non-zero exit) on an ASan report
        asan = { ...(typeof asan === 'object' ? (asan as object) : {}), last: JSON.parse(out), cases: i + 1 };
        asanFiles.length = 0;
      }
    }
  }
  log('nativeReader', { adapterCases: loaded + refused, loaded, refused, nonErrorThrows: other.length, modelCases: mLoaded + mRefused, modelLoaded: mLoaded, modelRefused: mRefused, asan, seconds: (Date.now() - t0) / 1000, survived: true });
  void files;
}

// --- HTTP phases on one server with 200 generated adapters ----------------------------------
const adir = join(tmp, 'adapters');
const names = await writeRandomAdapters(adir, 200, 17);
const models = defaultConfigInput().models!;
models[0]!.adapterDirs = [...(models[0]!.adapterDirs ?? []), adir];
const srv = await startDemo({ models, maxQueuedRequests: 64, engine: { threads: 2, maxLoras: 16 } });
const all = ['tiny-shakespeare', ...['shout', 'whisper', 'romeo', 'rs', ...names].map((n) => `tiny-shakespeare:${n}`)];
{
  const t0 = Date.now();
  const { byStatus, bad } = await sendHostile(srv.url, hostileCases(env('SOAK_HOSTILE', 3000), 104), 8);
  log('hostile', { cases: env('SOAK_HOSTILE', 3000), byStatus, violations: bad.length, examples: bad.slice(0, 5), seconds: (Date.now() - t0) / 1000 });
}
{
  // Warm-up (every adapter path once), then the storm; RSS compared after it settles.
  await storm(srv.url, { requests: 300, models: all, concurrency: 16, cutFraction: 0, seed: 105 });
  await waitIdle(srv);
  global.gc?.();
  const before = mb();
  const t0 = Date.now();
  const r = await storm(srv.url, { requests: env('SOAK_STORM', 500), models: all, concurrency: 32, cutFraction: 0.3, seed: 106 });
  const idle = await waitIdle(srv);
  global.gc?.();
  const after = mb();
  log('disconnectStorm', { ...r, errors: r.errors.slice(0, 5), errorCount: r.errors.length, idle, rssBeforeMB: before, rssAfterMB: after, rssChangePct: Math.round(((after - before) / before) * 1000) / 10, seconds: (Date.now() - t0) / 1000 });
}
{
  const total = env('SOAK_REQUESTS', 20_000);
  const chunk = 1000;
  const samples: Array<[number, number]> = [];
  const byStatus: Record<string, number> = {};
  const errors: string[] = [];
  let done = 0;
  let cut = 0;
  const t0 = Date.now();
  const rssStart = mb();
  while (done < total && Date.now() < deadline) {
    const n = Math.min(chunk, total - done);
    const r = await storm(srv.url, { requests: n, models: all, concurrency: 48, cutFraction: 0.05, seed: 200 + done, maxTokens: [1, 6], stream: 0.5 });
    for (const [k, v] of Object.entries(r.byStatus)) byStatus[k] = (byStatus[k] ?? 0) + v;
    errors.push(...r.errors);
    cut += r.cut;
    done += n;
    samples.push([done, mb()]);
    process.stderr.write(`[soak] ${done}/${total} rss ${mb()} MB ${JSON.stringify(byStatus)}\n`);
  }
  const idle = await waitIdle(srv);
  // Least-squares slope of RSS over requests, after the first quarter (warm-up).
  const pts = samples.slice(Math.floor(samples.length / 4));
  const mx = pts.reduce((a, p) => a + p[0], 0) / pts.length;
  const my = pts.reduce((a, p) => a + p[1], 0) / pts.length;
  const slope = pts.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0) / (pts.reduce((a, p) => a + (p[0] - mx) ** 2, 0) || 1);
  log('soak', {
    requests: done, cut, byStatus, errorCount: errors.length, errors: errors.slice(0, 5), idle, rssStartMB: rssStart, rssEndMB: mb(),
    rssSlopeMBPer1000: Math.round(slope * 1000 * 1000) / 1000, rssSamples: samples, seconds: (Date.now() - t0) / 1000, timeBounded: done < total,
  });
}
await srv.close();
rmSync(tmp, { recursive: true, force: true });
const out = JSON.stringify(report, null, 2);
if (process.env.SOAK_OUT) writeFileSync(process.env.SOAK_OUT, out);
process.stdout.write(out + '\n');
const failed =
  (report.hostile as { violations: number }).violations > 0 ||
  (report.soak as { errorCount: number }).errorCount > 0 ||
  (report.disconnectStorm as { errorCount: number }).errorCount > 0 ||
  (report.tsParsers as { safetensors: { failures: unknown[] } }).safetensors.failures.length > 0 ||
  (report.tsParsers as { config: { failures: unknown[] } }).config.failures.length > 0;
process.exit(failed ? 1 : 0);
