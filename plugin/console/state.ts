/**
 * The console's view of one router: per base model its adapters (from the adapter provider's
 * listing), KV blocks and sequences (the snapshot `/metrics` reports) and the chart series
 * (history.ts, over the same metrics). Nothing here keeps state of its own but the SSE diff
 * of what one stream already sent.
 *
 * `GET /console/api/state` answers `ConsoleState`; `GET /console/api/events` streams it as
 * SSE: first `{type: "state", ...ConsoleState}`, then every tick `{type: "tick", time, models}`
 * where each model carries `adapters` only for rows that changed and `removed` for rows gone,
 * and `point`, the newest chart point, when a new sample exists.
 */
import type { AdapterInfo } from '../../adapters/types.ts';
import type { ModelSnapshot } from '../metrics.ts';
import type { ModelRegistry, ServedModel } from '../registry.ts';
import type { OperatorPins } from '../routes/admin-pins.ts';
import type { MetricHistory, Point, Series } from './history.ts';

/** One adapter row of the console table. */
export interface AdapterRow {
  name: string;
  /** `device` (engine slot), `host` (read and validated), `disk` or `remote` (download evicted). */
  tier: string;
  slot: number | null;
  rank: number;
  /** adapter_model.safetensors size, or null when unknown. */
  bytes: number | null;
  /** Live leases plus acquires in progress (an operator pin counts one). */
  pins: number;
  /** Pinned by an operator (POST /v1/pin_lora_adapter). */
  operatorPinned: boolean;
  /** Requests served (acquires). */
  served: number;
  /** Unix ms of the last use, or null when never used. */
  lastUsed: number | null;
}

/** One base model's live figures. */
export interface ModelState {
  name: string;
  backend: string;
  maxLoras: number;
  maxLoraRank: number;
  /** KV cache blocks (null when the engine does not report them): used by sequences, free, keeping a cached prefix. */
  kv: { total: number; used: number; free: number; cached: number } | null;
  /** Engine sequences running and waiting (waiting includes requests in the admission queue). */
  sequences: { running: number; waiting: number };
  /** Requests admitted and running, and queued for admission. */
  requests: { running: number; queued: number };
  adapters: AdapterRow[];
  /** Named compositions of this base (model strings usable in the playground). */
  compositions: string[];
}

/** What the console page and scripts read. */
export interface ConsoleState {
  object: 'console.state';
  /** Unix ms. */
  time: number;
  /** Whether the admin actions (load, unload, pin, prefetch) are mounted. */
  runtimeUpdating: boolean;
  models: ModelState[];
  /** Per model, the chart series over the last 5 minutes. */
  series: Record<string, Series>;
}

/** What the state is read from. */
export interface StateSources {
  registry: ModelRegistry;
  snapshots: ReadonlyMap<string, () => ModelSnapshot>;
  history: MetricHistory;
  pins: OperatorPins;
  runtimeUpdating: boolean;
}

function row(base: string, a: AdapterInfo, pins: OperatorPins): AdapterRow {
  return {
    name: a.name,
    tier: a.tier ?? 'disk',
    slot: a.slot ?? null,
    rank: a.rank,
    bytes: a.bytes ?? null,
    pins: a.pins ?? 0,
    operatorPinned: pins.has(base, a.name),
    served: a.served ?? 0,
    lastUsed: a.lastUsedAt ? a.lastUsedAt : null,
  };
}

function modelState(m: ServedModel, src: StateSources): ModelState {
  const snap = src.snapshots.get(m.name)?.();
  let kv: ModelState['kv'] = null;
  if (snap?.kvBlocksTotal !== undefined) {
    const total = snap.kvBlocksTotal;
    const freeOrCached = snap.kvBlocksFree ?? 0;
    const cached = snap.kvBlocksCached ?? 0;
    kv = { total, used: total - freeOrCached, free: freeOrCached - cached, cached };
  }
  const compositions = [...src.registry.compositions].filter(([, c]) => c.base === m.name).map(([name]) => name);
  return {
    name: m.name,
    backend: m.info.backend,
    maxLoras: m.info.maxLoras,
    maxLoraRank: m.info.maxLoraRank,
    kv,
    sequences: { running: snap?.runningSequences ?? 0, waiting: (snap?.engineWaiting ?? 0) + (snap?.waiting ?? 0) },
    requests: { running: snap?.runningRequests ?? 0, queued: snap?.waiting ?? 0 },
    adapters: m.adapters
      .list()
      .filter((a) => !a.synthetic)
      .map((a) => row(m.name, a, src.pins)),
    compositions,
  };
}

/** The whole state now (the JSON endpoint and the first SSE event). */
export function consoleState(src: StateSources): ConsoleState {
  const models = src.registry.list().map((m) => modelState(m, src));
  const series: Record<string, Series> = {};
  for (const m of models) series[m.name] = src.history.series(m.name);
  return { object: 'console.state', time: Date.now(), runtimeUpdating: src.runtimeUpdating, models, series };
}

/** One model of a `tick` event: changed rows only. */
export interface ModelTick extends Omit<ModelState, 'adapters'> {
  adapters: AdapterRow[];
  removed: string[];
  point?: Point;
}

/**
 * Per SSE stream: what it already sent, to send only rows that changed. Rows are compared by
 * their JSON text; thousands of rows cost a few milliseconds per tick.
 */
export class StateDiff {
  private readonly sent = new Map<string, Map<string, string>>();
  private readonly lastPoint = new Map<string, number>();

  /** Remember the full state just sent. */
  primed(state: ConsoleState): void {
    for (const m of state.models) {
      this.sent.set(m.name, new Map(m.adapters.map((r) => [r.name, JSON.stringify(r)])));
      const t = state.series[m.name]?.t;
      this.lastPoint.set(m.name, t && t.length ? t[t.length - 1]! : 0);
    }
  }

  /** The tick event for `models` (fresh `ModelState`s) against what was sent; updates the memory. */
  tick(models: ModelState[], history: MetricHistory): { type: 'tick'; time: number; models: ModelTick[] } {
    const out: ModelTick[] = [];
    for (const m of models) {
      const before = this.sent.get(m.name) ?? new Map<string, string>();
      const now = new Map<string, string>();
      const changed: AdapterRow[] = [];
      for (const r of m.adapters) {
        const s = JSON.stringify(r);
        now.set(r.name, s);
        if (before.get(r.name) !== s) changed.push(r);
      }
      const removed = [...before.keys()].filter((n) => !now.has(n));
      this.sent.set(m.name, now);
      const p = history.latest(m.name);
      const fresh = p && p.t !== this.lastPoint.get(m.name) ? p : undefined;
      if (fresh) this.lastPoint.set(m.name, fresh.t);
      out.push({ ...m, adapters: changed, removed, point: fresh });
    }
    return { type: 'tick', time: Date.now(), models: out };
  }
}

/** Fresh model states (for a tick). */
export function modelStates(src: StateSources): ModelState[] {
  return src.registry.list().map((m) => modelState(m, src));
}
