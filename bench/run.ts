/**
 * Benchmark harness: `npm run bench -- --scenario NAME [--json FILE] [options]`.
 *
 * Starts the real gateway in a child process (bench/server.ts: startServer on
 * 127.0.0.1:<ephemeral>, the embedded tiny-shakespeare demo, its adapters and up to 256 generated
 * random adapters, all resident; it reports its own event-loop lag and RSS over IPC), or in this
 * process (`--in-process`), or drives an already running one (`--url`), runs the chosen scenarios (bench/scenarios.ts) with
 * concurrent streaming clients, optionally sets llama.cpp on the same weights beside the `vs-*`
 * scenarios (bench/llamacpp.ts), prints tables and writes the figures plus machine facts as JSON
 * and an SVG plot. See bench/README.md.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { RunningServer } from '../examples/server.ts';
import { loadTokenizer } from '../plugin/tokenizer.ts';
import { generateAdapters, type GeneratedAdapters } from './adapters-gen.ts';
import { runScenario, streamRequest, type ScenarioStats, type ServerProbe } from './client.ts';
import { installLlamaCpp, llamaCppInstalled, runLlamaJob, type LlamaResult } from './llamacpp.ts';
import { adapterSeries, renderSvg } from './plot.ts';
import { startServerChild, stopServerChild } from './server-child.ts';
import { GROUPS, LOGIT_BIAS, MAX_TOKENS, PROMPTS, SCENARIOS, selectScenarios, type Scenario, type ScenarioContext } from './scenarios.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DEMO_MODEL_DIR = path.join(REPO, 'examples/models/tiny-shakespeare');

const USAGE = `usage: npm run bench -- --scenario NAME[,NAME...] [options]
  --scenario NAME     ${Object.keys(GROUPS).join(' | ')} | a scenario (a scenario's baseline runs first):
                      ${SCENARIOS.map((s) => s.name).join(' ')}
  --json FILE         also write the results as JSON (and the plot as FILE with .svg)
  --svg FILE          write the tokens/s-vs-adapters plot here (default: next to --json)
  --requests N        requests per scenario (default: the scenario's own, 16-128)
  --max-seconds S     time bound per scenario; in-flight requests are then aborted (default 120)
  --url URL           drive a running server (e.g. http://127.0.0.1:8000/v1) instead of starting one
  --in-process        run the server in the bench process (old mode: clients and server share one loop)
  --server-cpu-prof DIR  run the server child with --cpu-prof, profile written to DIR at the end
  --model NAME        base model name (default tiny-shakespeare)
  --model-dir DIR     serve this HF model folder instead of the demo (its folder name is the model
                      name), e.g. a real-shape model of bench/real/models.ts for structured-16
  --threads N         engine compute threads of the in-process server (default 0 = every core but one)
  --engine JSON       extra engine options for the in-process server, e.g. '{"quantization":"int8"}'
  --adapters-dir DIR  cache folder for the generated random adapters (default <tmpdir>/openlora-bench-adapters)
  --seed N            seed of the generated adapters (default 1234)
  --adapter-dtype T   F32 (default) or BF16: storage of the generated adapters' A and B
  --repeat N          run every scenario N times and keep the median run (by tokens/s; default 1)
  --gguf-dir DIR      llama.cpp baseline weights (default ../shared/models/tiny-shakespeare-gguf from the repo)
  --gguf-base FILE    base GGUF inside --gguf-dir (default base-f32.gguf)
  --llamacpp-threads LIST  llama.cpp thread counts to try, best one counts (default "1,<cores>")
  --no-llamacpp       run the vs-* scenarios without the llama.cpp side`;

function fail(msg: string): never {
  console.error(`bench: ${msg}\n${USAGE}`);
  process.exit(2);
}

function positiveInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 0) fail(`${flag} expects a non-negative integer, got "${v}"`);
  return Number(v);
}

const { values: opts } = (() => {
  try {
    return parseArgs({
      options: {
        scenario: { type: 'string' },
        json: { type: 'string' },
        requests: { type: 'string' },
        'max-seconds': { type: 'string' },
        url: { type: 'string' },
        'in-process': { type: 'boolean' },
        'server-cpu-prof': { type: 'string' },
        model: { type: 'string', default: 'tiny-shakespeare' },
        'model-dir': { type: 'string' },
        threads: { type: 'string' },
        svg: { type: 'string' },
        engine: { type: 'string' },
        'adapters-dir': { type: 'string' },
        seed: { type: 'string' },
        'adapter-dtype': { type: 'string', default: 'F32' },
        repeat: { type: 'string' },
        'gguf-dir': { type: 'string' },
        'gguf-base': { type: 'string', default: 'base-f32.gguf' },
        'llamacpp-threads': { type: 'string' },
        'no-llamacpp': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    fail((e as Error).message);
  }
})();
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!opts.scenario) fail('--scenario is required');
let scenarios: Scenario[];
try {
  scenarios = selectScenarios(opts.scenario);
} catch (e) {
  fail((e as Error).message);
}
const requestsOverride = positiveInt(opts.requests, '--requests');
const repeat = positiveInt(opts.repeat, '--repeat') ?? 1;
const maxSeconds = positiveInt(opts['max-seconds'], '--max-seconds') ?? 120;
const threads = positiveInt(opts.threads, '--threads') ?? 0;
const modelDirOpt = opts['model-dir'] ? path.resolve(opts['model-dir']) : undefined;
const base = modelDirOpt ? path.basename(modelDirOpt) : opts.model!;
const seed = positiveInt(opts.seed, '--seed') ?? 1234;
const adapterDtype = opts['adapter-dtype']!.toUpperCase();
if (adapterDtype !== 'F32' && adapterDtype !== 'BF16') fail(`--adapter-dtype must be F32 or BF16, got ${opts['adapter-dtype']}`);
let engineExtra: Record<string, unknown> = {};
if (opts.engine) {
  try {
    engineExtra = JSON.parse(opts.engine);
  } catch (e) {
    fail(`--engine expects a JSON object: ${(e as Error).message}`);
  }
}
const ggufDir = path.resolve(REPO, opts['gguf-dir'] ?? '../shared/models/tiny-shakespeare-gguf');
const llamaThreads = (opts['llamacpp-threads'] ?? `1,${os.cpus().length}`)
  .split(',')
  .map((t) => positiveInt(t.trim(), '--llamacpp-threads')!)
  .filter((t, i, a) => t > 0 && a.indexOf(t) === i);

const LOAD_AT_START = os.loadavg()[0];

/** Machine and code facts recorded next to the figures. */
function machineFacts() {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined; // not a git checkout
    }
  };
  const commit = git('rev-parse', 'HEAD') ?? 'unknown';
  // Uncommitted changes outside bench/ and package.json mean the figures are not those of `commit`.
  const dirty = git('status', '--porcelain', '--', '.', ':!bench', ':!package.json', ':!node_modules');
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuCount: cpus.length,
    totalMemGB: +(os.totalmem() / 2 ** 30).toFixed(1),
    /** 1-minute load average at the start and end of the run: above the CPU count, neighbours took CPU. */
    loadAvg1m: { start: +LOAD_AT_START.toFixed(2), end: +os.loadavg()[0].toFixed(2) },
    node: process.version,
    gitCommit: commit,
    gitDirty: dirty === undefined ? null : dirty.length > 0,
  };
}

