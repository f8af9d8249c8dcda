/**
 * Property-based fuzzers of the TypeScript parsers: the safetensors header reader and the
 * adapter_config.json resolver. Property: every input either parses or throws AdapterError;
 * anything else (TypeError, RangeError, a hang) is a failure, returned with its input.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensorsHeader } from '../../adapters/safetensors-header.ts';
import { resolveConfig } from '../../adapters/peft.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { tinyInfo } from '../adapters/helpers.ts';
import { rng } from './gen-adapters.ts';

type R = () => number;
const pick = <T>(r: R, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const WEIRD: unknown[] = [null, true, 0, -1, 1.5, -0.5, 1e308, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, '', 'x', 'F32', 'BF16', [], [1], [-1, 2], [2 ** 60, 1], {}, { a: [] }, '\ud800'];

function validHeader(): Record<string, unknown> {
  return {
    __metadata__: { format: 'pt' },
    'a.lora_A.weight': { dtype: 'F32', shape: [2, 4], data_offsets: [0, 32] },
    'a.lora_B.weight': { dtype: 'BF16', shape: [4, 2], data_offsets: [32, 48] },
  };
}

/** A mutated safetensors file (bytes). */
export function mutatedSafetensors(r: R): Buffer {
  const h = validHeader();
  let dataLen = 48;
  const op = Math.floor(r() * 8);
  if (op <= 3) {
    const t = h[pick(r, ['a.lora_A.weight', 'a.lora_B.weight', '__metadata__'])] as Record<string, unknown>;
    t[pick(r, ['dtype', 'shape', 'data_offsets', 'extra'])] = pick(r, WEIRD);
  } else if (op === 4) {
    h[`t${Math.floor(r() * 1e6)}`] = pick(r, WEIRD);
  } else if (op === 5) {
    dataLen = Math.floor(r() * 100);
  }
  let json = Buffer.from(JSON.stringify(h));
  if (op === 6) {
    json = Buffer.from(json); // byte flips anywhere in the header
    for (let k = 0; k < 1 + Math.floor(r() * 4); k++) json[Math.floor(r() * json.length)] = Math.floor(r() * 256);
  }
  const len = Buffer.alloc(8);
  const lenOp = r();
  if (op === 7 && lenOp < 0.3) len.writeBigUInt64LE(BigInt(Math.floor(r() * 2 ** 52)) * 4096n);
  else if (op === 7 && lenOp < 0.6) len.writeBigUInt64LE(BigInt(json.length + Math.floor(r() * 100) - 50 > 0 ? json.length + Math.floor(r() * 100) - 50 : 0));
  else len.writeBigUInt64LE(BigInt(json.length));
  let file = Buffer.concat([len, json, Buffer.alloc(dataLen)]);
  if (op === 7 && lenOp >= 0.6) file = file.subarray(0, Math.floor(r() * file.length));
  return file;
}

/** A mutated adapter_config.json value (object, array, scalar or a deep structure). */
export function mutatedConfig(r: R): unknown {
  const base: Record<string, unknown> = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], bias: 'none',
    use_rslora: false, rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null, layers_pattern: null,
  };
  const fields = [...Object.keys(base), 'use_dora', 'modules_to_save', 'fan_in_fan_out', 'init_lora_weights', 'target_parameters', 'exclude_modules', 'layer_replication', 'megatron_config'];
  const op = Math.floor(r() * 6);
  if (op === 0) return pick(r, WEIRD);
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const f = pick(r, fields);
    if (op === 1) base[f] = pick(r, WEIRD);
    else if (op === 2) delete base[f];
    else if (op === 3) base.rank_pattern = { [pick(r, ['q_proj', '.*', '(', 'model.layers.0.self_attn.q_proj', '[', '\\'])]: pick(r, [0, 1, 4096, -3, 'x', 1.5]) };
    else if (op === 4) base.target_modules = pick(r, ['all-linear', '.*', '(', '.*_proj', ['q_proj', 5], 'x'.repeat(10000), ['lm_head'], []]);
    else base.layers_to_transform = pick(r, [[0, 99], [-1], 3, 1e9, [], 'x']);
  }
  return base;
}

/** Outcome of a fuzz run. */
export interface FuzzResult {
  cases: number;
  parsed: number;
  refused: number;
  failures: string[];
}

/** Fuzz readSafetensorsHeader with `n` files written into `dir`. */
export async function fuzzSafetensorsHeader(n: number, seed: number, dir: string): Promise<FuzzResult> {
  const r = rng(seed);
  const out: FuzzResult = { cases: 0, parsed: 0, refused: 0, failures: [] };
  const file = join(dir, 'fuzz.safetensors');
  for (let i = 0; i < n; i++) {
    const bytes = mutatedSafetensors(r);
    writeFileSync(file, bytes);
    out.cases++;
    try {
      await readSafetensorsHeader(file);
      out.parsed++;
    } catch (err) {
      if (err instanceof AdapterError) out.refused++;
      else out.failures.push(`${(err as Error)?.name}: ${(err as Error)?.message} for ${bytes.subarray(0, 200).toString('latin1')}`);
    }
  }
  return out;
}

/** Fuzz resolveConfig (pure) with `n` generated configs. */
export function fuzzAdapterConfig(n: number, seed: number): FuzzResult {
  const r = rng(seed);
  const info = tinyInfo();
  const out: FuzzResult = { cases: 0, parsed: 0, refused: 0, failures: [] };
  for (let i = 0; i < n; i++) {
    const cfg = mutatedConfig(r);
    out.cases++;
    try {
      resolveConfig(cfg, info);
      out.parsed++;
    } catch (err) {
      if (err instanceof AdapterError) out.refused++;
      else out.failures.push(`${(err as Error)?.name}: ${(err as Error)?.message} for ${JSON.stringify(cfg)?.slice(0, 200)}`);
    }
  }
  return out;
}

/** Write a mutated copy of `src` bytes (flips, truncation, header-length edits) for the native reader. */
export function mutateBytes(r: R, src: Buffer): Buffer {
  const b = Buffer.from(src);
  const headerLen = Number(b.readBigUInt64LE(0));
  const op = Math.floor(r() * 4);
  if (op === 0) for (let k = 0; k < 1 + Math.floor(r() * 8); k++) b[8 + Math.floor(r() * headerLen)] = Math.floor(r() * 256);
  else if (op === 1) return b.subarray(0, Math.floor(r() * b.length));
  else if (op === 2) b.writeBigUInt64LE(BigInt(Math.floor(r() * headerLen * 2)), 0);
  else {
    const text = b.subarray(8, 8 + headerLen).toString('latin1').replace(/\d+/g, (d) => (r() < 0.05 ? pick(r, ['0', '-1', '99999999999', d + '0', '1e3']) : d));
    const json = Buffer.from(text, 'latin1');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, b.subarray(8 + headerLen)]);
  }
  return b;
}
