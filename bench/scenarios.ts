/**
 * Benchmark workloads. Each scenario is a small entry: how many streams run at once, how
 * many requests it sends by default, and what request `i` looks like (`kind` names a request
 * class that is reported separately; `baseline` names the scenario its tokens/s is compared
 * to, measured in the same run). Add a scenario by appending an entry to SCENARIOS.
 *
 * Every request uses fixed prompts, temperature 0.8 with a per-index seed, max_tokens 64 and
 * a logit_bias that forbids the end tokens (1020, 1023), so generations run to max_tokens and
 * request `i` is the same work in every scenario that shares a request builder.
 */

/** One request of a scenario: a label for per-kind figures and the JSON body. */
export interface BenchRequest {
  kind: string;
  body: Record<string, unknown>;
}

export interface Scenario {
  name: string;
  description: string;
  /** Streams in flight at once. */
  concurrency: number;
  /** Requests sent when `--requests` is not given. */
  defaultRequests: number;
  /** Request number `i` (0-based) for base model `base`. */
  request(i: number, base: string): BenchRequest;
  /** Scenario whose tokens/s this one is divided by (this / baseline); run first, in the same run. */
  baseline?: string;
  /** Within this scenario, the kind the other kinds' per-stream tokens/s are divided by. */
  baselineKind?: string;
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
    name: 'adapters-16',
    description: '16 concurrent streams over shout/whisper/romeo/rs, uniform (ratio: / base-16)',
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
];

/** Scenario by name, or undefined. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}

/**
 * The scenarios to run for `--scenario NAME`, baselines first: `all` is every scenario in
 * table order; a single name brings its baseline chain along so its ratio is measured in the
 * same run.
 * @throws Error for an unknown name (the message lists the known ones).
 */
export function selectScenarios(name: string): Scenario[] {
  if (name === 'all') return [...SCENARIOS];
  const picked: Scenario[] = [];
  let s = findScenario(name);
  if (!s) throw new Error(`unknown scenario "${name}"; known: all, ${SCENARIOS.map((x) => x.name).join(', ')}`);
  while (s && !picked.includes(s)) {
    picked.unshift(s);
    s = s.baseline ? findScenario(s.baseline) : undefined;
  }
  return picked;
}
