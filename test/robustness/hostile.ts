/**
 * Generated malformed and hostile request bodies (deterministic per seed), and a runner that
 * sends them to a listening gateway and tallies the statuses. Every answer must be < 500, and
 * every 4xx an OpenAI error body.
 */
import { rng } from './gen-adapters.ts';

/** One request to send: raw bytes, and whether a 2xx is acceptable (the body may be valid). */
export interface HostileCase {
  kind: string;
  path: '/chat/completions' | '/completions';
  body: string | Buffer;
}

const LONG_PROMPT = Array.from({ length: 505 }, (_, i) => 1 + (i % 900)); // leaves ~7 tokens of context

/** `count` cases drawn from every category, deterministic for `seed`. */
export function hostileCases(count: number, seed = 1): HostileCase[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const chat = (extra: Record<string, unknown>) => ({ model: 'tiny-shakespeare:shout', messages: [{ role: 'user', content: 'Speak.' }], max_tokens: 1, ...extra });
  const weird: unknown[] = [null, true, false, 0, -1, 1.5, 1e308, -1e308, 2 ** 63, '', 'x', 'NaN', [], [1, 2], {}, { a: 1 }, '\u0000', '\ud800', 'x'.repeat(10_000)];
  const fields = ['model', 'messages', 'max_tokens', 'temperature', 'top_p', 'top_k', 'n', 'stop', 'seed', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'stream', 'stream_options', 'user', 'adapters', 'merge', 'logprobs', 'top_logprobs', 'tools', 'response_format', 'max_completion_tokens'];
  const gens: Array<[string, () => HostileCase]> = [
    ['wrong-type', () => ({ kind: 'wrong-type', path: '/chat/completions', body: JSON.stringify(chat({ [pick(fields)]: pick(weird) })) })],
    ['wrong-type-2', () => ({ kind: 'wrong-type-2', path: '/completions', body: JSON.stringify({ model: 'tiny-shakespeare', prompt: pick(weird), max_tokens: 1, [pick(fields)]: pick(weird) }) })],
    ['huge-number', () => ({ kind: 'huge-number', path: '/chat/completions', body: `{"model":"tiny-shakespeare","messages":[{"role":"user","content":"x"}],"${pick(['max_tokens', 'n', 'seed', 'temperature', 'top_k'])}":${pick(['1e999', '-1e999', '123456789012345678901234567890', '1e308', '-0', '4.9e-324'])}}` })],
    ['huge-string', () => ({ kind: 'huge-string', path: '/chat/completions', body: JSON.stringify(chat({ [pick(['model', 'user', 'stop'])]: 'A'.repeat(200_000 + Math.floor(r() * 1000)) })) })],
    ['huge-content', () => ({ kind: 'huge-content', path: '/completions', body: JSON.stringify({ model: 'tiny-shakespeare', prompt: 'thee '.repeat(5000), max_tokens: 1 }) })],
    ['deep-nesting', () => {
      const d = pick([100, 1000, 100_000]);
      return { kind: 'deep-nesting', path: '/chat/completions', body: `{"model":"tiny-shakespeare","messages":${'['.repeat(d)}${']'.repeat(d)}}` };
    }],
    ['deep-object', () => {
      const d = pick([50, 5000]);
      return { kind: 'deep-object', path: '/chat/completions', body: `{"model":"tiny-shakespeare","merge":${'{"a":'.repeat(d)}1${'}'.repeat(d)},"messages":[{"role":"user","content":"x"}],"max_tokens":1}` };
    }],
    ['invalid-utf8', () => {
      const b = Buffer.from(JSON.stringify(chat({ user: 'XXXX' })));
      const i = b.indexOf('XXXX');
      b[i] = 0xff;
      b[i + 1] = 0xc3;
      b[i + 2] = 0x28;
      return { kind: 'invalid-utf8', path: '/chat/completions', body: b };
    }],
    ['unknown-fields', () => ({ kind: 'unknown-fields', path: '/chat/completions', body: JSON.stringify(chat({ ['x_' + Math.floor(r() * 1e6)]: pick(weird), __proto__x: 1, constructor: { prototype: 1 } })) })],
    ['proto', () => ({ kind: 'proto', path: '/chat/completions', body: '{"model":"tiny-shakespeare","messages":[{"role":"user","content":"x"}],"max_tokens":1,"__proto__":{"stream":true,"n":9}}' })],
    ['nan-literal', () => ({ kind: 'nan-literal', path: '/chat/completions', body: `{"model":"tiny-shakespeare","messages":[],"temperature":${pick(['NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '01'])}}` })],
    ['giant-n', () => ({ kind: 'giant-n', path: '/completions', body: JSON.stringify({ model: 'tiny-shakespeare', prompt: 'x', max_tokens: 1, n: pick([17, 1000, 1e9, 2 ** 31]) }) })],
    ['giant-max-tokens', () => ({ kind: 'giant-max-tokens', path: '/completions', body: JSON.stringify({ model: 'tiny-shakespeare', prompt: LONG_PROMPT, max_tokens: pick([1e6, 2 ** 31, Number.MAX_SAFE_INTEGER, 2 ** 60]) }) })],
    ['logit-bias-range', () => ({ kind: 'logit-bias-range', path: '/chat/completions', body: JSON.stringify(chat({ logit_bias: { [pick(['1024', '99999999', '-1', '1e3', '0x1', '18446744073709551616'])]: pick([1, 101, -1000, 5]) } })) })],
    ['logit-bias-many', () => ({ kind: 'logit-bias-many', path: '/chat/completions', body: JSON.stringify(chat({ logit_bias: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [String(i), 1])) })) })],
    ['stop-thousands', () => ({ kind: 'stop-thousands', path: '/chat/completions', body: JSON.stringify(chat({ stop: Array.from({ length: 1000 + Math.floor(r() * 4000) }, (_, i) => `s${i}`) })) })],
    ['messages-thousands', () => ({ kind: 'messages-thousands', path: '/chat/completions', body: JSON.stringify(chat({ messages: Array.from({ length: 3000 }, () => ({ role: 'user', content: 'x' })) })) })],
    ['bad-json', () => ({ kind: 'bad-json', path: pick(['/chat/completions', '/completions'] as const), body: pick(['', '{', '}', '[]', 'null', '"x"', '{"model":', '{"a":1,}', '\u0000', '{"model":"tiny-shakespeare"']) })],
    ['bad-prompt-ids', () => ({ kind: 'bad-prompt-ids', path: '/completions', body: JSON.stringify({ model: 'tiny-shakespeare', prompt: pick([[-1], [1.5], [1e12], [[]], [[1], 'x'], []]), max_tokens: 1 }) })],
    ['bad-model', () => ({ kind: 'bad-model', path: '/chat/completions', body: JSON.stringify(chat({ model: pick(['tiny-shakespeare:', ':', 'tiny-shakespeare:shout@', 'tiny-shakespeare:shout@NaN+x', 'tiny-shakespeare:a@1e400', '../../etc/passwd', 'tiny-shakespeare:' + '+'.repeat(5000)]) })) })],
    // Merge fields over the demo adapters (mixed ranks 16/8/4, q/v-only, rsLoRA): any strategy but
    // the slow SVD ones (test/merge/fuzz.test.ts covers those), weights and options mostly valid.
    ['fuzz-merge', () => {
      const adapters = Array.from({ length: 1 + Math.floor(r() * 3) }, () => ({ name: pick(['shout', 'whisper', 'romeo', 'rs', 'nope']), weight: pick([1, 0.5, -0.7, 0, 2, 1e-30]) }));
      const merge = {
        strategy: pick(['linear', 'cat', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune', 'ensemble', 'x']),
        density: pick([undefined, 0.5, 1, 0, 2]),
        majority_sign_method: pick([undefined, 'total', 'frequency', 'y']),
        seed: pick([undefined, 3, -1]),
        svd_rank: pick([undefined, 65, 0]),
      };
      return { kind: 'fuzz-merge', path: pick(['/chat/completions', '/completions'] as const), body: JSON.stringify({ model: 'tiny-shakespeare', messages: [{ role: 'user', content: 'x' }], prompt: 'x', max_tokens: 1, adapters, merge }) };
    }],
    ['bad-merge', () => ({ kind: 'bad-merge', path: '/chat/completions', body: JSON.stringify(chat({ model: 'tiny-shakespeare', adapters: pick([[], [{ name: 'shout', weight: 'x' }], [{ name: 'shout', weight: 1e308 }], Array.from({ length: 100 }, () => ({ name: 'shout', weight: 1 }))]), merge: pick([{ strategy: 'nope' }, { strategy: 'ties', density: 5 }, null]) })) })],
  ];
  return Array.from({ length: count }, (_, i) => gens[i % gens.length]![1]());
}

