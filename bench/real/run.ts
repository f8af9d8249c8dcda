/**
 * The real-shape benchmark (issue 15): `npm run bench:real -- [options]` (see bench/README.md).
 *
 * Generates (or reuses, under --cache-dir, outside the repo) a random-weight BF16 model at a real
 * shape with Llama 3's tokenizer (bench/real/models.ts) and random PEFT adapters with ranks from
 * {8, 16, 32, 64} on all seven projections (bench/adapters-gen.ts), starts openlora's gateway in a
 * child process (bench/server-child.ts) and, when built, llama-server on our GGUF conversion of
 * the same weights (bench/real/llama-server.ts), checks that greedy outputs agree, then runs:
 * - `table`: the issue's table, each workload on both servers back to back, the whole set
 *   `--repeat` times (interleaved); medians, and the ratio of each repeat's pair;
 * - `prefill`: TTFT of one 512-token prompt (1 new token), both servers, interleaved;
 * - `slora`: S-LoRA's workload on openlora (Poisson arrivals swept over `--rates`, uniform and
 *   power-law popularity over 16 / 100 / 1000 adapters with 16 engine slots, lengths uniform in
 *   [8, 256)): tokens/s, requests/s, TTFT and TPOT p50/p99.
 * Prints tables; `--json FILE` writes every figure with the machine's CPU model and flags.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { generateAdapters } from '../adapters-gen.ts';
import { percentile, runScenario, streamRequest, summarize, type RequestResult, type ScenarioStats, type ServerProbe } from '../client.ts';
import type { BenchRequest, Scenario } from '../scenarios.ts';
import { startServerChild, stopServerChild } from '../server-child.ts';
import { ggufFiles, llamaServerBin, startLlamaServer, type LlamaServer } from './llama-server.ts';
import { ensureRealModel, SHAPES } from './models.ts';
import { completionRequest, LLAMA_LORAS, openLoopWorkload, promptIds, tableWorkloads, type Dialect } from './workloads.ts';

const { values: o } = parseArgs({
  options: {
    shape: { type: 'string', default: 'smol360-l3' },
    'cache-dir': { type: 'string', default: path.join(os.homedir(), '.cache', 'openlora-bench') },
    parts: { type: 'string', default: 'table,prefill,slora' },
    repeat: { type: 'string', default: '3' },
    'single-requests': { type: 'string', default: '4' },
    'batch-requests': { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
    'llama-threads': { type: 'string' },
    rates: { type: 'string', default: '0.2,0.4,0.8' },
    'slora-requests': { type: 'string', default: '12' },
    'slora-adapters': { type: 'string', default: '16,100,1000' },
    'gguf-type': { type: 'string', default: 'f16' },
    'activation-dtype': { type: 'string', default: 'float32' },
    quantization: { type: 'string', default: 'none' },
    'no-llamacpp': { type: 'boolean' },
    'max-seconds': { type: 'string', default: '600' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (o.help) {
  console.log(readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]);
  process.exit(0);
}
const num = (k: keyof typeof o) => {
  const v = Number(o[k]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} expects a number, got ${o[k]}`);
  return v;
};
const parts = new Set(o.parts!.split(','));
const cacheDir = path.resolve(o['cache-dir']!);
const repeat = num('repeat');
const threads = num('threads');
/** llama-server's threads (default: --threads). On a loaded machine ggml's spinning pool can crawl with 2. */
const llamaThreads = o['llama-threads'] === undefined ? threads : num('llama-threads');
const maxSeconds = num('max-seconds');
const sloraCounts = o['slora-adapters']!.split(',').map(Number);
const rates = o.rates!.split(',').map(Number);
const ggufType = o['gguf-type'] as 'f16' | 'q8_0';
const PROMPT_LEN = 32;
const NEW_TOKENS = 64;
const PREFILL_LEN = 512;
const ENGINE_SLOTS = 16;

const ctx = { benchAdapters: [], longPrompts: [] };
const med = (xs: number[]) => percentile(xs, 50);
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '—');
const notes: string[] = [];
const log = (s: string) => console.log(`bench:real: ${s}`);

