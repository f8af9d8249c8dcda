/**
 * Prometheus metrics (prom-client, default registry), created once per process.
 *
 * Several routers may live in one process (tests start many servers), so every metric is
 * labelled by base model and the gauges are computed at scrape time from the live routers'
 * snapshots (`addMetricsSource`). Adapter cache metrics come from adapters/metrics.ts on the
 * same default registry; `/metrics` serves them all.
 *
 * The `vllm:*` gauges are the model-server protocol of the Kubernetes Gateway API Inference
 * Extension: its endpoint picker reads `vllm:num_requests_waiting`, `vllm:gpu_cache_usage_perc`
 * (KV usage, 0..1) and `vllm:lora_requests_info` (labels `max_lora`, `running_lora_adapters`,
 * `waiting_lora_adapters`, comma-joined; value = unix time of the sample, as vLLM sets it).
 */
import client from 'prom-client';

/** What one router reports for one base model at scrape time. */
export interface ModelSnapshot {
  /** Requests waiting in the admission queue. */
  waiting: number;
  /** Requests admitted and running. */
  runningRequests: number;
  /** Engine sequences running (engine stats when available, else the plugin's count). */
  runningSequences: number;
  /** Prompts the engine is scoring (echo + logprobs; EngineStats.scoring), when it reports them. */
  scoringPrompts?: number;
  /** Sequences the engine itself has queued. */
  engineWaiting: number;
  /** KV cache blocks, when the engine reports them. */
  kvBlocksTotal?: number;
  /** Free blocks, counting unreferenced prefix-cache blocks as free (evictable), as vLLM does. */
  kvBlocksFree?: number;
  /** Of `kvBlocksFree`, the blocks that keep a cached prefix. */
  kvBlocksCached?: number;
  maxLoras: number;
  /** Engine memory by part in bytes (EngineStats), when the engine reports it. */
  memory?: { weights: number; kvCache: number; kvUsed: number; adapters: number };
  /** `BASE:ADAPTER` ids of running / waiting requests. */
  runningAdapters: string[];
  waitingAdapters: string[];
}

/** One base model of one router. */
export interface MetricsSource {
  model: string;
  snapshot(): ModelSnapshot;
}

const sources = new Set<MetricsSource>();

/** Report `src` at every scrape until the returned function is called. */
export function addMetricsSource(src: MetricsSource): () => void {
  sources.add(src);
  return () => sources.delete(src);
}

const register = client.register;

function once<T extends client.Metric>(name: string, make: () => T): T {
  return (register.getSingleMetric(name) as T | undefined) ?? make();
}

/** Sum per model over every live source (several routers may serve the same model name). */
function perModel(): Map<string, ModelSnapshot[]> {
  const m = new Map<string, ModelSnapshot[]>();
  for (const s of sources) {
    let snap: ModelSnapshot;
    try {
      snap = s.snapshot();
    } catch {
      continue;
    }
    const list = m.get(s.model) ?? [];
    list.push(snap);
    m.set(s.model, list);
  }
  return m;
}

const sum = (xs: ModelSnapshot[], f: (s: ModelSnapshot) => number | undefined) => xs.reduce((a, s) => a + (f(s) ?? 0), 0);

/** Requests answered, by base model (or `upstream:PATTERN`, or `none`) and HTTP status. */
export const requestsTotal = once(
  'openlora_requests_total',
  () => new client.Counter({ name: 'openlora_requests_total', help: 'HTTP requests answered, by model and status', labelNames: ['model', 'status'] }),
);

/** Prompt tokens processed, by base model. */
export const promptTokensTotal = once(
  'openlora_prompt_tokens_total',
  () => new client.Counter({ name: 'openlora_prompt_tokens_total', help: 'Prompt tokens of admitted requests', labelNames: ['model'] }),
);

/** Completion tokens generated, by base model. */
export const generationTokensTotal = once(
  'openlora_generation_tokens_total',
  () => new client.Counter({ name: 'openlora_generation_tokens_total', help: 'Completion tokens generated', labelNames: ['model'] }),
);

