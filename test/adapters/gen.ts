/**
 * Random PEFT LoRA folders with a base's shapes, fast enough for a thousand in a test:
 * ranks in [minRank, maxRank], a random non-empty subset of the seven projections, F32 or BF16,
 * small weights (the adapter moves the logits without drowning the base). Deterministic per seed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelInfo } from '../../native/types.ts';
import { LORA_MODULES, MODULE_PARENT, moduleDims, type LoraModule } from '../../adapters/peft-match.ts';

export { mulberry32 as rng } from '../../adapters/merge/strategies.ts';
import { mulberry32 as rng } from '../../adapters/merge/strategies.ts';

/** Options of one generated adapter. */
export interface GenOptions {
  rank: number;
  modules: LoraModule[];
  dtype: 'F32' | 'BF16';
  seed: number;
  /** Uniform weights in [-scale, scale] (default 0.05 for A, 0.05 for B). */
  scale?: number;
  alpha?: number;
  /** PEFT rank_pattern / alpha_pattern keyed by projection name (e.g. `{q_proj: 2}`). */
  rankPattern?: Partial<Record<LoraModule, number>>;
  alphaPattern?: Partial<Record<LoraModule, number>>;
  /** use_rslora: scaling alpha / sqrt(r). */
  rslora?: boolean;
  /** A value (NaN, Infinity) written over the first element of the first lora_B (layer 0, first module). */
  poison?: number;
}

/** Serialise tensors (name → [shape, Float32Array]) as safetensors in `dtype`. */
export function safetensorsBytes(tensors: Array<[string, number[], Float32Array]>, dtype: 'F32' | 'BF16'): Buffer {
  const bpe = dtype === 'F32' ? 4 : 2;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype, shape, data_offsets: [off, off + data.length * bpe] };
    off += data.length * bpe;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + off);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'latin1');
  let p = 8 + json.length;
  for (const [, , data] of tensors) {
    if (dtype === 'F32') {
      Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, p);
      p += data.byteLength;
    } else {
      const u32 = new Uint32Array(data.buffer, data.byteOffset, data.length);
      for (let i = 0; i < u32.length; i++, p += 2) out.writeUInt16LE(u32[i]! >>> 16, p); // truncate to bf16
    }
  }
  return out;
}

/** Write one random adapter folder `dir` for `info`'s shapes. @returns bytes of the weights file. */
export async function writeRandomAdapter(dir: string, info: ModelInfo, o: GenOptions): Promise<number> {
  const rand = rng(o.seed);
  const scale = o.scale ?? 0.05;
  const fill = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
    return a;
  };
  const tensors: Array<[string, number[], Float32Array]> = [];
  for (let l = 0; l < info.numHiddenLayers; l++) {
    for (const m of o.modules) {
      const d = moduleDims(info, m);
      const r = o.rankPattern?.[m] ?? o.rank;
      const base = `base_model.model.model.layers.${l}.${MODULE_PARENT[m]}.${m}`;
      tensors.push([`${base}.lora_A.weight`, [r, d.in], fill(r * d.in)]);
      tensors.push([`${base}.lora_B.weight`, [d.out, r], fill(d.out * r)]);
    }
  }
  if (o.poison !== undefined) tensors[1]![2][0] = o.poison;
  const bytes = safetensorsBytes(tensors, o.dtype);
  await mkdir(dir, { recursive: true });
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: o.rank, lora_alpha: o.alpha ?? 2 * o.rank, target_modules: o.modules,
    bias: 'none', use_rslora: o.rslora === true, use_dora: false, fan_in_fan_out: false,
    rank_pattern: o.rankPattern ?? {}, alpha_pattern: o.alphaPattern ?? {},
  };
  await Promise.all([writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config)), writeFile(join(dir, 'adapter_model.safetensors'), bytes)]);
  return bytes.length;
}

/** `count` adapters `a0000..` under `root`: ranks 4–16, varied targets, alternating F32/BF16. @returns names. */
export async function writeAdapterSet(root: string, info: ModelInfo, count: number, seed = 1): Promise<string[]> {
  const rand = rng(seed);
  const names: string[] = [];
  const jobs: Array<Promise<number>> = [];
  for (let i = 0; i < count; i++) {
    const rank = 4 + Math.floor(rand() * 13);
    let modules = LORA_MODULES.filter(() => rand() < 0.4);
    if (modules.length === 0) modules = [LORA_MODULES[i % LORA_MODULES.length]!];
    const name = `a${String(i).padStart(4, '0')}`;
    names.push(name);
    jobs.push(writeRandomAdapter(join(root, name), info, { rank, modules, dtype: i % 2 ? 'BF16' : 'F32', seed: seed * 100_003 + i }));
    if (jobs.length >= 32) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  return names;
}
