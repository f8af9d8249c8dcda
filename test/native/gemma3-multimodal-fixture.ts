/**
 * The gemma3 family fixture (test/fixtures/families/gemma3: a Gemma3ForCausalLM) saved as the
 * Gemma3ForConditionalGeneration checkpoints of Gemma 3 4B / 12B / 27B, in both layouts of
 * transformers: `language_model.model.*` (saved by transformers < 4.52) and
 * `model.language_model.*` (later). Same weights, same reference.json: serving its text model
 * must give the text fixture's outputs.
 *
 * - config.json: model_type "gemma3", the fixture's fields nested as text_config minus those whose
 *   transformers Gemma3TextConfig default equals the fixture's value (DEFAULTED), a vision_config,
 *   the image token fields; eos_token_id at the top as a list, as the real ones.
 * - weights: weights.json's tensors renamed to the layout, plus small vision-tower tensors full of
 *   NaN (any read of them would show in the logits). The legacy layout is sharded with
 *   model.safetensors.index.json and keeps an untied lm_head (language_model.lm_head.weight, equal
 *   to embed_tokens, tie_word_embeddings false); the newer one is one file, tied by default.
 * - adapters: the fixture's three, their keys renamed (see ADAPTER_PLAN: the base's layout, the
 *   other layout, list and regex target_modules, PEFT's all-linear list with vision-tower entries
 *   and vision-tower LoRA tensors).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { familiesDir, manifestTensors, materializeFixture, readManifest, writeWeights, type Fixture, type WeightTensor } from './family-fixtures.ts';
import { readTensors, writeTensors } from './helpers.ts';

/** Where a Gemma3ForConditionalGeneration checkpoint keeps its text decoder (ModelInfo.textModelPrefix). */
export type Gemma3Layout = 'language_model.model' | 'model.language_model';
export const GEMMA3_LAYOUTS: readonly Gemma3Layout[] = ['language_model.model', 'model.language_model'];
export const GEMMA3_MM_ARCH = 'Gemma3ForConditionalGeneration';

/**
 * Fields of the gemma3 fixture's config.json whose Gemma3TextConfig default is the fixture's value
 * (rms_norm_eps 1e-6, rope_theta 1e6, tie_word_embeddings true, rope_local_base_freq 1e4, no
 * soft-capping, gelu_pytorch_tanh): left out of text_config, as real checkpoints leave them out.
 */
export const DEFAULTED = ['rms_norm_eps', 'rope_theta', 'tie_word_embeddings', 'rope_local_base_freq', 'attn_logit_softcapping', 'final_logit_softcapping', 'hidden_activation'];

const other = (layout: Gemma3Layout): Gemma3Layout => (layout === 'language_model.model' ? 'model.language_model' : 'language_model.model');
/** Where the vision side lives in a layout: top level before transformers 4.52, under model. after. */
const visionRoot = (layout: Gemma3Layout) => (layout === 'language_model.model' ? '' : 'model.');

/** The fixture's config.json as a Gemma3ForConditionalGeneration one (text_config edited by `edit`). */
export function multimodalConfig(layout: Gemma3Layout, edit: (textConfig: Record<string, unknown>) => void = () => {}): Record<string, unknown> {
  const text = JSON.parse(readFileSync(join(familiesDir, 'gemma3', 'config.json'), 'utf8')) as Record<string, unknown>;
  delete text.architectures;
  for (const k of DEFAULTED) delete text[k];
  if (layout === 'language_model.model') text.tie_word_embeddings = false; // this layout stores language_model.lm_head
  edit(text);
  return {
    architectures: [GEMMA3_MM_ARCH],
    model_type: 'gemma3',
    text_config: text,
    vision_config: { model_type: 'siglip_vision_model', hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, patch_size: 2, image_size: 4 },
    boi_token_index: 255999,
    eoi_token_index: 256000,
    image_token_index: 262144,
    mm_tokens_per_image: 4,
    eos_token_id: [text.eos_token_id],
    initializer_range: 0.02,
    torch_dtype: 'bfloat16',
    transformers_version: layout === 'language_model.model' ? '4.50.0.dev0' : '4.53.0',
  };
}

