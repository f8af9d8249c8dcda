/**
 * Requests of the real-shape bench (bench/real/run.ts): token-id prompts sent to
 * `/v1/completions` of either server, so both see exactly the same ids (Llama 3's BOS first,
 * then ordinary vocabulary ids drawn per request, so no two requests share a prefix beyond BOS
 * and neither server's prefix cache helps), greedy, `ignore_eos` so every request generates
 * exactly `max_tokens`.
 *
 * Two server dialects: openlora names an adapter in `model` (`base:adapter`); llama-server takes
 * `lora: [{id, scale}]` with the ids of its `--lora` files.
 */
import { pickAdapter } from '../scenarios.ts';
import type { BenchRequest } from '../scenarios.ts';

export const BOS = 128000;

/** Adapters llama-server loads (`--lora`, ids 0..15): the table's 16. */
export const LLAMA_LORAS = 16;

/** Which server a request is for. */
export type Dialect = 'openlora' | 'llama';

/** A float in [0, 1) from two integers (splitmix-like; request-level determinism). */
export function hash01(a: number, b: number): number {
  let x = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return ((x ^ (x >>> 16)) >>> 0) / 4294967296;
}

/** `len` prompt ids for request `key`: BOS, then ids in [1000, 120000) (ordinary BPE tokens). */
export function promptIds(key: number, len: number): number[] {
  return [BOS, ...Array.from({ length: len - 1 }, (_, j) => 1000 + Math.floor(hash01(key, j) * 119000))];
}

/**
 * One greedy completion request of `maxTokens` tokens on `prompt`, base model (adapter -1) or
 * adapter `adapter` (an index into `adapterNames` for openlora, a `--lora` id for llama-server).
 */
export function completionRequest(
  dialect: Dialect,
  base: string,
  adapterNames: string[],
  kind: string,
  prompt: number[],
  maxTokens: number,
  adapter: number,
): BenchRequest {
  const body: Record<string, unknown> = {
    model: dialect === 'openlora' && adapter >= 0 ? `${base}:${adapterNames[adapter]}` : base,
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  };
  // NOTE(why): every loaded adapter gets an explicit scale: llama-server reads `lora: []` as "the
  // server's defaults" and then applied all of them (measured: base slower than one adapter).
  if (dialect === 'llama') body.lora = Array.from({ length: LLAMA_LORAS }, (_, id) => ({ id, scale: id === adapter ? 1 : 0 }));
  return { kind, path: '/completions', body };
}

/** A closed-loop workload of the issue-15 table: `streams` at once, `requests` in all. */
export interface TableWorkload {
  name: string;
  streams: number;
  requests: number;
  /** Adapter of request i (-1 = base). */
  adapter(i: number): number;
}

/** The table: 1 stream base / one adapter; 16 streams base / same adapter / 16 different adapters. */
export function tableWorkloads(singleRequests: number, batchRequests: number): TableWorkload[] {
  return [
    { name: '1-stream-base', streams: 1, requests: singleRequests, adapter: () => -1 },
    { name: '1-stream-adapter', streams: 1, requests: singleRequests, adapter: () => 0 },
    { name: '16-streams-base', streams: 16, requests: batchRequests, adapter: () => -1 },
    { name: '16-streams-same-adapter', streams: 16, requests: batchRequests, adapter: () => 0 },
    { name: '16-streams-16-adapters', streams: 16, requests: batchRequests, adapter: (i) => i % 16 },
  ];
}

/** One request of an S-LoRA workload: when it is sent (ms after the start) and what it asks. */
export interface OpenLoopRequest {
  atMs: number;
  adapter: number;
  promptLen: number;
  maxTokens: number;
}

/**
 * S-LoRA's synthetic workload: Poisson arrivals at `rate` requests/s (exponential gaps),
 * adapter popularity uniform or power-law (Zipf, P(k) ∝ 1/k) over `adapters`, input and output
 * lengths uniform in [8, 256). Deterministic per `seed`.
 */
export function openLoopWorkload(n: number, rate: number, adapters: number, popularity: 'uniform' | 'powerlaw', seed: number): OpenLoopRequest[] {
  const out: OpenLoopRequest[] = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += (-Math.log(1 - hash01(seed, 4 * i)) / rate) * 1000;
    const a = popularity === 'uniform' ? Math.floor(hash01(seed, 4 * i + 1) * adapters) : pickAdapter(Math.floor(hash01(seed, 4 * i + 1) * 2 ** 31), adapters, 'zipf');
    out.push({ atMs: t, adapter: a, promptLen: 8 + Math.floor(hash01(seed, 4 * i + 2) * 248), maxTokens: 8 + Math.floor(hash01(seed, 4 * i + 3) * 248) });
  }
  return out;
}
