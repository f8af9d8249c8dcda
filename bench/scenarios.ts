/**
 * Benchmark workloads. Each scenario is a small entry: how many streams run at once, how
 * many requests it sends by default, and what request `i` looks like (`kind` names a request
 * class that is reported separately; `baseline` names the scenario its tokens/s is compared
 * to, measured in the same run). Add a scenario by appending an entry to SCENARIOS.
 *
 * Every request uses fixed prompts, a per-index seed, max_tokens 64 and a logit_bias that
 * forbids the end tokens (1020, 1023), so generations run to max_tokens and request `i` is the
 * same work in every scenario that shares a request builder. Sampling is temperature 0.8,
 * except in the `vs-*` scenarios (greedy, to match the llama.cpp baseline).
 *
 * The `lora*` scenarios use random adapters made by bench/adapters-gen.ts (`bench-000` ...),
 * passed in through `ScenarioContext`; the long-prompt mix uses prompts that run.ts sizes
 * with the model's tokenizer.
 */

/** One request of a scenario: a label for per-kind figures and the JSON body. */
export interface BenchRequest {
  kind: string;
  body: Record<string, unknown>;
  /** Endpoint under the /v1 base URL (default `/chat/completions`; `/completions` for token-id prompts). */
  path?: '/chat/completions' | '/completions';
}

/** What run.ts prepares before the scenarios run. */
export interface ScenarioContext {
  /** Names of the generated random adapters (`bench-000`, ...), at least the most any selected scenario uses. */
  benchAdapters: string[];
  /** Long user messages (200–400 prompt tokens with the chat template), for `long-mix-16`. */
  longPrompts: string[];
}

export interface Scenario {
  name: string;
  description: string;
  /** Streams in flight at once. */
  concurrency: number;
  /** Requests sent when `--requests` is not given. */
  defaultRequests: number;
  /** Request number `i` (0-based) for base model `base`. */
  request(i: number, base: string, ctx: ScenarioContext): BenchRequest;
  /** Scenario whose tokens/s this one is divided by (this / baseline); run first, in the same run. */
  baseline?: string;
  /** Within this scenario, the kind the other kinds' per-stream tokens/s are divided by. */
  baselineKind?: string;
  /** Generated adapters this scenario draws from (0 / absent: none). */
  adapters?: number;
  /** How requests pick among `adapters`. */
  distribution?: 'uniform' | 'zipf';
  /** Only in `--scenario all` when this flag is not set (long runs that `all` skips). */
  notInAll?: boolean;
  /** Part of the llama.cpp comparison: `llamacpp` names the baseline measurement it is set against. */
  llamacpp?: 'single' | 'base-16' | 'mixed-16';
}

export const MAX_TOKENS = 64;
export const TEMPERATURE = 0.8;
/** Token ids of the demo tokenizer's end-of-text / end-of-turn tokens: banned so runs hit max_tokens. */
export const LOGIT_BIAS = { '1020': -100, '1023': -100 } as const;
export const DEMO_ADAPTERS = ['shout', 'whisper', 'romeo', 'rs'] as const;

/** A few Shakespeare-like chat prompts, cycled by request index. */
export const PROMPTS = [
  'ROMEO:\nBut soft, what light through yonder window breaks?',
  'KING HENRY:\nOnce more unto the breach, dear friends, once more.',
  'HAMLET:\nTo be, or not to be: that is the question.',
  'JULIET:\nWhat is in a name? That which we call a rose',
  'MACBETH:\nIs this a dagger which I see before me?',
  'PORTIA:\nThe quality of mercy is not strain\'d.',
] as const;

/** The shared request body for index `i` (prompt, seed, sampling); `extra` adds or overrides fields. */
export function chatBody(i: number, model: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model,
    messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length] }],
    max_tokens: MAX_TOKENS,
    temperature: TEMPERATURE,
    seed: 1000 + i,
    logit_bias: LOGIT_BIAS,
    stream: true,
    stream_options: { include_usage: true },
    ...extra,
  };
}

const baseRequest = (i: number, base: string): BenchRequest => ({ kind: 'base', body: chatBody(i, base) });

/** Zipf exponent of the `zipf` scenarios: P(adapter k) ∝ 1 / k^ZIPF_S, k = 1..n. */
export const ZIPF_S = 1.0;
/** Adapter counts and concurrencies of the adapter matrix. */
export const ADAPTER_COUNTS = [1, 4, 16, 64, 256] as const;
export const MATRIX_CONCURRENCY = [16, 64] as const;

