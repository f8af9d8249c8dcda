/**
 * The load generator: streaming chat requests through Node's fetch (SSE parsed by hand, each
 * chunk timestamped when read), a bounded pool of concurrent clients, and the per-scenario
 * figures (tokens/s, requests/s, TTFT, ITL, event-loop lag, peak RSS).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { BenchRequest, Scenario, ScenarioContext } from './scenarios.ts';

/** What one request did. Times are milliseconds from performance.now(). */
export interface RequestResult {
  /** Request number within the scenario. */
  index: number;
  kind: string;
  ok: boolean;
  /** HTTP status, 0 for a network failure, -1 for an error event inside the stream. */
  status: number;
  /** `error.code` (or a short message) of a failed request. */
  error?: string;
  /** Aborted by the --max-seconds bound. */
  aborted: boolean;
  start: number;
  end: number;
  /** Time to the first non-empty content chunk, ms. */
  ttft?: number;
  /** Time per output token after the first, ms: (end - start - ttft) / (completionTokens - 1). */
  tpot?: number;
  /** Gaps between consecutive non-empty content chunks, ms. */
  itl: number[];
  /** usage.completion_tokens (or the content-chunk count if the server sent no usage). */
  completionTokens: number;
  /** usage.prompt_tokens (0 if the server sent no usage). */
  promptTokens: number;
  usageMissing: boolean;
}

