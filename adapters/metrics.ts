/**
 * Prometheus metrics of the adapter tiers, created once per process on prom-client's default
 * registry (the gateway serves `/metrics` from it) and labelled by base `model`.
 *
 * Tiers: `disk` (adapter files present locally: a scanned folder, or the download cache),
 * `host` (header parsed, spec validated, file read once: adapters/host-cache.ts), `device`
 * (an engine slot). Several servers may run in one process (tests): metrics are looked up in
 * the registry before being created, so a second import or a second manager never registers
 * twice; counters of managers serving the same model name add up.
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
    name: 'openlora_adapter_loads_total', help: 'Fills of a tier: downloads (disk), header parse + read (host), engine uploads (device)', labelNames: labels,
  })),
  failures: once('openlora_adapter_load_failures_total', () => new client.Counter({
    name: 'openlora_adapter_load_failures_total', help: 'Failed fills of a tier (bad file, refused download, engine refusal)', labelNames: labels,
  })),
  evictions: once('openlora_adapter_evictions_total', () => new client.Counter({
    name: 'openlora_adapter_evictions_total', help: 'LRU evictions from a tier', labelNames: labels,
  })),
  loadSeconds: once('openlora_adapter_load_seconds', () => new client.Histogram({
    name: 'openlora_adapter_load_seconds', help: 'Time to fill a tier (disk: download; host: parse + validate + read; device: upload)',
    labelNames: labels, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  })),
  resident: once('openlora_adapter_resident', () => new client.Gauge({
    name: 'openlora_adapter_resident', help: 'Adapters currently in the tier', labelNames: labels,
  })),
  pinned: once('openlora_adapter_pinned', () => new client.Gauge({
    name: 'openlora_adapter_pinned', help: 'Adapters pinned by in-flight requests', labelNames: ['model'] as const,
  })),
};