const zipfCdfs = new Map<number, Float64Array>();
function zipfCdf(n: number): Float64Array {
  let cdf = zipfCdfs.get(n);
  if (!cdf) {
    cdf = new Float64Array(n);
    let acc = 0;
    for (let k = 0; k < n; k++) cdf[k] = acc += 1 / Math.pow(k + 1, ZIPF_S);
    for (let k = 0; k < n; k++) cdf[k] /= acc;
    zipfCdfs.set(n, cdf);
  }
  return cdf;
}

/** A float in [0, 1) that depends only on `i` (request-level determinism). */
function hash01(i: number): number {
  let x = (i + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return ((x ^ (x >>> 16)) >>> 0) / 4294967296;
}

/**
 * Which of `n` adapters request `i` uses: `uniform` is round-robin (every window of n
 * consecutive requests covers all n, so 64 streams over 64 adapters really run 64 distinct
 * adapters at once); `zipf` draws from P(k) ∝ 1/k^ZIPF_S with a per-request hash.
 */
export function pickAdapter(i: number, n: number, dist: 'uniform' | 'zipf'): number {
  if (dist === 'uniform') return i % n;
  const u = hash01(i);
  const cdf = zipfCdf(n);
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] < u) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function adapterMatrix(): Scenario[] {
  const out: Scenario[] = [];
  for (const conc of MATRIX_CONCURRENCY) {
    for (const dist of ['uniform', 'zipf'] as const) {
      for (const n of ADAPTER_COUNTS) {
        if (n === 1 && dist === 'zipf') continue; // one adapter: both distributions are the same workload
        out.push({
          name: `lora${n}-${dist}-c${conc}`,
          description: `${conc} concurrent streams over ${n} random adapter${n > 1 ? 's' : ''} (${n === 1 ? 'uniform = zipf' : dist}) (ratio: / base-${conc})`,
          concurrency: conc,
          defaultRequests: conc === 16 ? 64 : 128,
          adapters: n,
          distribution: dist,
          request: (i, base, ctx) => ({ kind: 'lora', body: chatBody(i, `${base}:${ctx.benchAdapters[pickAdapter(i, n, dist)]}`) }),
          baseline: `base-${conc}`,
        });
      }
    }
  }
  return out;
}

/**
 * The `structured-16` schema: an object whose one required field is an array of free strings,
 * so a constrained answer can run long (up to max_tokens) like the unconstrained ones.
 */
export const STRUCTURED_FORMAT = {
  type: 'json_schema',
  json_schema: {
    name: 'lines',
    strict: true,
    schema: {
      type: 'object',
      properties: { speaker: { type: 'string' }, lines: { type: 'array', items: { type: 'string' } } },
      required: ['speaker', 'lines'],
      additionalProperties: false,
    },
  },
} as const;

/** Greedy bodies for the llama.cpp comparison (same prompts, same 64 tokens; end tokens banned). */
const greedy = (i: number, model: string) => chatBody(i, model, { temperature: 0 });

