/**
 * Benchmark harness: `npm run bench -- --scenario NAME [--json FILE] [options]`.
 *
 * Starts the real gateway in this process (startServer on 127.0.0.1:<ephemeral>, the embedded
 * tiny-shakespeare demo and its adapters) or drives an already running one (`--url`), runs the
 * chosen scenarios (bench/scenarios.ts) with concurrent streaming clients, prints a table and
 * optionally writes the figures plus machine facts as JSON. See bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { RunningServer } from '../examples/server.ts';
import { runScenario, streamRequest, type ScenarioStats } from './client.ts';
import { SCENARIOS, selectScenarios, type Scenario } from './scenarios.ts';

const USAGE = `usage: npm run bench -- --scenario NAME [options]
  --scenario NAME     all | ${SCENARIOS.map((s) => s.name).join(' | ')}  (a scenario's baseline runs first)
  --json FILE         also write the results as JSON
  --requests N        requests per scenario (default: the scenario's own, 16-96)
  --max-seconds S     time bound per scenario; in-flight requests are then aborted (default 120)
  --url URL           drive a running server (e.g. http://127.0.0.1:8000/v1) instead of starting one
  --model NAME        base model name (default tiny-shakespeare)
  --threads N         engine compute threads of the in-process server (default 0 = every core)`;

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
        model: { type: 'string', default: 'tiny-shakespeare' },
        threads: { type: 'string' },
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
const maxSeconds = positiveInt(opts['max-seconds'], '--max-seconds') ?? 120;
const threads = positiveInt(opts.threads, '--threads') ?? 0;
const base = opts.model!;

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
  const head = ['scenario', 'conc', 'ok/req', 'err', 'tok/s', 'req/s', 'TTFT p50', 'TTFT p99', 'ITL p50', 'ITL p99', 'lag p99', 'RSS MB', 'ratio'];
  const rows = stats.map((s) => [
    s.scenario, String(s.concurrency), `${s.ok}/${s.requests}`, String(s.failed + s.aborted),
    fmt(s.outputTokensPerSec), fmt(s.requestsPerSec, 2), fmt(s.ttftMs.p50), fmt(s.ttftMs.p99),
    fmt(s.itlMs.p50, 2), fmt(s.itlMs.p99, 2), fmt(s.eventLoopLagP99Ms, 2), fmt(s.peakRssMB, 0),
    s.ratioToBaseline === undefined ? '' : `${fmt(s.ratioToBaseline, 2)}x ${s.baseline}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\n${line(head)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const r of rows) console.log(line(r));
  console.log('(times in ms; tok/s = completion tokens / scenario wall time; ratio = tok/s / baseline tok/s)');
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

let server: RunningServer | undefined;
let url = opts.url?.replace(/\/+$/, '');
if (!url) {
  // Imported only here, so `--url` runs need neither the native addon nor the model files.
  const { defaultConfigInput, parseConfig } = await import('../config/load.ts');
  const { startServer } = await import('../examples/server.ts');
  const config = parseConfig({ ...defaultConfigInput(), host: '127.0.0.1', port: 0, logLevel: 'silent', engine: { threads } });
  server = await startServer(config);
  url = server.url;
}
console.log(`bench: ${url} (${server ? 'in-process server' : 'external server'}), scenarios: ${scenarios.map((s) => s.name).join(', ')}`);

const results: ScenarioStats[] = [];
try {
  for (const sc of scenarios) {
    // Warm-up (not measured): one request per kind, so JIT adapter loads and first-touch costs stay out.
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const req = sc.request(i, base);
      if (seen.has(req.kind)) continue;
      seen.add(req.kind);
      await streamRequest(url, { ...req, body: { ...req.body, max_tokens: 4 } }, new AbortController().signal);
    }
    const stats = await runScenario(url, base, sc, requestsOverride ?? sc.defaultRequests, maxSeconds);
    const bl = sc.baseline ? results.find((r) => r.scenario === sc.baseline) : undefined;
    if (bl && bl.outputTokensPerSec > 0) {
      stats.baseline = bl.scenario;
      stats.ratioToBaseline = stats.outputTokensPerSec / bl.outputTokensPerSec;
    }
    results.push(stats);
    console.log(`  ${sc.name}: ${stats.ok}/${stats.requests} ok, ${fmt(stats.outputTokensPerSec)} tok/s in ${fmt(stats.wallSeconds, 2)} s`);
  }
} finally {
  await server?.close();
}

printTable(results);
if (opts.json) {
  const out = {
    machine: machineFacts(),
    settings: { url: opts.url ?? 'in-process', model: base, threads, maxSeconds, requestsOverride: requestsOverride ?? null },
    notes: [
      server
        ? 'The server runs in this process: event-loop lag and peak RSS are those of the one loop/process that serves and also runs the clients.'
        : 'External server: event-loop lag and peak RSS are those of the client process only.',
      'Absolute numbers depend on the machine and its neighbours; compare ratios measured in one run.',
      'ITL is the gap between content chunks as read by fetch; chunks read together count a 0 ms gap.',
    ],
    peakRssProcessMB: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
    scenarios: results,
  };
  mkdirSync(path.dirname(path.resolve(opts.json)), { recursive: true });
  writeFileSync(opts.json, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwrote ${opts.json}`);
}
// Exit 1 only when a whole scenario produced nothing (per-kind failures are reported, not fatal).
process.exit(results.some((r) => r.ok === 0) ? 1 : 0);