/** Time from the request reaching the engine queue to its first token. */
export const ttftSeconds = once(
  'openlora_time_to_first_token_seconds',
  () =>
    new client.Histogram({
      name: 'openlora_time_to_first_token_seconds',
      help: 'Time to first token (includes queueing and prefill)',
      labelNames: ['model'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
);

/** Time between consecutive tokens of one choice. */
export const itlSeconds = once(
  'openlora_inter_token_latency_seconds',
  () =>
    new client.Histogram({
      name: 'openlora_inter_token_latency_seconds',
      help: 'Inter-token latency per choice',
      labelNames: ['model'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    }),
);

function gauge(name: string, help: string, labelNames: string[], fill: (g: client.Gauge, models: Map<string, ModelSnapshot[]>) => void): void {
  once(
    name,
    () =>
      new client.Gauge({
        name,
        help,
        labelNames,
        collect() {
          this.reset();
          fill(this, perModel());
        },
      }),
  );
}

gauge('openlora_queue_depth', 'Requests waiting for admission', ['model'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model }, sum(xs, (s) => s.waiting));
});
gauge('openlora_running_requests', 'Requests admitted and running', ['model'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model }, sum(xs, (s) => s.runningRequests));
});
gauge('openlora_running_sequences', 'Engine sequences running', ['model'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model }, sum(xs, (s) => s.runningSequences));
});
gauge('openlora_scoring_prompts', 'Prompts the engine is scoring (echo with logprobs), queued or in progress', ['model'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model }, sum(xs, (s) => s.scoringPrompts ?? 0));
});
// States as the console shows them: used (held by sequences), cached (a finished prefix kept for
// reuse, evicted on demand), free; they add up to the pool. The engine counts cached blocks as free.
gauge('openlora_kv_blocks', 'KV cache blocks by state: used by sequences, cached (reusable prefixes, evictable), free', ['model', 'state'], (g, ms) => {
  for (const [model, xs] of ms) {
    if (!xs.some((s) => s.kvBlocksTotal !== undefined)) continue;
    const total = sum(xs, (s) => s.kvBlocksTotal);
    const freeOrCached = sum(xs, (s) => s.kvBlocksFree);
    const cached = sum(xs, (s) => s.kvBlocksCached);
    g.set({ model, state: 'free' }, freeOrCached - cached);
    g.set({ model, state: 'cached' }, cached);
    g.set({ model, state: 'used' }, total - freeOrCached);
  }
});
// Memory by part: weights as stored, the KV pool as sized and its used blocks, loaded adapters.
// The process's own resident set is process_resident_memory_bytes (default metrics).
gauge('openlora_memory_bytes', 'Engine memory by part (bytes): weights, kv_cache (pool as sized), kv_used (blocks held by sequences or keeping a cached prefix), adapters', ['model', 'part'], (g, ms) => {
  for (const [model, xs] of ms) {
    if (!xs.some((s) => s.memory)) continue;
    g.set({ model, part: 'weights' }, sum(xs, (s) => s.memory?.weights));
    g.set({ model, part: 'kv_cache' }, sum(xs, (s) => s.memory?.kvCache));
    g.set({ model, part: 'kv_used' }, sum(xs, (s) => s.memory?.kvUsed));
    g.set({ model, part: 'adapters' }, sum(xs, (s) => s.memory?.adapters));
  }
});
gauge('vllm:num_requests_waiting', 'Requests waiting to be processed (Gateway API Inference Extension)', ['model_name'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model_name: model }, sum(xs, (s) => s.waiting + s.engineWaiting + scoringSplit(s).queued));
});
/**
 * Prompts being scored as vLLM would count them: the engine scores one at a time (running), the
 * rest wait their turn (queued).
 */
function scoringSplit(s: ModelSnapshot): { running: number; queued: number } {
  const n = s.scoringPrompts ?? 0;
  return { running: Math.min(1, n), queued: Math.max(0, n - 1) };
}

// NOTE: like vLLM's scheduler, running and waiting count engine sequences (a preempted sequence
// is waiting, not running), plus requests still in the admission queue as waiting: no request
// is counted twice. The prompt being scored is running work too (vLLM runs it as a request, and a
// router reading this must see an engine busy with echo + logprobs as busy), the queued ones wait.
gauge('vllm:num_requests_running', 'Requests running', ['model_name'], (g, ms) => {
  for (const [model, xs] of ms) g.set({ model_name: model }, sum(xs, (s) => s.runningSequences + scoringSplit(s).running));
});
gauge('vllm:gpu_cache_usage_perc', 'KV cache usage, 0..1 (1 = full)', ['model_name'], (g, ms) => {
  for (const [model, xs] of ms) {
    const total = sum(xs, (s) => s.kvBlocksTotal);
    const free = sum(xs, (s) => s.kvBlocksFree);
    g.set({ model_name: model }, total > 0 ? (total - free) / total : 0);
  }
});
gauge(
  'vllm:lora_requests_info',
  'Running and waiting LoRA adapters; value = unix time of the sample',
  ['model_name', 'max_lora', 'running_lora_adapters', 'waiting_lora_adapters'],
  (g, ms) => {
    const now = Date.now() / 1000;
    for (const [model, xs] of ms) {
      const running = [...new Set(xs.flatMap((s) => s.runningAdapters))].sort();
      const waiting = [...new Set(xs.flatMap((s) => s.waitingAdapters))].sort();
      g.set(
        {
          model_name: model,
          max_lora: String(Math.max(...xs.map((s) => s.maxLoras))),
          running_lora_adapters: running.join(','),
          waiting_lora_adapters: waiting.join(','),
        },
        now,
      );
    }
  },
);

if (!register.getSingleMetric('process_resident_memory_bytes')) client.collectDefaultMetrics();

/** The Prometheus text of the default registry (openlora, adapters, process metrics). */
export async function scrape(): Promise<{ contentType: string; text: string }> {
  return { contentType: register.contentType, text: await register.metrics() };
}