export const SCENARIOS: Scenario[] = [
  {
    name: 'single',
    description: '1 stream at a time, base model',
    concurrency: 1,
    defaultRequests: 16,
    request: baseRequest,
  },
  {
    name: 'sequential-16',
    description: 'the requests of base-16, one after another',
    concurrency: 1,
    defaultRequests: 64,
    request: baseRequest,
  },
  {
    name: 'base-16',
    description: '16 concurrent streams, base model (ratio: base-16 / sequential-16)',
    concurrency: 16,
    defaultRequests: 64,
    request: baseRequest,
    baseline: 'sequential-16',
  },
  {
    name: 'base-64',
    description: '64 concurrent streams, base model (ratio: base-64 / base-16)',
    concurrency: 64,
    defaultRequests: 128,
    request: baseRequest,
    baseline: 'base-16',
  },
  ...adapterMatrix(),
  {
    name: 'long-mix-16',
    description: '16 concurrent, base: every other request has a 200-400 token prompt (ratio: / base-16)',
    concurrency: 16,
    defaultRequests: 64,
    request: (i, base, ctx) =>
      i % 2 === 0
        ? { kind: 'long-prompt', body: chatBody(i, base, { messages: [{ role: 'user', content: ctx.longPrompts[(i / 2) % ctx.longPrompts.length] }] }) }
        : { kind: 'short-prompt', body: chatBody(i, base) },
    baseline: 'base-16',
    baselineKind: 'short-prompt',
  },
  {
    name: 'adapters-16',
    description: '16 concurrent streams over the demo adapters shout/whisper/romeo/rs, uniform (ratio: / base-16)',
    concurrency: 16,
    defaultRequests: 64,
    request: (i, base) => {
      const a = DEMO_ADAPTERS[i % DEMO_ADAPTERS.length];
      return { kind: a, body: chatBody(i, `${base}:${a}`) };
    },
    baseline: 'base-16',
  },
  {
    name: 'merge-mix',
    description: '16 concurrent: 1/3 single adapter, 1/3 cat merge (model name), 1/3 ensemble (body)',
    concurrency: 16,
    defaultRequests: 96,
    request: (i, base) => {
      switch (i % 3) {
        case 0:
          return { kind: 'single-adapter', body: chatBody(i, `${base}:shout`) };
        case 1:
          return { kind: 'cat-merge', body: chatBody(i, `${base}:shout@0.5+whisper@0.5`) };
        default:
          return {
            kind: 'ensemble',
            body: chatBody(i, base, {
              adapters: [
                { name: 'shout', weight: 0.5 },
                { name: 'whisper', weight: 0.5 },
              ],
              merge: { strategy: 'ensemble' },
            }),
          };
      }
    },
    baseline: 'adapters-16',
    baselineKind: 'single-adapter',
  },
  {
    name: 'structured-16',
    description: '16 concurrent, base: every other request has response_format json_schema (ratio: / base-16; unconstrained per stream vs base-16)',
    concurrency: 16,
    defaultRequests: 64,
    request: (i, base) =>
      i % 2 === 0
        ? { kind: 'json-schema', body: chatBody(i, base, { response_format: STRUCTURED_FORMAT }) }
        : { kind: 'unconstrained', body: chatBody(i, base) },
    baseline: 'base-16',
    baselineKind: 'unconstrained',
  },
  // The llama.cpp comparison (run.ts runs llama.cpp's side right before each of these).
  {
    name: 'vs-single',
    description: 'greedy, 1 stream, base (vs llama.cpp single stream)',
    concurrency: 1,
    defaultRequests: 16,
    request: (i, base) => ({ kind: 'base', body: greedy(i, base) }),
    llamacpp: 'single',
  },
  {
    name: 'vs-base-16',
    description: 'greedy, 16 concurrent streams, base (vs llama.cpp 16 sequences in one context)',
    concurrency: 16,
    defaultRequests: 64,
    request: (i, base) => ({ kind: 'base', body: greedy(i, base) }),
    llamacpp: 'base-16',
  },
  {
    name: 'vs-lora16-16',
    description: 'greedy, 16 concurrent streams over 16 distinct random adapters (vs llama.cpp, 16 LoRA configurations)',
    concurrency: 16,
    defaultRequests: 64,
    adapters: 16,
    distribution: 'uniform',
    request: (i, base, ctx) => ({ kind: 'lora', body: greedy(i, `${base}:${ctx.benchAdapters[i % 16]}`) }),
    llamacpp: 'mixed-16',
  },
];

/** Named groups for `--scenario`. */
export const GROUPS: Record<string, () => Scenario[]> = {
  all: () => SCENARIOS.filter((s) => !s.notInAll),
  'vs-llamacpp': () => SCENARIOS.filter((s) => s.llamacpp),
  matrix: () => SCENARIOS.filter((s) => s.adapters && !s.llamacpp),
};

/** Scenario by name, or undefined. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}

/**
 * The scenarios to run for `--scenario NAME[,NAME...]`, baselines first: a group (`all`,
 * `vs-llamacpp`, `matrix`) or scenario names; each brings its baseline chain along so its
 * ratio is measured in the same run. Order follows SCENARIOS.
 * @throws Error for an unknown name (the message lists the known ones).
 */
export function selectScenarios(names: string): Scenario[] {
  const picked = new Set<Scenario>();
  for (const name of names.split(',').map((s) => s.trim()).filter(Boolean)) {
    const group = GROUPS[name];
    const roots = group ? group() : [findScenario(name)];
    for (let s of roots) {
      if (!s) throw new Error(`unknown scenario "${name}"; known: ${Object.keys(GROUPS).join(', ')}, ${SCENARIOS.map((x) => x.name).join(', ')}`);
      while (s && !picked.has(s)) {
        picked.add(s);
        s = s.baseline ? findScenario(s.baseline) : undefined;
      }
    }
  }
  return SCENARIOS.filter((s) => picked.has(s));
}