// ---- the weights ----
const model = ensureRealModel(o.shape!, cacheDir);
log(`model ${o.shape} (${SHAPES[o.shape!].about}): ${(model.bytes / 1e9).toFixed(2)} GB in ${model.dir} (${model.cached ? 'cached' : `generated in ${model.seconds.toFixed(0)} s`})`);
const adapterCount = Math.max(16, ...sloraCounts); // one set for every part: the table uses its first 16
const adapters = generateAdapters(model.dir, adapterCount, { dir: path.join(cacheDir, 'adapters'), dtype: 'BF16', rankChoices: [8, 16, 32, 64], weightPool: 100 });
log(`${adapterCount} adapters (BF16, ranks ${[...new Set(adapters.ranks)].sort((a, b) => a - b).join('/')}, first 16: ${adapters.ranks.slice(0, 16).join(',')}) in ${adapters.dir} (${adapters.cached ? 'cached' : `generated in ${adapters.seconds.toFixed(0)} s`})`);
const base = path.basename(model.dir);

// ---- the servers ----
const { parseConfig } = await import('../../config/load.ts');
const activationDtype = o['activation-dtype'] as 'float32' | 'bfloat16';
if (activationDtype !== 'float32' && activationDtype !== 'bfloat16') throw new Error(`--activation-dtype expects float32 or bfloat16, got ${activationDtype}`);
const quantization = o.quantization as 'none' | 'int8' | 'int4';
if (!['none', 'int8', 'int4'].includes(quantization)) throw new Error(`--quantization expects none, int8 or int4, got ${quantization}`);
const engine = { threads, maxLoras: ENGINE_SLOTS, maxLoraRank: 64, maxNumSeqs: 64, activationDtype, quantization };
const config = parseConfig({ models: [{ name: base, path: model.dir, adapterDirs: [adapters.dir] }], host: '127.0.0.1', port: 0, logLevel: 'silent', engine });
let child: ChildProcess | undefined;
let llama: LlamaServer | undefined;
const results: Record<string, unknown> = {};
try {
  const started = await startServerChild(config);
  child = started.child;
  const ours = { url: started.url, probe: started.probe as ServerProbe | undefined };
  log(`openlora at ${ours.url} (engine ${JSON.stringify(engine)})`);
  const wantLlama = !o['no-llamacpp'] && (parts.has('table') || parts.has('prefill'));
  const bin = wantLlama ? llamaServerBin(cacheDir) : undefined;
  if (wantLlama && !bin) notes.push(`llama-server not built under ${cacheDir}/llama.cpp (run bench/real/build-llama.sh): llama.cpp side skipped`);
  if (bin) {
    const t0 = performance.now();
    const g = ggufFiles(cacheDir, model.dir, adapters.names.slice(0, LLAMA_LORAS).map((n) => path.join(adapters.dir, n)), ggufType);
    log(`GGUF (${ggufType}) ready in ${((performance.now() - t0) / 1000).toFixed(0)} s: ${g.base}`);
    llama = await startLlamaServer(bin, { base: g.base, loras: g.loras, port: 18000 + (process.pid % 1000), threads: llamaThreads, parallel: 16, ctxPerSlot: PREFILL_LEN + 128 });
    log(`llama-server at ${llama.url}`);
    results.agreement = await agreement(ours.url, llama.url);
  }
  const servers: Array<{ side: Dialect; url: string; probe?: ServerProbe }> = [{ side: 'openlora', ...ours }, ...(llama ? [{ side: 'llama' as const, url: llama.url }] : [])];
  if (parts.has('table')) results.table = await table(servers);
  if (parts.has('prefill')) results.prefill = await prefill(servers);
  if (parts.has('slora')) results.slora = await slora(ours.url, ours.probe);
} finally {
  await llama?.stop();
  if (child) await stopServerChild(child);
}

