/**
 * Random LoRA adapters for the benchmark: valid PEFT folders (adapter_config.json +
 * adapter_model.safetensors, F32 by default or BF16, keys `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`
 * etc.) shaped for a given base model's config.json, ranks 8–16 (or drawn from a given set, e.g.
 * {8, 16, 32, 64} for the real-shape bench), all seven projections.
 *
 * Deterministic: the same seed, count and base shapes give byte-identical files. Generated once
 * into a cache folder (default: `<os tmpdir>/openlora-bench-adapters/<key>/`) and reused while its
 * `.complete` marker is there. The weights are random (not trained): they change the output a
 * little and cost exactly what a trained adapter of the same rank costs.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rng, safetensorsBytes } from '../test/adapters/gen.ts';

/** Bump when the file layout or the random draw changes (cache key). */
const GENERATOR_VERSION = 1;

export const ATTN_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_MODULES = ['gate_proj', 'up_proj', 'down_proj'] as const;

interface BaseShapes {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  qOut: number;
  kvOut: number;
}

function readShapes(modelDir: string): BaseShapes {
  const c = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8'));
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  return {
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    qOut: c.num_attention_heads * headDim,
    kvOut: (c.num_key_value_heads ?? c.num_attention_heads) * headDim,
  };
}

/** [in, out] of each target projection. */
function moduleDims(s: BaseShapes): Record<string, [number, number]> {
  return {
    q_proj: [s.hiddenSize, s.qOut],
    k_proj: [s.hiddenSize, s.kvOut],
    v_proj: [s.hiddenSize, s.kvOut],
    o_proj: [s.qOut, s.hiddenSize],
    gate_proj: [s.hiddenSize, s.intermediateSize],
    up_proj: [s.hiddenSize, s.intermediateSize],
    down_proj: [s.intermediateSize, s.hiddenSize],
  };
}

/** Name of the i-th generated adapter (sorts in index order). */
export const benchAdapterName = (i: number) => `bench-${String(i).padStart(3, '0')}`;

export interface GeneratedAdapters {
  /** Folder holding one sub-folder per adapter (give it to the server as an adapterDir). */
  dir: string;
  names: string[];
  ranks: number[];
  /** True when the folder was reused from an earlier run. */
  cached: boolean;
  seconds: number;
}

/** Options of generateAdapters. */
export interface GenerateAdapterOptions {
  /** PRNG seed (default 1234). */
  seed?: number;
  /** Cache root (default `<os tmpdir>/openlora-bench-adapters`). */
  dir?: string;
  /** Storage of A and B: "F32" (default; what PEFT saves with its default autocast_adapter_dtype) or "BF16" (the same draws rounded). */
  dtype?: 'F32' | 'BF16';
  /** Ranks drawn uniformly from this set (default: uniform in 8..16). */
  rankChoices?: readonly number[];
  /**
   * Only the first `weightPool` adapters get their own random weights; adapter i >= weightPool
   * hard-links the weights file of adapter i % weightPool (same rank) and has its own
   * adapter_config.json (another lora_alpha), so its content, hence its identity to the server,
   * differs. Keeps 1000 adapters of a real shape within disk (default: every adapter its own).
   */
  weightPool?: number;
}

/**
 * Make (or reuse) `count` random adapters for the model in `modelDir` (see GenerateAdapterOptions).
 * @returns the folder, names and ranks.
 */
export function generateAdapters(modelDir: string, count: number, opts: GenerateAdapterOptions = {}): GeneratedAdapters {
  const t0 = performance.now();
  const seed = opts.seed ?? 1234;
  const shapes = readShapes(modelDir);
  const dtype = opts.dtype ?? 'F32';
  const choices = opts.rankChoices;
  const pool = Math.min(count, opts.weightPool ?? count);
  const key =
    `v${GENERATOR_VERSION}-seed${seed}-n${count}${dtype === 'F32' ? '' : '-' + dtype.toLowerCase()}-h${shapes.hiddenSize}-i${shapes.intermediateSize}-l${shapes.numLayers}-q${shapes.qOut}-kv${shapes.kvOut}` +
    (choices ? `-r${choices.join('.')}` : '') +
    (pool < count ? `-pool${pool}` : '');
  const dir = path.join(opts.dir ?? path.join(os.tmpdir(), 'openlora-bench-adapters'), key);
  const names = Array.from({ length: count }, (_, i) => benchAdapterName(i));
  const rand = rng(seed);
  const drawn = names.map(() => (choices ? choices[Math.floor(rand() * choices.length)] : 8 + Math.floor(rand() * 9))); // default 8..16
  const ranks = names.map((_, i) => drawn[i % pool]);
  const marker = path.join(dir, '.complete');
  if (existsSync(marker)) return { dir, names, ranks, cached: true, seconds: (performance.now() - t0) / 1000 };

  rmSync(dir, { recursive: true, force: true });
  const dims = moduleDims(shapes);
  const writeConfig = (sub: string, r: number, alpha: number) => {
    const config = {
      base_model_name_or_path: path.basename(modelDir),
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      lora_alpha: alpha,
      lora_dropout: 0,
      peft_type: 'LORA',
      r,
      target_modules: [...ATTN_MODULES, ...MLP_MODULES],
      task_type: 'CAUSAL_LM',
      use_dora: false,
      use_rslora: false,
    };
    writeFileSync(path.join(sub, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  };
  names.forEach((name, i) => {
    const r = ranks[i];
    const g = rng((seed * 7919 + i * 104729) >>> 0);
    const alpha = r * (1 + Math.floor(g() * 2)); // alpha = r or 2r
    const sub = path.join(dir, name);
    if (i >= pool) {
      mkdirSync(sub, { recursive: true });
      linkSync(path.join(dir, names[i % pool], 'adapter_model.safetensors'), path.join(sub, 'adapter_model.safetensors'));
      writeConfig(sub, r, r * (1 + Math.floor(i / pool))); // alpha r, 2r, ...: another content per copy
      return;
    }
    const tensors: Array<{ name: string; shape: number[]; data: Float32Array }> = [];
    for (let layer = 0; layer < shapes.numLayers; layer++) {
      for (const mod of [...ATTN_MODULES, ...MLP_MODULES]) {
        const [inF, outF] = dims[mod];
        const part = (ATTN_MODULES as readonly string[]).includes(mod) ? 'self_attn' : 'mlp';
        const prefix = `base_model.model.model.layers.${layer}.${part}.${mod}`;
        const a = new Float32Array(r * inF);
        const ab = 1 / Math.sqrt(inF); // kaiming-uniform-like range
        for (let k = 0; k < a.length; k++) a[k] = (g() * 2 - 1) * ab;
        const b = new Float32Array(outF * r);
        for (let k = 0; k < b.length; k++) b[k] = (g() * 2 - 1) * 0.02; // trained B is small, non-zero
        tensors.push({ name: `${prefix}.lora_A.weight`, shape: [r, inF], data: a });
        tensors.push({ name: `${prefix}.lora_B.weight`, shape: [outF, r], data: b });
      }
    }
    tensors.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    mkdirSync(sub, { recursive: true });
    writeFileSync(path.join(sub, 'adapter_model.safetensors'), safetensorsBytes(tensors.map((t) => [t.name, t.shape, t.data]), dtype));
    writeConfig(sub, r, alpha);
  });
  writeFileSync(marker, `${key}\n`);
  return { dir, names, ranks, cached: false, seconds: (performance.now() - t0) / 1000 };
}
