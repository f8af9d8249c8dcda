/**
 * The console's charts: five minutes of per-second samples of the metrics `/metrics` already
 * exposes (no second source of truth): the generation-token counter, the TTFT and ITL
 * histograms (plugin/metrics.ts) and the per-model snapshot (running / waiting sequences).
 *
 * Every second the sampler reads the cumulative values; a chart point at time t is computed
 * over the window (t - WINDOW_S, t]:
 * - tokens/s = Δ openlora_generation_tokens_total / Δt;
 * - p50 / p99 = Prometheus `histogram_quantile(φ, increase(bucket[WINDOW_S]))`: the bucket
 *   holding rank φ·N, linearly interpolated between its bounds (0 below the first bucket; the
 *   largest finite bound when the rank falls in +Inf). So the quantiles are as coarse as the
 *   histogram buckets, exactly as a Grafana panel over the same metrics would show them.
 * A window without observations has no quantile (null: a gap in the chart).
 */
import type { Metric, MetricValue } from 'prom-client';
import { generationTokensTotal, itlSeconds, ttftSeconds, type ModelSnapshot } from '../metrics.ts';

/** Seconds of history kept (the charts' span). */
export const HISTORY_S = 300;
/** Seconds each chart point looks back over. */
export const WINDOW_S = 10;

/** One model's cumulative readings at one second. */
interface Sample {
  /** Unix seconds. */
  t: number;
  /** openlora_generation_tokens_total. */
  tokens: number;
  /** Cumulative bucket counts in `le` order, the last one +Inf. */
  ttft: number[];
  itl: number[];
  running: number;
  waiting: number;
}

/** Chart series of one model, column-wise (uPlot's data layout): `t` in unix seconds, values or null. */
export interface Series {
  t: number[];
  tokensPerSecond: Array<number | null>;
  ttftP50: Array<number | null>;
  ttftP99: Array<number | null>;
  itlP50: Array<number | null>;
  itlP99: Array<number | null>;
  running: number[];
  waiting: number[];
}

/** One chart point (a row of `Series`). */
export type Point = { [K in keyof Series]: Series[K][number] };

/**
 * `histogram_quantile(q, ...)` over cumulative bucket counts `cum` (upper bounds `le`, the last
 * +Inf). Returns null for an empty window.
 */
export function histogramQuantile(q: number, le: number[], cum: number[]): number | null {
  const n = cum[cum.length - 1] ?? 0;
  if (!(n > 0)) return null;
  const rank = q * n;
  for (let i = 0; i < cum.length; i++) {
    if (cum[i]! >= rank) {
      if (!Number.isFinite(le[i]!)) return i > 0 ? le[i - 1]! : null;
      const lo = i === 0 ? 0 : le[i - 1]!;
      const below = i === 0 ? 0 : cum[i - 1]!;
      const inBucket = cum[i]! - below;
      return inBucket > 0 ? lo + (le[i]! - lo) * ((rank - below) / inBucket) : le[i]!;
    }
  }
  return null;
}

/** Cumulative bucket counts of `model` from a histogram's values, in `le` order (summed over routers). */
function buckets(values: MetricValue<string>[], model: string, le: number[]): number[] {
  const out = new Array<number>(le.length).fill(0);
  for (const v of values) {
    if (v.labels.model !== model || v.labels.le === undefined) continue;
    const bound = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
    const i = le.indexOf(bound);
    if (i >= 0) out[i]! += v.value;
  }
  return out;
}

/** The `le` bounds of a histogram (from its values; +Inf last). */
function bounds(values: MetricValue<string>[]): number[] {
  const s = new Set<number>();
  for (const v of values) if (v.labels.le !== undefined) s.add(v.labels.le === '+Inf' ? Infinity : Number(v.labels.le));
  return [...s].sort((a, b) => a - b);
}

const diff = (a: number[], b: number[]) => a.map((x, i) => x - (b[i] ?? 0));

