/**
 * Small random PEFT adapters for the demo model (robustness and soak): q_proj + v_proj, rank
 * 2-4, F32 weights of magnitude <= 0.01. Deterministic per seed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Deterministic PRNG (mulberry32) in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HIDDEN = 256;
const KV_OUT = 128; // 4 kv heads * 32
const LAYERS = 4;

/** Write `count` adapters named `rand-000`... under `root`; returns their names. */
export function writeRandomAdapters(root: string, count: number, seed = 7): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng(seed * 100_003 + i);
    const rank = 2 + (i % 3);
    const name = `rand-${String(i).padStart(3, '0')}`;
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: rank, lora_alpha: rank * 2, target_modules: ['q_proj', 'v_proj'], bias: 'none' }));
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    const chunks: Buffer[] = [];
    let off = 0;
    const add = (tname: string, shape: number[]) => {
      const n = shape[0]! * shape[1]!;
      const f = new Float32Array(n);
      for (let k = 0; k < n; k++) f[k] = (r() - 0.5) * 0.02;
      header[tname] = { dtype: 'F32', shape, data_offsets: [off, off + n * 4] };
      chunks.push(Buffer.from(f.buffer));
      off += n * 4;
    };
    for (let l = 0; l < LAYERS; l++) {
      for (const [m, out] of [['q_proj', HIDDEN], ['v_proj', KV_OUT]] as const) {
        add(`base_model.model.model.layers.${l}.self_attn.${m}.lora_A.weight`, [rank, HIDDEN]);
        add(`base_model.model.model.layers.${l}.self_attn.${m}.lora_B.weight`, [out, rank]);
      }
    }
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(join(dir, 'adapter_model.safetensors'), Buffer.concat([len, json, ...chunks]));
    names.push(name);
  }
  return names;
}