const fmt = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(d));

function printTable(stats: ScenarioStats[]): void {
  const head = ['scenario', 'conc', 'ok/req', 'err', 'tok/s', 'req/s', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'lag p99', 'RSS MB', 'cli lag', 'cpu/tok', 'cli cpu', 'ratio'];
  const rows = stats.map((s) => [
    s.scenario, String(s.concurrency), `${s.ok}/${s.requests}`, String(s.failed + s.aborted),
    fmt(s.outputTokensPerSec), fmt(s.requestsPerSec, 2), fmt(s.ttftMs.p50), fmt(s.ttftMs.p99),
    fmt(s.itlMs.p50, 2), fmt(s.itlMs.p99, 2), fmt(s.eventLoopLagP99Ms, 2), fmt(s.peakRssMB, 0), fmt(s.clientLagP99Ms, 2), fmt(s.serverCpuMsPerToken, 3), fmt(s.clientCpuMsPerToken, 3),
    s.ratioToBaseline === undefined ? '' : `${fmt(s.ratioToBaseline, 2)}x ${s.baseline}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const r of rows) console.log(line(r));
  console.log(
    `(times in ms; tok/s = completion tokens / scenario wall time; ratio = tok/s / baseline tok/s; lag p99 and RSS: ${stats[0]?.measuredIn ?? 'server'}; ` +
      'cli lag: the bench client loop; cpu/tok, cli cpu: server / client process CPU ms per output token, all threads)',
  );
  for (const s of stats) {
    const kinds = Object.entries(s.kinds);
    if (kinds.length < 2 && Object.values(s.kinds).every((k) => Object.keys(k.errors).length === 0)) continue;
    console.log(`\n${s.scenario} by kind:`);
    for (const [name, k] of kinds) {
      const errs = Object.entries(k.errors).map(([e, n]) => `${n}× ${e}`).join(', ');
      console.log(
        `  ${name.padEnd(15)} ok ${String(k.ok).padStart(3)}  per-stream ${fmt(k.perStreamTokensPerSec).padStart(7)} tok/s` +
          (k.vsBaselineKind === undefined ? '' : `  ${fmt(k.vsBaselineKind, 2)}x vs ${s.baselineKind}`) +
          (errs ? `  errors: ${errs}` : ''),
      );
    }
  }
}

// ---- preparation: tokenizer (prompt ids for llama.cpp, long prompts), generated adapters ----
const tokenizer = await loadTokenizer(DEMO_MODEL_DIR);
const chatIds = (text: string) => tokenizer.encodeChat([{ role: 'user', content: text }]);

/** Long user messages whose chat prompt is 200–400 tokens: passages of LONG_TEXT, sized by the tokenizer. */
function longPrompts(count: number): string[] {
  const words = longTextSource().split(/\s+/);
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const target = 200 + Math.round((200 * k) / Math.max(1, count - 1)); // 200 … 400 tokens
    const start = (k * 37) % words.length;
    let n = 20;
    let text = '';
    for (;;) {
      text = Array.from({ length: n }, (_, j) => words[(start + j) % words.length]).join(' ');
      if (chatIds(text).length >= target || n > 4000) break;
      n += 4;
    }
    out.push(text);
  }
  return out;
}

const benchAdapterCount = Math.max(0, ...scenarios.map((s) => s.adapters ?? 0));
let generated: GeneratedAdapters | undefined;
if (benchAdapterCount > 0) {
  generated = generateAdapters(modelDirOpt ?? DEMO_MODEL_DIR, benchAdapterCount, { seed, dir: opts['adapters-dir'], dtype: adapterDtype });
  console.log(`bench: ${generated.names.length} random adapters (ranks ${Math.min(...generated.ranks)}-${Math.max(...generated.ranks)}) in ${generated.dir} (${generated.cached ? 'cached' : `generated in ${generated.seconds.toFixed(1)} s`})`);
  if (opts.url) console.log('bench: --url: the external server must serve these adapters (add the folder above to its adapterDirs)');
}
const ctx: ScenarioContext = {
  benchAdapters: generated?.names ?? [],
  longPrompts: scenarios.some((s) => s.name === 'long-mix-16') ? longPrompts(16) : [],
};

// ---- llama.cpp baseline availability ----
const wantsLlama = scenarios.some((s) => s.llamacpp) && !opts['no-llamacpp'];
let llamaSkip: string | undefined;
if (wantsLlama) {
  if (!existsSync(path.join(ggufDir, opts['gguf-base']!))) llamaSkip = `no ${opts['gguf-base']} in ${ggufDir} (give --gguf-dir)`;
  else if (!llamaCppInstalled()) {
    console.log('bench: installing node-llama-cpp into bench/llamacpp/ for the llama.cpp baseline (npm run bench:install-llamacpp)');
    llamaSkip = installLlamaCpp();
  }
  if (llamaSkip) console.log(`bench: llama.cpp baseline SKIPPED: ${llamaSkip}`);
} else if (scenarios.some((s) => s.llamacpp)) llamaSkip = '--no-llamacpp';
/** Per llama.cpp measurement: a thread count that makes its spinning pool crawl on a loaded machine is cut here. */
const LLAMA_TIME_LIMIT_S = 15;
const LLAMA_LORAS = ['shout', 'whisper', 'romeo', 'rs'];
const LLAMA_SCALES = [1, 0.75, 0.5, 0.25];
interface LlamaBlock {
  mode: string;
  best?: LlamaResult;
  runs: LlamaResult[];
  errors: string[];
}
const llamaBlocks: Record<string, LlamaBlock> = {};

async function runLlama(mode: 'single' | 'base-16' | 'mixed-16', requests: number): Promise<LlamaBlock> {
  const block: LlamaBlock = { mode, runs: [], errors: [] };
  for (const threads of llamaThreads) {
    try {
      const r = await runLlamaJob(
        {
          mode,
          modelPath: path.join(ggufDir, opts['gguf-base']!),
          loraConfigs: Array.from({ length: 16 }, (_, c) => [{ filePath: path.join(ggufDir, `lora-${LLAMA_LORAS[c % 4]}.gguf`), scale: LLAMA_SCALES[c >> 2] }]),
          prompts: PROMPTS.map((p) => chatIds(p)),
          requests,
          maxTokens: MAX_TOKENS,
          bannedTokens: Object.keys(LOGIT_BIAS).map(Number),
          threads,
          concurrency: mode === 'single' ? 1 : 16,
          timeLimitSeconds: Math.min(maxSeconds, LLAMA_TIME_LIMIT_S),
        },
        (Math.min(maxSeconds, LLAMA_TIME_LIMIT_S) + 60) * 1000,
      );
      block.runs.push(r);
      console.log(`  llama.cpp ${mode} threads ${threads}: ${fmt(r.outputTokensPerSec)} tok/s in ${fmt(r.wallSeconds, 2)} s${r.truncated ? ` (cut at ${LLAMA_TIME_LIMIT_S} s: ${r.requests} requests)` : ''}`);
    } catch (e) {
      block.errors.push((e as Error).message);
      console.log(`  ${(e as Error).message}`);
    }
  }
  block.best = block.runs.reduce<LlamaResult | undefined>((b, r) => (!b || r.outputTokensPerSec > b.outputTokensPerSec ? r : b), undefined);
  return block;
}

// ---- the server ----
let server: RunningServer | undefined;
let child: ChildProcess | undefined;
let probe: ServerProbe | undefined;
let url = opts.url?.replace(/\/+$/, '');
let engineSettings: Record<string, unknown> | undefined;
const inProcess = !url && opts['in-process'] === true;
if (!url) {
  // Imported only here, so `--url` runs need neither the native addon nor the model files.
  const { defaultConfigInput, parseConfig } = await import('../config/load.ts');
  const input = defaultConfigInput();
  if (modelDirOpt) input.models = [{ name: base, path: modelDirOpt, adapterDirs: [] }];
  if (generated) input.models[0].adapterDirs = [...(input.models[0].adapterDirs ?? []), generated.dir];
  // Every adapter resident at once: the generated ones, the 4 demo ones and merges, with room.
  engineSettings = { threads, maxLoras: Math.max(64, benchAdapterCount + 32), maxLoraRank: 32, maxNumSeqs: 64, ...engineExtra };
  let config;
  try {
    config = parseConfig({ ...input, host: '127.0.0.1', port: 0, logLevel: 'silent', engine: engineSettings });
  } catch (e) {
    fail((e as Error).message);
  }
  if (inProcess) {
    const { startServer } = await import('../examples/server.ts');
    server = await startServer(config);
    url = server.url;
  } else {
    ({ child, probe, url } = await startServerChild(config, opts['server-cpu-prof']));
  }
}
console.log(`bench: ${url} (${server ? 'in-process server' : child ? `server child process ${child.pid}` : 'external server'}), scenarios: ${scenarios.map((s) => s.name).join(', ')}`);

/** Warm-up (not measured): one short request per distinct model/adapter set the scenario will send. */
async function warmUp(sc: Scenario, requests: number): Promise<void> {
  const todo = new Map<string, ReturnType<Scenario['request']>>();
  for (let i = 0; i < requests; i++) {
    const req = sc.request(i, base, ctx);
    const key = JSON.stringify([req.body.model, req.body.adapters, req.body.merge, req.kind]);
    if (!todo.has(key)) todo.set(key, req);
  }
  const list = [...todo.values()];
  let next = 0;
  const worker = async () => {
    while (next < list.length) {
      const req = list[next++];
      await streamRequest(url!, { ...req, body: { ...req.body, max_tokens: 2 } }, new AbortController().signal);
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, list.length) }, worker));
}

const results: ScenarioStats[] = [];
try {
  for (const sc of scenarios) {
    const requests = requestsOverride ?? sc.defaultRequests;
    if (sc.llamacpp && !llamaSkip) llamaBlocks[sc.name] = await runLlama(sc.llamacpp, requests);
    // NOTE(why): on a small shared machine one run's tokens/s moves by ±20%; with --repeat the
    // median run stands for the scenario and every run's figure is kept beside it.
    const runs: ScenarioStats[] = [];
    for (let i = 0; i < repeat; i++) {
      await warmUp(sc, requests);
      const load = os.loadavg()[0];
      const run = await runScenario(url, base, sc, requests, maxSeconds, ctx, { inProcess, probe });
      run.loadAvg1m = +load.toFixed(2);
      runs.push(run);
    }
    const stats = [...runs].sort((a, b) => a.outputTokensPerSec - b.outputTokensPerSec)[Math.floor((runs.length - 1) / 2)];
    if (repeat > 1) stats.repeatTokensPerSec = runs.map((r) => +r.outputTokensPerSec.toFixed(1));
    const load = stats.loadAvg1m ?? 0;
    const bl = sc.baseline ? results.find((r) => r.scenario === sc.baseline) : undefined;
    if (bl && bl.outputTokensPerSec > 0) {
      stats.baseline = bl.scenario;
      stats.ratioToBaseline = stats.outputTokensPerSec / bl.outputTokensPerSec;
    }
    const lb = llamaBlocks[sc.name]?.best;
    if (lb) {
      stats.baseline = `llama.cpp ${sc.llamacpp}`;
      stats.ratioToBaseline = stats.outputTokensPerSec / lb.outputTokensPerSec;
    }
    results.push(stats);
    const all = repeat > 1 ? ` (median of ${stats.repeatTokensPerSec!.map((v) => fmt(v)).join(', ')})` : '';
    console.log(`  ${sc.name}: ${stats.ok}/${stats.requests} ok, ${fmt(stats.outputTokensPerSec)} tok/s${all} in ${fmt(stats.wallSeconds, 2)} s (load ${fmt(load, 2)})`);
  }
} finally {
  await server?.close();
  if (child) await stopServerChild(child);
}

const byName = (n: string) => results.find((r) => r.scenario === n && r.ok > 0);
const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? +(a / b).toFixed(3) : null);

// ---- the llama.cpp comparison ----
const GOALS: Record<string, number> = { 'vs-single': 1.0, 'vs-base-16': 1.2, 'vs-lora16-16': 3.0 };
const vsLlamacpp = scenarios
  .filter((s) => s.llamacpp)
  .map((s) => {
    const ours = byName(s.name);
    const l = llamaBlocks[s.name];
    const r = ratio(ours?.outputTokensPerSec, l?.best?.outputTokensPerSec);
    return {
      scenario: s.name,
      llamacppMode: s.llamacpp,
      oursTokensPerSec: ours ? +ours.outputTokensPerSec.toFixed(1) : null,
      llamacppTokensPerSec: l?.best ? +l.best.outputTokensPerSec.toFixed(1) : null,
      llamacppThreads: l?.best?.threads ?? null,
      llamacppAllRuns: l?.runs.map((x) => ({ threads: x.threads, requests: x.requests, truncated: x.truncated, tokensPerSec: +x.outputTokensPerSec.toFixed(1), ttftMs: x.ttftMs, itlMs: x.itlMs, peakRssMB: +x.peakRssMB.toFixed(0) })) ?? [],
      llamacppErrors: l?.errors ?? [],
      ratio: r,
      goal: GOALS[s.name],
      met: r === null ? null : r >= GOALS[s.name],
      skipped: llamaSkip ?? null,
    };
  });
if (vsLlamacpp.length) {
  console.log('\nvs llama.cpp (same weights, greedy, 64 new tokens, same prompt ids; llama.cpp: best of threads ' + llamaThreads.join('/') + '):');
  if (llamaSkip) console.log(`  llama.cpp side skipped: ${llamaSkip}`);
  for (const v of vsLlamacpp)
    console.log(
      `  ${v.scenario.padEnd(13)} ours ${fmt(v.oursTokensPerSec ?? undefined).padStart(7)} tok/s   llama.cpp ${fmt(v.llamacppTokensPerSec ?? undefined).padStart(7)} tok/s` +
        (v.llamacppThreads ? ` (${v.llamacppThreads} thr)` : '') +
        `   ratio ${v.ratio === null ? '—' : `${v.ratio.toFixed(2)}x`} (goal ≥ ${v.goal}x${v.met === null ? '' : v.met ? ', met' : ', NOT met'})`,
    );
}

// ---- acceptance figures of issue 4 that this run measured ----
const fullLoad = results.filter((r) => r.concurrency >= 16);
const acceptance = {
  '1_lora64_uniform_c64_over_base64': ratio(byName('lora64-uniform-c64')?.outputTokensPerSec, byName('base-64')?.outputTokensPerSec),
  '2_base16_over_sequential16': ratio(byName('base-16')?.outputTokensPerSec, byName('sequential-16')?.outputTokensPerSec),
  '3_max_event_loop_lag_p99_ms_at_full_load': fullLoad.length ? +Math.max(...fullLoad.map((r) => r.eventLoopLagP99Ms)).toFixed(2) : null,
  /** The same with the measure used before 2026-11-29: the histogram's raw interval p99 (includes the 10 ms resolution). */
  '3_raw_interval_p99_ms_at_full_load': fullLoad.length ? +Math.max(...fullLoad.map((r) => r.eventLoopIntervalP99Ms)).toFixed(2) : null,
  '3_lag_measured_in': results[0]?.measuredIn ?? null,
  '7_vs_llamacpp': Object.fromEntries(vsLlamacpp.map((v) => [v.scenario, v.ratio])),
};
console.log(`\nacceptance (issue 4): ${JSON.stringify(acceptance)}`);
// Issue 14: half the streams constrained (json_schema) against 16 unconstrained, one run.
const structured = byName('structured-16');
const acceptance14 = structured
  ? {
      structured16_over_base16: ratio(structured.outputTokensPerSec, byName('base-16')?.outputTokensPerSec),
      goal_tokens_per_sec: 0.9,
      unconstrained_per_stream_in_mix_over_base16: ratio(structured.kinds.unconstrained?.perStreamTokensPerSec, byName('base-16')?.kinds.base?.perStreamTokensPerSec),
      goal_unconstrained_per_stream: 0.95,
      constrained_per_stream_in_mix_over_base16: ratio(structured.kinds['json-schema']?.perStreamTokensPerSec, byName('base-16')?.kinds.base?.perStreamTokensPerSec),
    }
  : null;
if (acceptance14) console.log(`acceptance (issue 14): ${JSON.stringify(acceptance14)}`);

printTable(results);
const machine = machineFacts();
const svgPath = opts.svg ?? (opts.json ? opts.json.replace(/\.json$/i, '') + '.svg' : undefined);
const series = adapterSeries(results);
if (svgPath && series.length) {
  const svg = renderSvg(
    series,
    'openlora: output tokens/s vs distinct adapters (all resident)',
    `${machine.cpuCount} × ${machine.cpuModel.slice(0, 40)}, load ${machine.loadAvg1m.start}→${machine.loadAvg1m.end}, ${machine.gitCommit.slice(0, 8)}${machine.gitDirty ? '+dirty' : ''}, ${machine.date.slice(0, 10)}`,
  );
  mkdirSync(path.dirname(path.resolve(svgPath)), { recursive: true });
  writeFileSync(svgPath, svg);
  console.log(`wrote ${svgPath}`);
}
if (opts.json) {
  const out = {
    machine,
    settings: {
      url: opts.url ?? (inProcess ? 'in-process' : 'server child process (bench/server.ts)'),
      model: base,
      threads,
      engine: engineSettings ?? null,
      maxSeconds,
      requestsOverride: requestsOverride ?? null,
      repeat,
      generatedAdapters: generated
        ? { count: generated.names.length, seed, dtype: adapterDtype, dir: generated.dir.replace(os.tmpdir(), '<tmpdir>'), ranks: generated.ranks }
        : null,
      llamacpp: wantsLlama ? { ggufDir: path.relative(REPO, ggufDir), base: opts['gguf-base'], threadsTried: llamaThreads, skipped: llamaSkip ?? null } : null,
    },
    notes: [
      server
        ? 'The server runs in this process: event-loop lag and peak RSS are those of the one loop/process that serves and also runs the clients.'
        : child
          ? 'The server runs in a child process (bench/server.ts): eventLoopLagP99Ms and peakRssMB are the server process\'s own (IPC), clientLagP99Ms/clientPeakRssMB the bench client\'s; both share the machine\'s CPUs.'
          : 'External server: event-loop lag and peak RSS are those of the client process only.',
      'Absolute numbers depend on the machine and its neighbours (see loadAvg1m per scenario); compare ratios measured in one run.',
      'ITL is the gap between content chunks as read by fetch; chunks read together count a 0 ms gap.',
      'Event-loop lag = how late a 10 ms timer fires: monitorEventLoopDelay p99 minus its 10 ms resolution (the histogram records tick intervals; an idle loop reads ~10.1 ms). eventLoopIntervalP99Ms is the raw figure, the measure used in results before 2026-11-29.',
      'vs-*: llama.cpp (node-llama-cpp, in a child process, no HTTP) on the GGUF of the same weights, same prompt token ids, greedy, 64 new tokens with the end tokens banned; best of the thread counts tried. Ours goes through HTTP + SSE.',
    ],
    acceptance,
    ...(acceptance14 ? { acceptance14 } : {}),
    vsLlamacpp,
    peakRssProcessMB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
    scenarios: results,
  };
  mkdirSync(path.dirname(path.resolve(opts.json)), { recursive: true });
  writeFileSync(opts.json, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${opts.json}`);
}
// Exit 1 only when a whole scenario produced nothing (per-kind failures are reported, not fatal).
process.exit(results.some((r) => r.ok === 0) ? 1 : 0);

/** Public-domain Shakespeare (Hamlet III.1, Julius Caesar III.2, As You Like It II.7), cut into long prompts. */
function longTextSource(): string {
  return `To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles And by
opposing end them. To die: to sleep; No more; and by a sleep to say we end The heart-ache and the
thousand natural shocks That flesh is heir to, 'tis a consummation Devoutly to be wish'd. To die,
to sleep; To sleep: perchance to dream: ay, there's the rub; For in that sleep of death what dreams
may come When we have shuffled off this mortal coil, Must give us pause: there's the respect That
makes calamity of so long life; For who would bear the whips and scorns of time, The oppressor's
wrong, the proud man's contumely, The pangs of despised love, the law's delay, The insolence of
office and the spurns That patient merit of the unworthy takes, When he himself might his quietus
make With a bare bodkin? Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not
to praise him. The evil that men do lives after them; The good is oft interred with their bones; So
let it be with Caesar. The noble Brutus Hath told you Caesar was ambitious: If it were so, it was a
grievous fault, And grievously hath Caesar answer'd it. Here, under leave of Brutus and the rest,
For Brutus is an honourable man; So are they all, all honourable men, Come I to speak in Caesar's
funeral. He was my friend, faithful and just to me: But Brutus says he was ambitious; And Brutus is
an honourable man. All the world's a stage, And all the men and women merely players; They have
their exits and their entrances; And one man in his time plays many parts, His acts being seven
ages. At first the infant, Mewling and puking in the nurse's arms; And then the whining school-boy,
with his satchel And shining morning face, creeping like snail Unwillingly to school. And then the
lover, Sighing like furnace, with a woeful ballad Made to his mistress' eyebrow. Then a soldier,
Full of strange oaths and bearded like the pard, Jealous in honour, sudden and quick in quarrel,
Seeking the bubble reputation Even in the cannon's mouth.`;
}