/** POST one streaming request and read its SSE stream to the end (never throws). */
export async function streamRequest(url: string, req: BenchRequest, signal: AbortSignal, index = 0): Promise<RequestResult> {
  const r: RequestResult = { index, kind: req.kind, ok: false, status: 0, aborted: false, start: performance.now(), end: 0, itl: [], completionTokens: 0, promptTokens: 0, usageMissing: true };
  let chunks = 0;
  let last = 0;
  try {
    const res = await fetch(`${url}${req.path ?? '/chat/completions'}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(req.body),
      signal,
    });
    r.status = res.status;
    if (!res.ok || !res.body) {
      const text = await res.text();
      try {
        const e = JSON.parse(text).error;
        r.error = `${e?.code ?? e?.type}: ${String(e?.message).slice(0, 50)}`;
      } catch {
        r.error = text.slice(0, 60);
      }
      return r;
    }
    const decoder = new TextDecoder();
    let buf = '';
    for await (const bytes of res.body) {
      const now = performance.now();
      buf += decoder.decode(bytes, { stream: true });
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') continue;
          const msg = JSON.parse(data);
          if (msg.error) {
            r.status = -1;
            r.error = msg.error.code ?? msg.error.type ?? 'stream_error';
            return r;
          }
          if (msg.usage) {
            r.completionTokens = msg.usage.completion_tokens;
            r.promptTokens = msg.usage.prompt_tokens ?? 0;
            r.usageMissing = false;
          } else if (msg.timings?.predicted_n !== undefined) {
            // llama-server's last chunk: its own token counts (no usage without include_usage support).
            r.completionTokens = msg.timings.predicted_n;
            r.promptTokens = msg.timings.prompt_n ?? 0;
            r.usageMissing = false;
          }
          const choice = msg.choices?.[0];
          const content = choice?.delta?.content ?? choice?.text; // chat / completions
          if (typeof content === 'string' && content.length > 0) {
            if (chunks === 0) r.ttft = now - r.start;
            else r.itl.push(now - last);
            last = now;
            chunks++;
          }
        }
      }
    }
    if (r.usageMissing) r.completionTokens = chunks;
    if (r.ttft !== undefined && r.completionTokens > 1) r.tpot = (performance.now() - r.start - r.ttft) / (r.completionTokens - 1);
    r.ok = true;
  } catch (e) {
    if (signal.aborted) r.aborted = true;
    else {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      r.error = (cause?.code ?? cause?.message ?? (e as Error).message).slice(0, 60);
    }
  } finally {
    r.end = performance.now();
  }
  return r;
}

const LAG_RESOLUTION_MS = 10;
const lateness = (ns: number) => Math.max(0, ns / 1e6 - LAG_RESOLUTION_MS);

/** Nearest-rank percentile (p in 0..100) of `xs`; NaN when empty. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Figures of one request kind inside a scenario. */
export interface KindStats {
  ok: number;
  /** Failures by "status code" (e.g. "400 merge_not_supported"), with counts. */
  errors: Record<string, number>;
  completionTokens: number;
  /** Mean over successful requests of completion_tokens / request duration. */
  perStreamTokensPerSec: number;
  /** This kind's per-stream tokens/s divided by the scenario's baseline kind's. */
  vsBaselineKind?: number;
}

/** The server's own figures over a scenario, when it runs in another process (bench/server.ts). */
export interface ServerMeasure {
  /** Event-loop lag: the delay timer's lateness (recorded interval minus the 10 ms resolution). */
  lagP99Ms: number;
  lagMaxMs: number;
  /** The raw histogram p99 (interval between timer ticks, floor 10 ms), as reported before. */
  intervalP99Ms: number;
  peakRssMB: number;
  /** CPU time of the whole server process (JS thread + engine threads), ms. */
  cpuMs: number;
}

/** Start/stop of the server-side measurement around a scenario. */
export interface ServerProbe {
  start(): Promise<void>;
  stop(): Promise<ServerMeasure>;
}

/** Figures of one scenario run. */
export interface ScenarioStats {
  scenario: string;
  description: string;
  concurrency: number;
  requests: number;
  ok: number;
  failed: number;
  aborted: number;
  wallSeconds: number;
  outputTokensPerSec: number;
  requestsPerSec: number;
  ttftMs: { p50: number; p99: number };
  /** Per request (end - first token) / (tokens - 1), ms: p50 / p99 over requests. */
  tpotMs: { p50: number; p99: number };
  itlMs: { p50: number; p99: number };
  /**
   * Event-loop lag p99 of the server (its own process; in-process: the one shared loop's): how late
   * a 10 ms timer fires (the histogram's interval minus 10 ms; before 2026-11-29 the interval itself).
   */
  eventLoopLagP99Ms: number;
  /** The raw histogram p99 (interval between 10 ms timer ticks), comparable with older results. */
  eventLoopIntervalP99Ms: number;
  /** Peak RSS of the server process (in-process: of the one process). */
  peakRssMB: number;
  /** Where lag and RSS were measured: `server process`, `shared process` (in-process) or `client process` (--url). */
  measuredIn: 'server process' | 'shared process' | 'client process';
  /** The bench (client) process's own event-loop delay p99 and peak RSS. */
  clientLagP99Ms: number;
  clientPeakRssMB: number;
  /** Server process: its max event-loop delay and CPU ms (all threads) per output token. */
  serverLagMaxMs?: number;
  serverCpuMsPerToken?: number;
  /** The bench client process's CPU ms per output token (it shares the machine's CPUs with the server). */
  clientCpuMsPerToken?: number;
  /** outputTokensPerSec / baseline's, when the baseline ran in the same run. */
  baseline?: string;
  ratioToBaseline?: number;
  usageMissing: number;
  /** Prompt tokens per successful request (server's usage.prompt_tokens). */
  promptTokens: { mean: number; min: number; max: number };
  /** Distinct `model` strings among the requests sent. */
  distinctModels: number;
  /** 1-minute load average when the scenario started (above the CPU count: neighbours took CPU). */
  loadAvg1m?: number;
  /** With --repeat N: every run's output tokens/s, in run order (these stats are the median run's). */
  repeatTokensPerSec?: number[];
  /** The kind `kinds[*].vsBaselineKind` divides by. */
  baselineKind?: string;
  kinds: Record<string, KindStats>;
}

/**
 * Run `scenario`: `requests` requests, `concurrency` at a time, against `url`. No new
 * request starts after `maxSeconds`; those still in flight then are aborted and counted.
 */
export async function runScenario(
  url: string,
  base: string,
  scenario: Scenario,
  requests: number,
  maxSeconds: number,
  ctx: ScenarioContext,
  where: { inProcess: boolean; probe?: ServerProbe } = { inProcess: false },
): Promise<ScenarioStats> {
  // The histogram records intervals between 10 ms ticks: lag = interval - 10 ms (see bench/server.ts).
  const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
  let peakRss = process.memoryUsage.rss();
  const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 50);
  const abort = new AbortController();
  const deadline = setTimeout(() => abort.abort(), maxSeconds * 1000);
  const results: RequestResult[] = [];
  const models = new Set<string>();
  let next = 0;
  await where.probe?.start();
  const cpu0 = process.cpuUsage();
  lag.enable();
  const t0 = performance.now();
  const worker = async () => {
    while (next < requests && !abort.signal.aborted) {
      const i = next++;
      const req = scenario.request(i, base, ctx);
      models.add(String(req.body.model));
      results.push(await streamRequest(url, req, abort.signal, i));
    }
  };
  await Promise.all(Array.from({ length: Math.min(scenario.concurrency, requests) }, worker));
  const wall = (performance.now() - t0) / 1000;
  lag.disable();
  clearTimeout(deadline);
  clearInterval(rssTimer);
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  const cpu = process.cpuUsage(cpu0);
  const server = await where.probe?.stop();
  results.sort((a, b) => a.index - b.index); // kinds then list in request order

  return summarize(scenario, results, wall, models.size, {
    server,
    inProcess: where.inProcess,
    clientLagP99Ms: lateness(lag.percentile(99)),
    clientLagIntervalP99Ms: lag.percentile(99) / 1e6,
    clientPeakRssMB: peakRss / 2 ** 20,
    clientCpuMs: (cpu.user + cpu.system) / 1000,
  });
}

/** What the client side measured around a scenario (for summarize). */
export interface ClientMeasure {
  server?: ServerMeasure;
  inProcess: boolean;
  clientLagP99Ms: number;
  clientLagIntervalP99Ms: number;
  clientPeakRssMB: number;
  clientCpuMs: number;
}

/**
 * The figures of one scenario run from its requests' results (`results` sorted by index):
 * tokens/s and requests/s over `wall` seconds, TTFT / TPOT / ITL percentiles, per-kind figures.
 */
export function summarize(
  scenario: Pick<Scenario, 'name' | 'description' | 'concurrency' | 'baselineKind'>,
  results: RequestResult[],
  wall: number,
  distinctModels: number,
  m: ClientMeasure,
): ScenarioStats {
  const { server } = m;
  const ok = results.filter((r) => r.ok);
  const tokens = ok.reduce((n, r) => n + r.completionTokens, 0);
  const ttft = ok.flatMap((r) => (r.ttft === undefined ? [] : [r.ttft]));
  const itl = ok.flatMap((r) => r.itl);
  const tpot = ok.flatMap((r) => (r.tpot === undefined ? [] : [r.tpot]));
  const kinds: Record<string, KindStats> = {};
  for (const r of results) {
    const k = (kinds[r.kind] ??= { ok: 0, errors: {}, completionTokens: 0, perStreamTokensPerSec: 0 });
    if (r.ok) {
      k.ok++;
      k.completionTokens += r.completionTokens;
      k.perStreamTokensPerSec += r.completionTokens / ((r.end - r.start) / 1000);
    } else if (!r.aborted) {
      const key = `${r.status} ${r.error ?? ''}`.trim();
      k.errors[key] = (k.errors[key] ?? 0) + 1;
    }
  }
  for (const k of Object.values(kinds)) k.perStreamTokensPerSec = k.ok ? k.perStreamTokensPerSec / k.ok : 0;
  const bk = scenario.baselineKind ? kinds[scenario.baselineKind] : undefined;
  if (bk && bk.perStreamTokensPerSec > 0)
    for (const k of Object.values(kinds)) if (k.ok) k.vsBaselineKind = k.perStreamTokensPerSec / bk.perStreamTokensPerSec;
  return {
    scenario: scenario.name,
    description: scenario.description,
    concurrency: scenario.concurrency,
    requests: results.length,
    ok: ok.length,
    failed: results.filter((r) => !r.ok && !r.aborted).length,
    aborted: results.filter((r) => r.aborted).length,
    wallSeconds: wall,
    outputTokensPerSec: tokens / wall,
    requestsPerSec: ok.length / wall,
    ttftMs: { p50: percentile(ttft, 50), p99: percentile(ttft, 99) },
    tpotMs: { p50: percentile(tpot, 50), p99: percentile(tpot, 99) },
    itlMs: { p50: percentile(itl, 50), p99: percentile(itl, 99) },
    eventLoopLagP99Ms: server ? server.lagP99Ms : m.clientLagP99Ms,
    eventLoopIntervalP99Ms: server ? server.intervalP99Ms : m.clientLagIntervalP99Ms,
    peakRssMB: server ? server.peakRssMB : m.clientPeakRssMB,
    measuredIn: server ? 'server process' : m.inProcess ? 'shared process' : 'client process',
    clientLagP99Ms: m.clientLagP99Ms,
    clientPeakRssMB: m.clientPeakRssMB,
    serverLagMaxMs: server?.lagMaxMs,
    serverCpuMsPerToken: server && tokens > 0 ? server.cpuMs / tokens : undefined,
    clientCpuMsPerToken: tokens > 0 ? m.clientCpuMs / tokens : undefined,
    usageMissing: ok.filter((r) => r.usageMissing).length,
    promptTokens: {
      mean: ok.length ? ok.reduce((n, r) => n + r.promptTokens, 0) / ok.length : NaN,
      min: ok.length ? Math.min(...ok.map((r) => r.promptTokens)) : NaN,
      max: ok.length ? Math.max(...ok.map((r) => r.promptTokens)) : NaN,
    },
    distinctModels,
    baselineKind: bk ? scenario.baselineKind : undefined,
    kinds,
  };
}
