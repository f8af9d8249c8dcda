/**
 * Shared fixtures of the native tests: paths, the reference outputs, adapter load specs,
 * default sampling parameters, the CPU's flags and the build of the C++ check drivers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { AdapterLoadSpec, AdapterModuleSpec, SequenceParams } from '../../native/types.ts';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const modelDir = join(repoRoot, 'examples', 'models', 'tiny-shakespeare');
export const adaptersDir = join(repoRoot, 'examples', 'adapters');
export const referencePath = join(repoRoot, 'test', 'fixtures', 'tiny-shakespeare', 'reference.json');

/** Engine threads for tests: CI boxes have 2 cores. */
export const testThreads = 2;

/** The CPU's flags as /proc/cpuinfo lists them (its first `flags` line); empty where there is none. */
export const cpuFlags: ReadonlySet<string> = new Set(
  existsSync('/proc/cpuinfo')
    ? (readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags')) ?? '').replace(/^flags\s*:\s*/, '').split(/\s+/)
    : [],
);

/**
 * Builds a C++ check driver (test/native/cpp/*_check.cc and the engine sources it tests, paths
 * relative to the repo root) with g++ -std=c++17 -pthread into a new temporary directory.
 * @param name The executable's name. @param opt The optimisation flag (-O2 unless given).
 * @returns The executable's path. @throws AssertionError with g++'s output when the build fails.
 */
export function buildCppCheck(name: string, sources: string[], opt = '-O2'): string {
  const exe = join(mkdtempSync(join(tmpdir(), `openlora-${name}-`)), name);
  const r = spawnSync('g++', ['-std=c++17', opt, '-pthread', '-o', exe, ...sources.map((s) => join(repoRoot, s))], { encoding: 'utf8' });
  assert.equal(r.status, 0, `g++ failed: ${r.error?.message ?? ''}${r.stderr}`);
  return exe;
}

export interface GreedyStep {
  token: number;
  margin: number;
  logprob: number;
  top5: Array<[number, number]>;
}
export interface ConfigResult {
  argmax: number[];
  position_margins: number[];
  last_logits: number[];
  last_logsumexp: number;
  greedy: { tokens: number[]; stop_index: number | null; steps: GreedyStep[] };
}
export interface ReferencePrompt {
  id: string;
  input_ids: number[];
  results: Record<string, ConfigResult>;
}
export interface Reference {
  stop_token_ids: number[];
  configs: Record<string, Array<{ adapter: string; weight: number }>>;
  prompts: ReferencePrompt[];
}

export function loadReference(): Reference {
  return JSON.parse(readFileSync(referencePath, 'utf8')) as Reference;
}

const attentionModules = new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj']);

/**
 * AdapterLoadSpec for one PEFT adapter folder, from its adapter_config.json.
 * Scaling = lora_alpha / r, or lora_alpha / sqrt(r) when use_rslora (PEFT LoraLayer.update_layer).
 * NOTE(why): a deliberately tiny stand-in for the real PEFT parser in adapters/ (not ours).
 */
export function adapterSpec(name: string, dir = join(adaptersDir, name)): AdapterLoadSpec & { rank: number } {
  const cfg = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as {
    r: number;
    lora_alpha: number;
    use_rslora?: boolean;
    target_modules: string[];
    fan_in_fan_out?: boolean;
  };
  const layers = (JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as { num_hidden_layers: number }).num_hidden_layers;
  const scaling = cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
  const modules: AdapterModuleSpec[] = [];
  for (let layer = 0; layer < layers; layer++) {
    for (const module of cfg.target_modules) {
      const prefix = `base_model.model.model.layers.${layer}.${attentionModules.has(module) ? 'self_attn' : 'mlp'}.${module}`;
      modules.push({
        layer,
        module,
        aName: `${prefix}.lora_A.weight`,
        bName: `${prefix}.lora_B.weight`,
        scaling,
        fanInFanOut: cfg.fan_in_fan_out ?? false,
      });
    }
  }
  return { path: join(dir, 'adapter_model.safetensors'), modules, rank: cfg.r };
}

/** Greedy, no penalties, no stop tokens; override what a test needs. */
export function params(promptIds: number[], over: Partial<SequenceParams> = {}): SequenceParams {
  return {
    promptIds,
    adapters: [],
    maxTokens: 16,
    temperature: 0,
    topP: 1,
    topK: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    logitBias: [],
    stopTokenIds: [],
    seed: 0,
    logprobs: -1,
    ...over,
  };
}

/** Index of the largest value (lowest index among ties). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

export function logsumexp(v: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < v.length; i++) m = Math.max(m, v[i]);
  let s = 0;
  for (let i = 0; i < v.length; i++) s += Math.exp(v[i] - m);
  return m + Math.log(s);
}

/** One tensor entry of a safetensors header. */
export interface StEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
/** A safetensors header: tensors plus an optional `__metadata__` string map. */
export type Header = Record<string, StEntry | Record<string, string>>;

/** Split a safetensors file into its header object and data region. */
export function readSt(path: string): { header: Header; data: Buffer } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Header, data: buf.subarray(8 + n) };
}

/** Write a safetensors file; `headerLen` overrides the length prefix (to corrupt it). */
export function writeSt(path: string, header: Header, data: Buffer, headerLen?: number): void {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  writeFileSync(path, Buffer.concat([len, json, data]));
}

/** Write named tensors (raw little-endian bytes) as a well-formed safetensors file. */
export function writeTensors(path: string, tensors: Record<string, { dtype: string; shape: number[]; bytes: Buffer }>): void {
  const header: Header = {};
  const parts: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    parts.push(t.bytes);
    offset += t.bytes.length;
  }
  writeSt(path, header, Buffer.concat(parts));
}

/** Every tensor of a safetensors file as raw bytes, in file order. */
export function readTensors(path: string): Record<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const { header, data } = readSt(path);
  const out: Record<string, { dtype: string; shape: number[]; bytes: Buffer }> = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = e as StEntry;
    out[name] = { dtype: t.dtype, shape: t.shape, bytes: Buffer.from(data.subarray(t.data_offsets[0], t.data_offsets[1])) };
  }
  return out;
}