if (o.json) {
  const out = { machine: machine(), settings: { shape: o.shape, about: SHAPES[o.shape!].about, modelBytes: model.bytes, threads, llamaThreads, engine, adapters: { count: adapterCount, ranks: adapters.ranks.slice(0, 100), dtype: 'BF16', distinctWeightFiles: Math.min(100, adapterCount) }, promptLen: PROMPT_LEN, newTokens: NEW_TOKENS, repeat, ggufType, llamaServer: llama ? llamaBuild() : null }, notes, ...results };
  mkdirSync(path.dirname(path.resolve(o.json)), { recursive: true });
  writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
  log(`wrote ${o.json}`);
}

/** One non-streamed greedy completion's text. */
async function complete(url: string, req: BenchRequest): Promise<string> {
  const res = await fetch(`${url}/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...req.body, stream: false, stream_options: undefined }) });
  const b = (await res.json()) as { choices?: Array<{ text: string }>; error?: unknown };
  if (!res.ok || !b.choices) throw new Error(`${url}: ${res.status} ${JSON.stringify(b).slice(0, 300)}`);
  return b.choices[0].text;
}

/** Greedy outputs of both servers on the same prompts, base and one adapter (checked before timing). */
async function agreement(ourUrl: string, llamaUrl: string) {
  const rows = [];
  for (const adapter of [-1, 0]) {
    for (let p = 0; p < 3; p++) {
      const ids = promptIds(900_000 + p, PROMPT_LEN);
      const a = await complete(ourUrl, completionRequest('openlora', base, adapters.names, 'check', ids, 32, adapter));
      const b = await complete(llamaUrl, completionRequest('llama', base, adapters.names, 'check', ids, 32, adapter));
      let same = 0;
      while (same < Math.min(a.length, b.length) && a[same] === b[same]) same++;
      rows.push({ adapter, prompt: p, equal: a === b, commonPrefixChars: same, chars: [a.length, b.length], openlora: a.slice(0, 80), llama: b.slice(0, 80) });
    }
  }
  const eq = rows.filter((r) => r.equal).length;
  log(`greedy agreement (32 tokens, base + adapter 0, 3 prompts each): ${eq}/${rows.length} identical; common prefix chars ${rows.map((r) => `${r.commonPrefixChars}/${Math.max(...r.chars)}`).join(' ')}`);
  return { identical: eq, of: rows.length, rows };
}

/** Warm every adapter `reqs` use on `url` (loads out of the figures): 2 tokens each. */
async function warm(url: string, reqs: BenchRequest[]): Promise<void> {
  const seen = new Map<string, BenchRequest>();
  for (const r of reqs) seen.set(JSON.stringify([r.body.model, r.body.lora]), r);
  for (const r of seen.values()) await streamRequest(url, { ...r, body: { ...r.body, max_tokens: 2 } }, new AbortController().signal);
}

function scenarioOf(name: string, streams: number, reqs: BenchRequest[]): Scenario {
  return { name, description: name, concurrency: streams, defaultRequests: reqs.length, request: (i) => reqs[i] };
}

async function table(servers: Array<{ side: Dialect; url: string; probe?: ServerProbe }>) {
  const workloads = tableWorkloads(num('single-requests'), num('batch-requests'));
  const runs: Record<string, Record<string, ScenarioStats[]>> = {};
  for (let rep = 0; rep < repeat; rep++) {
    for (const [wi, w] of workloads.entries()) {
      for (const s of servers) {
        const reqs = Array.from({ length: w.requests }, (_, i) => completionRequest(s.side, base, adapters.names, w.name, promptIds(rep * 100_000 + wi * 1000 + i, PROMPT_LEN), NEW_TOKENS, w.adapter(i)));
        await warm(s.url, reqs);
        const st = await runScenario(s.url, base, scenarioOf(w.name, w.streams, reqs), reqs.length, maxSeconds, ctx, { inProcess: false, probe: s.probe });
        st.loadAvg1m = +os.loadavg()[0].toFixed(2);
        ((runs[w.name] ??= {})[s.side] ??= []).push(st);
        log(`table rep ${rep} ${w.name} ${s.side}: ${f1(st.outputTokensPerSec)} tok/s (${st.ok}/${st.requests} ok, load ${st.loadAvg1m})`);
      }
    }
  }
  const rows = workloads.map((w) => {
    const r = runs[w.name];
    const tps = (side: string) => (r[side] ?? []).map((x) => x.outputTokensPerSec);
    const ratios = (r.llama ?? []).map((l, k) => r.openlora[k].outputTokensPerSec / l.outputTokensPerSec);
    return {
      workload: w.name, streams: w.streams, requests: w.requests,
      openloraTokensPerSec: med(tps('openlora')), llamacppTokensPerSec: r.llama ? med(tps('llama')) : null,
      ratioMedianOfPairs: ratios.length ? med(ratios) : null, ratiosPerRepeat: ratios,
      openloraRuns: tps('openlora'), llamacppRuns: tps('llama'),
      openloraTtftP50Ms: med(r.openlora.map((x) => x.ttftMs.p50)), openloraTpotP50Ms: med(r.openlora.map((x) => x.tpotMs.p50)),
      llamacppTtftP50Ms: r.llama ? med(r.llama.map((x) => x.ttftMs.p50)) : null, llamacppTpotP50Ms: r.llama ? med(r.llama.map((x) => x.tpotMs.p50)) : null,
      errors: Object.values(r).flat().reduce((n, x) => n + x.failed + x.aborted, 0),
      loadAvg1m: Object.values(r).flat().map((x) => x.loadAvg1m),
    };
  });
  console.log(`\nreal-shape table (${o.shape}, ${threads} threads, ${PROMPT_LEN}-token prompts, ${NEW_TOKENS} new tokens, greedy, medians of ${repeat} interleaved runs):`);
  console.log('| workload | openlora tok/s | llama.cpp tok/s | ratio (median of pairs) |\n|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.workload} | ${f1(r.openloraTokensPerSec)} | ${r.llamacppTokensPerSec === null ? '—' : f1(r.llamacppTokensPerSec)} | ${r.ratioMedianOfPairs === null ? '—' : r.ratioMedianOfPairs.toFixed(2) + '×'} |`);
  return rows;
}