/** Small vision-tower and projector tensors (F32, NaN), under the layout's names. */
function visionTensors(layout: Gemma3Layout): WeightTensor[] {
  const v = `${visionRoot(layout)}vision_tower.vision_model.`;
  const p = `${visionRoot(layout)}multi_modal_projector.`;
  const nan = (shape: number[]): Float32Array => new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN);
  const spec: Array<[string, number[]]> = [
    [`${v}embeddings.patch_embedding.weight`, [8, 3, 2, 2]],
    [`${v}encoder.layers.0.self_attn.q_proj.weight`, [8, 8]],
    [`${v}encoder.layers.0.self_attn.out_proj.weight`, [8, 8]],
    [`${v}encoder.layers.0.mlp.fc1.weight`, [16, 8]],
    [`${v}post_layernorm.weight`, [8]],
    [`${p}mm_input_projection_weight`, [8, 64]],
    [`${p}mm_soft_emb_norm.weight`, [8]],
  ];
  return spec.map(([name, shape]) => ({ name, dtype: 'F32', shape, values: nan(shape) }));
}

/** `model.X` (the text fixture's names) -> the layout's; lm_head likewise. */
function renameWeight(layout: Gemma3Layout, name: string): string {
  if (name === 'lm_head.weight') return layout === 'language_model.model' ? 'language_model.lm_head.weight' : 'lm_head.weight';
  if (!name.startsWith('model.')) throw new Error(`gemma3 fixture tensor ${name} is not under model.`);
  return `${layout}.${name.slice('model.'.length)}`;
}