/** Send every case (with `concurrency` in flight) and tally statuses; `bad` lists contract violations. */
export async function sendHostile(
  baseUrl: string,
  cases: HostileCase[],
  concurrency = 8,
): Promise<{ byStatus: Record<string, number>; bad: string[] }> {
  const byStatus: Record<string, number> = {};
  const bad: string[] = [];
  let next = 0;
  async function worker() {
    while (next < cases.length) {
      const c = cases[next++]!;
      let status = 0;
      let text = '';
      try {
        const res = await fetch(baseUrl + c.path, { method: "POST", headers: { "content-type": "application/json" }, body: c.body as unknown as BodyInit });
        status = res.status;
        text = await res.text();
      } catch (err) {
        bad.push(`${c.kind}: transport error ${(err as Error).message}`);
        continue;
      }
      byStatus[status] = (byStatus[status] ?? 0) + 1;
      if (status >= 500) bad.push(`${c.kind}: ${status} ${text.slice(0, 200)}`);
      else if (status >= 400) {
        try {
          const e = JSON.parse(text).error;
          if (typeof e?.message !== 'string' || typeof e?.type !== 'string' || !('param' in e) || !('code' in e)) bad.push(`${c.kind}: not an OpenAI error body: ${text.slice(0, 200)}`);
        } catch {
          bad.push(`${c.kind}: ${status} non-JSON body: ${text.slice(0, 200)}`);
        }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { byStatus, bad };
}