/** Per-second samples of every model of one router, kept for HISTORY_S seconds. */
export class MetricHistory {
  private readonly samples = new Map<string, Sample[]>();
  private ttftLe: number[] = [];
  private itlLe: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  /** @param snapshots per model, the router's live snapshot (plugin/index.ts; also behind /metrics). */
  constructor(private readonly snapshots: ReadonlyMap<string, () => ModelSnapshot>) {}

  /** Start sampling every `everyMs` (default 1000; the timer does not keep the process alive). */
  start(everyMs = 1000): void {
    if (this.timer) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), everyMs);
    this.timer.unref();
  }

  /** Stop sampling (idempotent). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Read every metric once and append one sample per model (drops samples older than HISTORY_S). */
  async sample(now = Date.now()): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const [tok, ttft, itl] = await Promise.all([
        (generationTokensTotal as Metric<string>).get(),
        (ttftSeconds as Metric<string>).get(),
        (itlSeconds as Metric<string>).get(),
      ]);
      if (this.ttftLe.length === 0) this.ttftLe = bounds(ttft.values);
      if (this.itlLe.length === 0) this.itlLe = bounds(itl.values);
      const t = now / 1000;
      for (const [model, snap] of this.snapshots) {
        let s: ModelSnapshot;
        try {
          s = snap();
        } catch {
          continue;
        }
        const list = this.samples.get(model) ?? [];
        list.push({
          t,
          tokens: tok.values.filter((v) => v.labels.model === model).reduce((a, v) => a + v.value, 0),
          ttft: buckets(ttft.values, model, this.ttftLe),
          itl: buckets(itl.values, model, this.itlLe),
          running: s.runningSequences,
          waiting: s.waiting + s.engineWaiting,
        });
        while (list.length > 0 && list[0]!.t < t - HISTORY_S - WINDOW_S) list.shift();
        this.samples.set(model, list);
      }
    } finally {
      this.busy = false;
    }
  }

  /** The chart point of sample `i` of `list` (window: the newest sample at least WINDOW_S older, else the oldest). */
  private point(list: Sample[], i: number): Point {
    const cur = list[i]!;
    let j = i;
    while (j > 0 && cur.t - list[j]!.t < WINDOW_S) j--;
    const old = list[j]!;
    const dt = cur.t - old.t;
    const dTtft = diff(cur.ttft, old.ttft);
    const dItl = diff(cur.itl, old.itl);
    return {
      t: Math.round(cur.t),
      tokensPerSecond: dt > 0 ? Math.max(0, cur.tokens - old.tokens) / dt : null,
      ttftP50: histogramQuantile(0.5, this.ttftLe, dTtft),
      ttftP99: histogramQuantile(0.99, this.ttftLe, dTtft),
      itlP50: histogramQuantile(0.5, this.itlLe, dItl),
      itlP99: histogramQuantile(0.99, this.itlLe, dItl),
      running: cur.running,
      waiting: cur.waiting,
    };
  }

  /** The last HISTORY_S seconds of `model` as chart series (empty arrays before the first sample). */
  series(model: string): Series {
    const list = this.samples.get(model) ?? [];
    const out: Series = { t: [], tokensPerSecond: [], ttftP50: [], ttftP99: [], itlP50: [], itlP99: [], running: [], waiting: [] };
    const newest = list[list.length - 1]?.t ?? 0;
    for (let i = 0; i < list.length; i++) {
      if (list[i]!.t < newest - HISTORY_S) continue;
      const p = this.point(list, i);
      for (const k of Object.keys(out) as Array<keyof Series>) (out[k] as unknown[]).push(p[k]);
    }
    return out;
  }

  /** The newest chart point of `model`, or undefined before the first sample. */
  latest(model: string): Point | undefined {
    const list = this.samples.get(model);
    return list && list.length > 0 ? this.point(list, list.length - 1) : undefined;
  }
}
