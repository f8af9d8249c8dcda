/**
 * Prometheus metrics of the adapter tiers, created once per process on prom-client's default
 * registry (the gateway serves `/metrics` from it) and labelled by base `model`.
 *
 * Tiers: `disk` (downloaded adapter folders: adapters/sources.ts), `host` (validated load
 * specs, weights files pre-read into the OS page cache: adapters/spec-cache.ts), `device` (an
 * engine slot: adapters/slot-pool.ts). Several servers may run in one process (tests): metrics
 * are looked up in the registry before being created, so a second import or a second manager
 * never registers twice; counters of managers serving the same model name add up.
 *
 * Every event is counted once, by `TierMetrics`: it bumps the Prometheus counter and the
 * per-manager count that `AdapterManager.stats()` reports.
 */
import client from 'prom-client';

/** One of the three residency tiers. */
export type Tier = 'disk' | 'host' | 'device';

function once<T>(name: string, make: () => T): T {
  return (client.register.getSingleMetric(name) as T | undefined) ?? make();
}

const labels = ['model', 'tier'] as const;

/** The adapter metrics (module-level singletons). */
export const adapterMetrics = {
  hits: once('openlora_adapter_cache_hits_total', () => new client.Counter({
    name: 'openlora_adapter_cache_hits_total', help: 'Adapter acquires that found the adapter already in the tier', labelNames: labels,
  })),
  misses: once('openlora_adapter_cache_misses_total', () => new client.Counter({
    name: 'openlora_adapter_cache_misses_total', help: 'Adapter acquires that had to fill the tier', labelNames: labels,
  })),
  loads: once('openlora_adapter_loads_total', () => new client.Counter({
    name: 'openlora_adapter_loads_total', help: 'Fills of a tier: downloads (disk), header parse + validation + pre-read (host), engine upload attempts (device)', labelNames: labels,
  })),
  failures: once('openlora_adapter_load_failures_total', () => new client.Counter({
    name: 'openlora_adapter_load_failures_total', help: 'Failed fills of a tier (bad file, refused download, engine refusal)', labelNames: labels,
  })),
  evictions: once('openlora_adapter_evictions_total', () => new client.Counter({
    name: 'openlora_adapter_evictions_total', help: 'LRU evictions from a tier', labelNames: labels,
  })),
  loadSeconds: once('openlora_adapter_load_seconds', () => new client.Histogram({
    name: 'openlora_adapter_load_seconds', help: 'Time to fill a tier (disk: download; host: parse + validate + pre-read; device: upload)',
    labelNames: labels, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  })),
  resident: once('openlora_adapter_resident', () => new client.Gauge({
    name: 'openlora_adapter_resident', help: 'Adapters currently in the tier', labelNames: labels,
  })),
  pinned: once('openlora_adapter_pinned', () => new client.Gauge({
    name: 'openlora_adapter_pinned', help: 'Adapters pinned by in-flight requests', labelNames: ['model'] as const,
  })),
};

/** Counts of one tier (one manager): what `stats()` reports and Prometheus sums over managers. */
export interface TierCounts {
  /** Lookups that found the adapter in the tier. */
  hits: number;
  /** Lookups that started a fill of the tier (one per single-flight). */
  misses: number;
  /** Fills: downloads (disk), spec builds (host), upload attempts (device). */
  loads: number;
  /** Failed fills. */
  failures: number;
  /** LRU evictions. */
  evictions: number;
}

/** The adapter metrics of one manager: each event updates its count and the Prometheus series once. */
export class TierMetrics {
  /** Per tier counts since this manager started. */
  readonly counts: Record<Tier, TierCounts> = {
    disk: { hits: 0, misses: 0, loads: 0, failures: 0, evictions: 0 },
    host: { hits: 0, misses: 0, loads: 0, failures: 0, evictions: 0 },
    device: { hits: 0, misses: 0, loads: 0, failures: 0, evictions: 0 },
  };

  /** @param model The base model's served name (the `model` label); null: count only, export nothing (a component used alone). */
  constructor(readonly model: string | null) {}

  /** One event of `tier`. */
  count(tier: Tier, event: keyof TierCounts): void {
    this.counts[tier][event]++;
    if (this.model !== null) adapterMetrics[event].inc({ model: this.model, tier });
  }

  /** A successful fill of `tier` that took `seconds` (counted by `count(tier, 'loads')` separately). */
  observeLoad(tier: Tier, seconds: number): void {
    if (this.model !== null) adapterMetrics.loadSeconds.observe({ model: this.model, tier }, seconds);
  }

  /** Gauges: adapters in each tier and adapters pinned now. */
  occupancy(resident: Record<Tier, number>, pinned: number): void {
    if (this.model === null) return;
    for (const tier of ['disk', 'host', 'device'] as const) adapterMetrics.resident.set({ model: this.model, tier }, resident[tier]);
    adapterMetrics.pinned.set({ model: this.model }, pinned);
  }
}