async function prefill(servers: Array<{ side: Dialect; url: string }>) {
  const ttft: Record<string, number[]> = {};
  for (let rep = 0; rep < repeat; rep++) {
    for (const s of servers) {
      const req = completionRequest(s.side, base, adapters.names, 'prefill', promptIds(500_000 + rep, PREFILL_LEN), 1, -1);
      const r = await streamRequest(s.url, req, AbortSignal.timeout(maxSeconds * 1000));
      if (!r.ok || r.ttft === undefined) throw new Error(`prefill on ${s.side}: ${r.status} ${r.error}`);
      (ttft[s.side] ??= []).push(r.ttft);
      log(`prefill rep ${rep} ${s.side}: TTFT ${f1(r.ttft)} ms`);
    }
  }
  const ratios = (ttft.llama ?? []).map((l, k) => l / ttft.openlora[k]);
  const out = { promptTokens: PREFILL_LEN, openloraTtftMs: ttft.openlora, llamacppTtftMs: ttft.llama ?? null, openloraMedianMs: med(ttft.openlora), llamacppMedianMs: ttft.llama ? med(ttft.llama) : null, speedupMedianOfPairs: ratios.length ? med(ratios) : null };
  console.log(`\nprefill ${PREFILL_LEN} tokens: TTFT openlora ${f1(out.openloraMedianMs)} ms, llama.cpp ${out.llamacppMedianMs === null ? '—' : f1(out.llamacppMedianMs)} ms (llama / ours ${out.speedupMedianOfPairs?.toFixed(2) ?? '—'}×)`);
  return out;
}