/** Write the checkpoint's weights into `dir` (legacy layout: two shards and an index). */
function writeCheckpoint(dir: string, layout: Gemma3Layout): void {
  const text = manifestTensors(readManifest('gemma3'), (n) => renameWeight(layout, n));
  const vision = visionTensors(layout);
  if (layout === 'model.language_model') {
    writeWeights(join(dir, 'model.safetensors'), [...text, ...vision]);
    return;
  }
  const embed = text.find((t) => t.name === `${layout}.embed_tokens.weight`)!;
  const head: WeightTensor = { ...embed, name: 'language_model.lm_head.weight' };
  // Shard 1 holds the vision tower and the first half of the text model, shard 2 the rest.
  const half = Math.floor(text.length / 2);
  const shards: Array<[string, WeightTensor[]]> = [
    ['model-00001-of-00002.safetensors', [...vision, ...text.slice(0, half)]],
    ['model-00002-of-00002.safetensors', [...text.slice(half), head]],
  ];
  const weightMap: Record<string, string> = {};
  for (const [file, ts] of shards) {
    writeWeights(join(dir, file), ts);
    for (const t of ts) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

/** How each fixture adapter is saved for a base of each layout. */
interface AdapterPlan {
  /** Layout of its LoRA keys: the base's own, or the other one (an adapter trained under the other transformers). */
  keys: 'own' | 'other';
  /** target_modules replacing the fixture's list (undefined: keep the list). */
  targets?: (layout: Gemma3Layout) => string | string[];
  /** Add vision-tower LoRA tensors (what PEFT's all-linear saves on this architecture). */
  vision?: boolean;
}
const ALL_LINEAR = ['q_proj', 'out_proj', 'fc2', 'k_proj', 'gate_proj', 'fc1', 'down_proj', 'v_proj', 'o_proj', 'up_proj'];
export const ADAPTER_PLAN: Record<Gemma3Layout, Record<string, AdapterPlan>> = {
  'language_model.model': {
    all: { keys: 'own', targets: () => '.*language_model.*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)' },
    rs: { keys: 'other' },
    pat: { keys: 'own', vision: true },
  },
  'model.language_model': {
    all: { keys: 'own', targets: () => ALL_LINEAR, vision: true },
    rs: { keys: 'own', targets: (l) => `${l.replace(/\./g, '\\.')}\\.layers\\.\\d+\\.(self_attn\\.(q_proj|v_proj)|mlp\\.down_proj)` },
    pat: { keys: 'other', vision: true },
  },
};

/** Vision-tower LoRA tensors of the layout (F32 zeros, rank 2). */
function visionLora(layout: Gemma3Layout): Record<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const out: Record<string, { dtype: string; shape: number[]; bytes: Buffer }> = {};
  for (const m of ['self_attn.q_proj', 'self_attn.out_proj', 'mlp.fc1']) {
    const base = `base_model.model.${visionRoot(layout)}vision_tower.vision_model.encoder.layers.0.${m}`;
    out[`${base}.lora_A.weight`] = { dtype: 'F32', shape: [2, 8], bytes: Buffer.alloc(2 * 8 * 4) };
    out[`${base}.lora_B.weight`] = { dtype: 'F32', shape: [m === 'mlp.fc1' ? 16 : 8, 2], bytes: Buffer.alloc((m === 'mlp.fc1' ? 16 : 8) * 2 * 4) };
  }
  return out;
}

/** Write the fixture's adapter `name` into `dst` as planned for a `layout` base. */
function writeAdapter(name: string, dst: string, layout: Gemma3Layout): void {
  const plan = ADAPTER_PLAN[layout][name]!;
  const src = join(familiesDir, 'gemma3', 'adapters', name);
  mkdirSync(dst, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(src, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  if (plan.targets) cfg.target_modules = plan.targets(layout);
  cfg.base_model_name_or_path = 'google/gemma-3-4b-it';
  writeFileSync(join(dst, 'adapter_config.json'), JSON.stringify(cfg, null, 1));
  const keyLayout = plan.keys === 'own' ? layout : other(layout);
  const tensors: Record<string, { dtype: string; shape: number[]; bytes: Buffer }> = {};
  for (const [key, t] of Object.entries(readTensors(join(src, 'adapter_model.safetensors')))) {
    if (!key.startsWith('base_model.model.model.layers.')) throw new Error(`gemma3 fixture adapter key ${key}`);
    tensors[key.replace('base_model.model.model.', `base_model.model.${keyLayout}.`)] = t;
  }
  writeTensors(join(dst, 'adapter_model.safetensors'), plan.vision ? { ...visionLora(keyLayout), ...tensors } : tensors);
}

/**
 * Materialise the gemma3 fixture as a Gemma3ForConditionalGeneration checkpoint of `layout`, with
 * its adapters saved as ADAPTER_PLAN says: a Fixture whose reference is the text fixture's
 * (architecture Gemma3ForConditionalGeneration).
 * @param editTextConfig changes text_config (error cases: fields removed, bad values).
 */
export function materializeGemma3Multimodal(layout: Gemma3Layout, editTextConfig?: (c: Record<string, unknown>) => void): Fixture {
  const fx = materializeFixture('gemma3');
  rmSync(join(fx.modelDir, 'model.safetensors'));
  writeFileSync(join(fx.modelDir, 'config.json'), JSON.stringify(multimodalConfig(layout, editTextConfig), null, 1));
  writeCheckpoint(fx.modelDir, layout);
  const adaptersDir = mkdtempSync(join(tmpdir(), 'openlora-gemma3-mm-adapters-'));
  for (const a of Object.keys(fx.ref.adapters)) writeAdapter(a, join(adaptersDir, a), layout);
  return {
    name: `gemma3-mm-${layout}`,
    modelDir: fx.modelDir,
    adaptersDir,
    ref: { ...fx.ref, architecture: GEMMA3_MM_ARCH },
    dispose: () => {
      fx.dispose();
      rmSync(adaptersDir, { recursive: true, force: true });
    },
  };
}
