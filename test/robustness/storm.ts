/**
 * Disconnect storm and load helpers over a running demo gateway with many adapters.
 */
import type { RunningServer } from '../../examples/server.ts';
import { rng } from './gen-adapters.ts';

/** Engine and adapter counters that must return to idle. */
export function idleState(srv: RunningServer) {
  const { engine, adapters } = srv.openlora.models.get('tiny-shakespeare')!;
  const st = engine.stats() as { running: number; waiting: number; kvBlocksTotal?: number; kvBlocksFree?: number; kvBlocksCached?: number };
  const leakedBlocks = st.kvBlocksTotal === undefined ? 0 : st.kvBlocksTotal - st.kvBlocksFree! - (st.kvBlocksCached ?? 0);
  return { running: st.running, waiting: st.waiting, pinned: adapters.stats().pinned, leakedBlocks, inFlight: srv.openlora.router.inFlight };
}

/** Wait until the engine is idle, nothing is pinned and no block is referenced (or time out). */
export async function waitIdle(srv: RunningServer, ms = 20_000): Promise<ReturnType<typeof idleState>> {
  const t0 = Date.now();
  for (;;) {
    const s = idleState(srv);
    if ((s.running === 0 && s.waiting === 0 && s.pinned === 0 && s.leakedBlocks === 0 && s.inFlight === 0) || Date.now() - t0 > ms) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Result of a batch of requests. */
export interface LoadResult {
  requests: number;
  cut: number;
  byStatus: Record<string, number>;
  errors: string[];
}

/**
 * Send `requests` streaming chat requests over `models`, `concurrency` at a time; a `cutFraction`
 * of clients abort at a random point (before the answer, or after 0..6 chunks).
 */
export async function storm(
  url: string,
  opts: { requests: number; models: string[]; concurrency: number; cutFraction: number; seed: number; maxTokens?: [number, number]; stream?: number },
): Promise<LoadResult> {
  const r = rng(opts.seed);
  const out: LoadResult = { requests: 0, cut: 0, byStatus: {}, errors: [] };
  let next = 0;
  const [lo, hi] = opts.maxTokens ?? [4, 24];
  async function one(i: number) {
    const model = opts.models[Math.floor(r() * opts.models.length)]!;
    const cut = r() < opts.cutFraction;
    const cutAfter = Math.floor(r() * 7) - 1; // -1: abort before the response
    const stream = r() < (opts.stream ?? 1);
    const ac = new AbortController();
    out.requests++;
    if (cut) out.cut++;
    try {
      const p = fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: `Tale ${i}.` }], max_tokens: lo + Math.floor(r() * (hi - lo + 1)), stream, temperature: 0.8, seed: i }),
        signal: ac.signal,
      });
      if (cut && cutAfter < 0) setTimeout(() => ac.abort(), Math.floor(r() * 20));
      const res = await p;
      out.byStatus[res.status] = (out.byStatus[res.status] ?? 0) + 1;
      if (res.status >= 400 && res.status !== 429) out.errors.push(`${model}: ${res.status} ${(await res.text()).slice(0, 200)}`);
      else if (cut && res.body) {
        const reader = res.body.getReader();
        for (let k = 0; k < cutAfter; k++) if ((await reader.read()).done) break;
        ac.abort();
        // cancel, not `closed`: a body already fully received never errors on abort.
        await reader.cancel().catch(() => {});
      } else {
        const text = await res.text();
        if (stream && res.status === 200 && !text.includes('[DONE]')) out.errors.push(`${model}: stream without [DONE]: ${text.slice(-200)}`);
      }
    } catch (err) {
      if (!cut) out.errors.push(`${model}: ${(err as Error).message}`);
      else out.byStatus.cut = (out.byStatus.cut ?? 0) + 1;
    }
  }
  async function worker() {
    while (next < opts.requests) await one(next++);
  }
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  return out;
}