/** S-LoRA's open-loop workload on openlora: every (adapter count, popularity, rate) point. */
async function slora(url: string, probe?: ServerProbe) {
  const rows = [];
  console.log(`\nS-LoRA workload on openlora (${ENGINE_SLOTS} engine slots, ${num('slora-requests')} requests per point, lengths uniform in [8, 256)):`);
  console.log('| adapters | popularity | rate req/s | tok/s | req/s | TTFT p50/p99 ms | TPOT p50/p99 ms | ok |\n|---|---|---|---|---|---|---|---|');
  for (const count of sloraCounts) {
    for (const pop of ['uniform', 'powerlaw'] as const) {
      for (const rate of rates) {
        const wl = openLoopWorkload(num('slora-requests'), rate, count, pop, count * 7 + (pop === 'uniform' ? 1 : 2) + Math.round(rate * 1000));
        const reqs = wl.map((w, i) => completionRequest('openlora', base, adapters.names, 'slora', promptIds(700_000 + count * 10_000 + i + Math.round(rate * 100) * 1000 + (pop === 'uniform' ? 0 : 500), w.promptLen), w.maxTokens, w.adapter));
        await probe?.start();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const abort = AbortSignal.timeout(maxSeconds * 1000);
        const results: RequestResult[] = await Promise.all(
          reqs.map((r, i) => new Promise<RequestResult>((res) => setTimeout(() => res(streamRequest(url, r, abort, i)), wl[i].atMs))),
        );
        const wall = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const server = await probe?.stop();
        const st = summarize({ name: `slora-${count}-${pop}-${rate}`, description: 'S-LoRA open loop', concurrency: 0 }, results, wall, new Set(wl.map((w) => w.adapter)).size, {
          server, inProcess: false, clientLagP99Ms: NaN, clientLagIntervalP99Ms: NaN, clientPeakRssMB: process.memoryUsage.rss() / 2 ** 20, clientCpuMs: (cpu.user + cpu.system) / 1000,
        });
        const row = { adapters: count, popularity: pop, rate, distinctAdapters: st.distinctModels, tokensPerSec: st.outputTokensPerSec, requestsPerSec: st.requestsPerSec, ttftMs: st.ttftMs, tpotMs: st.tpotMs, ok: st.ok, requests: st.requests, errors: st.kinds.slora?.errors ?? {}, wallSeconds: wall, loadAvg1m: +os.loadavg()[0].toFixed(2), peakRssMB: st.peakRssMB };
        rows.push(row);
        console.log(`| ${count} | ${pop} | ${rate} | ${f1(row.tokensPerSec)} | ${row.requestsPerSec.toFixed(3)} | ${f1(row.ttftMs.p50)} / ${f1(row.ttftMs.p99)} | ${f1(row.tpotMs.p50)} / ${f1(row.tpotMs.p99)} | ${row.ok}/${row.requests} |`);
      }
    }
  }
  return rows;
}

/** CPU model and the SIMD/matrix flags that matter here, memory, commit. */
function machine() {
  const info = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = (/^flags\s*:\s*(.*)$/m.exec(info)?.[1] ?? '').split(' ').filter((f) => /^(avx|amx|fma|f16c|sse4)/.test(f));
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return null;
    }
  };
  return {
    date: new Date().toISOString(), cpuModel: os.cpus()[0]?.model ?? 'unknown', cpuCount: os.cpus().length, cpuFlags: flags,
    totalMemGB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, gitCommit: git('rev-parse', 'HEAD'),
    gitDirty: (git('status', '--porcelain', '--', '.', ':!bench') ?? '').length > 0, loadAvg1mAtEnd: +os.loadavg()[0].toFixed(2),
  };
}

/** What llama-server was built from (the bundle's commit) and with which flags. */
function llamaBuild() {
  const src = path.join(cacheDir, 'llama.cpp');
  const cache = existsSync(path.join(src, 'build', 'CMakeCache.txt')) ? readFileSync(path.join(src, 'build', 'CMakeCache.txt'), 'utf8') : '';
  const flag = (k: string) => new RegExp(`^${k}:[A-Z]+=(.*)$`, 'm').exec(cache)?.[1] ?? null;
  return {
    source: 'node-llama-cpp@3.22.1 llama/gitRelease.bundle',
    commit: (() => { try { return execFileSync('git', ['-C', src, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(); } catch { return null; } })(),
    cmake: { GGML_NATIVE: flag('GGML_NATIVE'), LLAMA_CURL: flag('LLAMA_CURL'), CMAKE_BUILD_TYPE: flag('CMAKE_BUILD_TYPE') },
  };
}
