/**
 * PEFT LoRA adapter folders: `adapter_config.json` parsing and validation, then the engine's
 * `AdapterLoadSpec` built from the `adapter_model.safetensors` header.
 *
 * Two steps, so that registering thousands of adapters stays cheap:
 *   1. `parseAdapterDir(dir, info)`: reads only the JSON config (and checks the weights file
 *      exists; on a multimodal base, reads its header too, to warn of vision-tower tensors) ->
 *      `ParsedAdapter` with the resolved target modules, ranks and scalings.
 *   2. `buildLoadSpec(parsed, info)`: reads the safetensors header (never the data) and
 *      checks every tensor against the config and the base model -> `AdapterLoadSpec`.
 * Sources: peft/tuners/lora/config.py (LoraConfig fields), peft/tuners/lora/model.py
 * (`_create_and_replace`: rank_pattern/alpha_pattern), peft/tuners/lora/layer.py
 * (`LoraLayer.update_layer`: scaling; `dispatch_default`: fan_in_fan_out), peft/utils/other.py
 * (`get_pattern_key`), peft/utils/save_and_load.py (tensor names).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { AdapterLoadSpec, ModelInfo } from '../native/types.ts';
import { AdapterError } from './errors.ts';
import { checkNoAddedVocab } from './added-vocab.ts';
import {
  baseModules, isMultimodalBase, isVisionEntry, layerSelected, MODULE_PARENT, moduleDims, moduleSelected, modulesOf, patternKey,
  pyFullmatch, textPrefixes, type LoraModule, type ModuleSelector,
} from './peft-match.ts';
import { readSafetensorsHeader, type SafetensorsHeader } from './safetensors-header.ts';

/** Dtypes the engine accepts for lora_A / lora_B. */
export const LORA_DTYPES = ['F32', 'F16', 'BF16'] as const;

/** PEFT's default target_modules per model_type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING). */
const DEFAULT_TARGETS: Record<string, string[]> = {
  llama: ['q_proj', 'v_proj'], mistral: ['q_proj', 'v_proj'], qwen2: ['q_proj', 'v_proj'], qwen3: ['q_proj', 'v_proj'],
  gemma2: ['q_proj', 'v_proj'], gemma3_text: ['q_proj', 'v_proj'], phi3: ['qkv_proj'],
};

const selector = z.union([z.array(z.string()), z.string()]);

/** The LoraConfig fields we read (peft/tuners/lora/config.py); unknown fields are ignored (stripped). */
export const PeftConfigSchema = z.object({
  peft_type: z.string(),
  r: z.number().int().positive().default(8),
  lora_alpha: z.number().refine(Number.isFinite, 'expected a finite number').default(8),
  target_modules: selector.nullish(),
  exclude_modules: selector.nullish(),
  use_rslora: z.boolean().nullish(),
  rank_pattern: z.record(z.string(), z.number().int().positive()).nullish(),
  alpha_pattern: z.record(z.string(), z.number().refine(Number.isFinite, 'expected a finite number')).nullish(),
  fan_in_fan_out: z.boolean().nullish(),
  bias: z.string().nullish(),
  layers_to_transform: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]).nullish(),
  layers_pattern: z.union([z.string(), z.array(z.string())]).nullish(),
  // Fields that must be off/empty: read as unknown and refused by name below.
  use_dora: z.unknown().optional(), modules_to_save: z.unknown().optional(), lora_bias: z.unknown().optional(),
  layer_replication: z.unknown().optional(), target_parameters: z.unknown().optional(),
  trainable_token_indices: z.unknown().optional(), alora_invocation_tokens: z.unknown().optional(),
  use_qalora: z.unknown().optional(),
});
/** Parsed adapter_config.json. */
export type PeftConfig = z.infer<typeof PeftConfigSchema>;

/** Features we refuse when set (truthy and, for lists/maps, non-empty), with why. */
const UNSUPPORTED: Array<[keyof PeftConfig, string]> = [
  ['use_dora', 'DoRA'],
  ['modules_to_save', 'fully trained modules would replace base weights'],
  ['lora_bias', 'a bias on lora_B'],
  ['layer_replication', 'it changes the base model layout'],
  ['target_parameters', 'LoRA on raw parameters'],
  ['trainable_token_indices', 'it changes embedding rows'],
  ['alora_invocation_tokens', 'activated LoRA'],
  ['use_qalora', 'QA-LoRA'],
];
const isSet = (v: unknown): boolean =>
  Array.isArray(v) ? v.length > 0 : v !== null && typeof v === 'object' ? Object.keys(v).length > 0 : Boolean(v);

/** One targeted base module with its resolved rank and scaling. */
export interface TargetModule {
  /** Full base module name in the base's layout, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  layer: number;
  module: LoraModule;
  /** rank_pattern[key] or r. */
  rank: number;
  /** alpha_pattern[key] or lora_alpha. */
  alpha: number;
  /** alpha / rank, or alpha / sqrt(rank) with use_rslora (LoraLayer.update_layer). */
  scaling: number;
}

/** A validated adapter folder, before its tensors are looked at. */
export interface ParsedAdapter {
  dir: string;
  configPath: string;
  /** Path of adapter_model.safetensors. */
  weightsPath: string;
  config: PeftConfig;
  /** Targeted modules, layer-major then in modulesOf(info) order. */
  targets: TargetModule[];
  /** Distinct targeted module kinds, in modulesOf(info) order. */
  targetKinds: LoraModule[];
  /** Non-fatal notes for the log (e.g. fan_in_fan_out reset as PEFT does). */
  warnings: string[];
}

const exists = (p: string) => stat(p).then((s) => s.isFile(), () => false);

/**
 * Read and validate a PEFT LoRA folder's config (cheap: no tensor data, no header but on a
 * multimodal base, whose vision-tower LoRA tensors are ignored with a warning: visionTensors).
 * @param dir folder holding adapter_config.json and adapter_model.safetensors
 * @throws AdapterError naming the file and field: missing files, pickle-only `.bin` weights,
 *   schema errors, unsupported features (DoRA, bias, modules_to_save, ...), target modules that
 *   match nothing in the base, ranks above `info.maxLoraRank`, a scaling (alpha / r) past
 *   float32's range (the engine's), tokens added beyond the base vocabulary (added-vocab.ts).
 */
export async function parseAdapterDir(dir: string, info: ModelInfo): Promise<ParsedAdapter> {
  const configPath = join(dir, 'adapter_config.json');
  const weightsPath = join(dir, 'adapter_model.safetensors');
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (err) {
    throw new AdapterError(`${configPath}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  if (!(await exists(weightsPath))) {
    if (await exists(join(dir, 'adapter_model.bin'))) {
      throw new AdapterError(`${dir}: pickle .bin adapters are not supported; convert to adapter_model.safetensors`);
    }
    throw new AdapterError(`${weightsPath}: not found`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AdapterError(`${configPath}: not valid JSON (${(err as Error).message})`);
  }
  const resolved = resolveConfig(json, info, configPath);
  await checkNoAddedVocab(dir, info.vocabSize);
  if (isMultimodalBase(info)) {
    // Said once, at registration (the registry logs warnings): the header alone, no tensor data.
    const header = await readSafetensorsHeader(weightsPath, { allowedDtypes: LORA_DTYPES }).catch(() => undefined);
    const vision = header ? visionTensors(header, info) : [];
    if (vision.length > 0) {
      resolved.warnings.push(`${vision.length} LoRA tensors of the vision tower (e.g. ${vision[0]}) are ignored: they act on images only, and this server takes text input only`);
    }
  }
  return { dir, weightsPath, ...resolved };
}

/**
 * Validate a parsed adapter_config.json object against the base and resolve its targets.
 * Pure (no I/O); `file` only labels error messages.
 * @throws AdapterError as `parseAdapterDir`.
 */
export function resolveConfig(json: unknown, info: ModelInfo, file = 'adapter_config.json'):
  Pick<ParsedAdapter, 'configPath' | 'config' | 'targets' | 'targetKinds' | 'warnings'> {
  const fail: (msg: string) => never = (msg) => {
    throw new AdapterError(`${file}: ${msg}`);
  };
  const parsed = PeftConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const cfg = parsed.data!;
  if (cfg.peft_type !== 'LORA') fail(`peft_type=${cfg.peft_type} is not supported (only LORA)`);
  if ((cfg.bias ?? 'none') !== 'none') fail(`bias=${cfg.bias} is not supported (only "none")`);
  for (const [field, what] of UNSUPPORTED) {
    if (isSet(cfg[field])) fail(`${field}=${JSON.stringify(cfg[field])} (${what}) is not supported`);
  }
  const warnings: string[] = [];
  if (cfg.fan_in_fan_out) {
    // NOTE: PEFT's dispatch_default resets fan_in_fan_out to False for nn.Linear targets (all of
    // Llama's); lora_A/lora_B are nn.Linear weights either way, so tensors keep [r,in]/[out,r].
    warnings.push('fan_in_fan_out=true ignored: Llama projections are nn.Linear (PEFT sets it to false)');
  }

  const compile = (field: string, pat: string, full = pat): RegExp => {
    try {
      return pyFullmatch(full);
    } catch (err) {
      return fail(`${field}: invalid regex ${JSON.stringify(pat)} (${(err as Error).message})`);
    }
  };
  const all = baseModules(info);
  const prefixes = textPrefixes(info);
  const p = prefixes.length > 1 ? `{${prefixes.join(',')}}` : prefixes[0]!;
  const supported = info.modelType === 'phi3'
    ? `${p}.layers.{i}.self_attn.{qkv,o}_proj and ${p}.layers.{i}.mlp.{gate_up,down}_proj`
    : `${p}.layers.{i}.self_attn.{q,k,v,o}_proj and ${p}.layers.{i}.mlp.{gate,up,down}_proj`;
  let targetSel: ModuleSelector;
  if (cfg.target_modules == null) {
    targetSel = DEFAULT_TARGETS[info.modelType] ?? fail(`target_modules is missing and model_type ${info.modelType} has no PEFT default`);
  } else if (cfg.target_modules === 'all-linear') {
    targetSel = [...modulesOf(info)]; // INCLUDE_LINEAR_LAYERS_SHORTHAND: every linear layer but the output head
  } else {
    targetSel = cfg.target_modules;
  }
  // Every entry of target_modules must name something this base has (PEFT raises the same way).
  const targetRe = typeof targetSel === 'string' ? compile('target_modules', targetSel) : undefined;
  if (typeof targetSel === 'string') {
    if (!all.some((m) => moduleSelected(targetSel, m, targetRe))) fail(`target_modules regex ${JSON.stringify(targetSel)} matches no module of the base (supported: ${supported})`);
  } else {
    if (targetSel.length === 0) fail('target_modules is empty');
    const vision: string[] = [];
    for (const e of targetSel) {
      if (all.some((m) => moduleSelected([e], m))) continue;
      // PEFT's all-linear on a multimodal base also lists the vision tower's own layers.
      if (isMultimodalBase(info) && isVisionEntry(e)) vision.push(e);
      else fail(`target_modules entry ${JSON.stringify(e)} matches no module of the base (supported: ${supported})`);
    }
    if (vision.length > 0) {
      warnings.push(`target_modules ${vision.map((e) => JSON.stringify(e)).join(', ')} name vision-tower layers only: ignored (the vision tower is not served: text input only)`);
    }
  }
  const excl = cfg.exclude_modules;
  const exclRe = typeof excl === 'string' ? compile('exclude_modules', excl) : undefined;
  const layers = cfg.layers_to_transform;
  const useLayers = layers != null && (typeof layers === 'number' || layers.length > 0);

  const rankKeys = Object.keys(cfg.rank_pattern ?? {});
  const alphaKeys = Object.keys(cfg.alpha_pattern ?? {});
  for (const k of rankKeys) compile('rank_pattern key', k, `(.*\\.)?(${k})`);
  for (const k of alphaKeys) compile('alpha_pattern key', k, `(.*\\.)?(${k})`);
  const targets: TargetModule[] = [];
  for (const m of all) {
    if (excl != null && moduleSelected(excl, m, exclRe)) continue;
    if (!moduleSelected(targetSel, m, targetRe)) continue;
    // NOTE: PEFT applies layers_to_transform only to list-form target_modules.
    if (useLayers && typeof targetSel !== 'string' && !layerSelected(m.name, layers, cfg.layers_pattern)) continue;
    const rk = patternKey(rankKeys, [m.name, ...m.aliases]);
    const ak = patternKey(alphaKeys, [m.name, ...m.aliases]);
    const rank = rk === undefined ? cfg.r : cfg.rank_pattern![rk]!;
    const alpha = ak === undefined ? cfg.lora_alpha : cfg.alpha_pattern![ak]!;
    if (rank > info.maxLoraRank) {
      fail(`rank ${rank} of ${m.name}${rk === undefined ? ' (r)' : ` (rank_pattern ${JSON.stringify(rk)})`} is greater than the engine's max LoRA rank ${info.maxLoraRank}`);
    }
    const scaling = cfg.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank;
    // The engine scales in float32: a scaling past its range would be an Inf on every request.
    if (!Number.isFinite(Math.fround(scaling))) {
      fail(`${ak === undefined ? 'lora_alpha' : `alpha_pattern ${JSON.stringify(ak)}`}: alpha ${alpha} / ${cfg.use_rslora ? `sqrt(r ${rank})` : `r ${rank}`} ` +
        `gives scaling ${scaling} for ${m.name}, which is not a finite 32-bit float`);
    }
    targets.push({ name: m.name, layer: m.layer, module: m.module, rank, alpha, scaling });
  }
  if (targets.length === 0) fail('target_modules, exclude_modules and layers_to_transform leave no module of the base targeted');
  const kinds = new Set(targets.map((t) => t.module));
  return { configPath: file, config: cfg, targets, targetKinds: modulesOf(info).filter((k) => kinds.has(k)), warnings };
}

// base_model.model.{prefix}.layers.{i}.{self_attn|mlp}.{x}_proj.lora_{A|B}[.default].weight (peft/utils/save_and_load.py
// strips the adapter name on save; some tools keep `.default` or drop the `base_model.model.` wrapper). The
// prefix is `model`, or for Gemma3ForConditionalGeneration `language_model.model` / `model.language_model`
// (ModelInfo.textModelPrefix; textPrefixes says which this base takes).
const KEY_RE = /^(?:base_model\.model\.)?(model|language_model\.model|model\.language_model)\.layers\.(\d+)\.(\w+)\.(\w+)\.lora_(A|B)(?:\.default)?\.weight$/;
// A multimodal base's vision side (vision_tower.*, multi_modal_projector.*, under model. from transformers 4.52).
const VISION_KEY_RE = /^(?:base_model\.model\.)?(?:model\.)?(?:vision_tower|multi_modal_projector)\./;
const HINTS: Array<[RegExp, string]> = [
  [/lora_magnitude_vector/, ' (DoRA magnitude vectors are not supported)'],
  [/lora_embedding_/, ' (embedding LoRA is not supported)'],
  [/\.bias$/, ' (bias tensors are not supported)'],
];

/**
 * Build the engine's load request from the header of `parsed.weightsPath`.
 * Checks: dtypes in LORA_DTYPES; each tensor is lora_A/lora_B of a targeted projection of a
 * layer < numHiddenLayers; every target has both; lora_A [r, in], lora_B [out, r] with the
 * base's in/out (see `moduleDims`); r of A == r of B == the config's rank for that module.
 * The folder's tokenizer files are checked again (they may have changed since registration).
 * NOTE(why) these checks stay in TS although the engine re-checks shapes and maxLoraRank when it
 * loads the file: they run in the host tier, before a device slot is reserved (a bad file never
 * evicts a resident adapter or waits for a slot), they relate tensors to adapter_config.json
 * (`r`, `rank_pattern`, `target_modules`), which the engine never sees, with a hint ("wrong base
 * model?"), and merges (adapters/merge/) validate their inputs with them without any engine.
 * @throws AdapterError naming the file and tensor.
 */
export async function buildLoadSpec(parsed: ParsedAdapter, info: ModelInfo): Promise<AdapterLoadSpec> {
  return (await buildLoadSpecWithHeader(parsed, info)).spec;
}

/** `buildLoadSpec`, also giving the header it read (the host tier checks the tensors' values with it). @throws as buildLoadSpec. */
export async function buildLoadSpecWithHeader(parsed: ParsedAdapter, info: ModelInfo): Promise<{ spec: AdapterLoadSpec; header: SafetensorsHeader }> {
  await checkNoAddedVocab(parsed.dir, info.vocabSize);
  const header = await readSafetensorsHeader(parsed.weightsPath, { allowedDtypes: LORA_DTYPES });
  return { spec: specFromHeader(parsed, header, info), header };
}

/**
 * The tensors of `header` on a multimodal base's vision side (vision_tower.*, multi_modal_projector.*,
 * with or without the base_model.model. wrapper, either transformers layout), in header order;
 * empty for a text-only base. specFromHeader skips them: they only act on images.
 */
export function visionTensors(header: SafetensorsHeader, info: ModelInfo): string[] {
  return isMultimodalBase(info) ? [...header.tensors.keys()].filter((n) => VISION_KEY_RE.test(n)) : [];
}

/** `buildLoadSpec` without the I/O: validate a header already read. @throws AdapterError. */
export function specFromHeader(parsed: ParsedAdapter, header: SafetensorsHeader, info: ModelInfo): AdapterLoadSpec {
  const file = parsed.weightsPath;
  const fail: (msg: string) => never = (msg) => {
    throw new AdapterError(`${file}: ${msg}`);
  };
  const byName = new Map(parsed.targets.map((t) => [t.name, t]));
  const pairs = new Map<string, { A?: string; B?: string }>();
  const prefixes = textPrefixes(info);
  const vision = new Set(visionTensors(header, info));
  for (const name of header.tensors.keys()) {
    if (vision.has(name)) continue; // acts on images only (parseAdapterDir warned)
    const m = KEY_RE.exec(name);
    if (!m) fail(`tensor ${name} is not a lora_A/lora_B weight of a decoder-layer projection${HINTS.find(([re]) => re.test(name))?.[1] ?? ''}`);
    const [, prefix, layerStr, parent, module, ab] = m;
    if (!prefixes.includes(prefix!)) {
      fail(`tensor ${name}: the ${info.architecture} base keeps its decoder layers under ${prefixes.join(' or ')}, not ${prefix}` +
        (isMultimodalBase(info) ? ' (an adapter of a text-only checkpoint?)' : ' (an adapter of a multimodal checkpoint\'s language model?)'));
    }
    const layer = Number(layerStr);
    // The name in the base's layout: the targets' (an adapter may use the other multimodal spelling).
    const moduleName = `${prefixes[0]}.layers.${layer}.${parent}.${module}`;
    if (layer >= info.numHiddenLayers) fail(`tensor ${name}: layer ${layer} is out of range (the base has ${info.numHiddenLayers} layers)`);
    if (!(modulesOf(info) as readonly string[]).includes(module!) || MODULE_PARENT[module as LoraModule] !== parent) {
      fail(`tensor ${name}: ${parent}.${module} is not one of the base's adaptable projections (${modulesOf(info).join(', ')})`);
    }
    if (!byName.has(moduleName)) fail(`tensor ${name}: module ${moduleName} is not targeted by adapter_config.json target_modules`);
    const pair = pairs.get(moduleName) ?? {};
    if (pair[ab as 'A' | 'B']) fail(`tensor ${name}: duplicate lora_${ab} for ${moduleName} (also ${pair[ab as 'A' | 'B']})`);
    pair[ab as 'A' | 'B'] = name;
    pairs.set(moduleName, pair);
  }
  const modules = parsed.targets.map((t) => {
    const pair = pairs.get(t.name);
    if (!pair) fail(`no lora_A/lora_B tensors for ${t.name}, which adapter_config.json targets`);
    if (!pair.B) fail(`tensor ${pair.A} has no matching lora_B`);
    if (!pair.A) fail(`tensor ${pair.B} has no matching lora_A`);
    const a = header.tensors.get(pair.A)!;
    const b = header.tensors.get(pair.B)!;
    const dims = moduleDims(info, t.module);
    if (a.shape.length !== 2) fail(`tensor ${pair.A}: shape [${a.shape}] is not 2-D [r, ${dims.in}]`);
    if (b.shape.length !== 2) fail(`tensor ${pair.B}: shape [${b.shape}] is not 2-D [${dims.out}, r]`);
    const [rA, inA] = a.shape as [number, number];
    const [outB, rB] = b.shape as [number, number];
    if (rA !== rB) fail(`rank mismatch for ${t.name}: lora_A ${pair.A} has r=${rA} but lora_B ${pair.B} has r=${rB}`);
    if (inA !== dims.in) fail(`tensor ${pair.A}: shape [${a.shape}] does not fit the base's ${t.module} (expected [r, ${dims.in}]): wrong base model?`);
    if (outB !== dims.out) fail(`tensor ${pair.B}: shape [${b.shape}] does not fit the base's ${t.module} (expected [${dims.out}, r]): wrong base model?`);
    if (rA !== t.rank) fail(`tensor ${pair.A}: rank ${rA} but adapter_config.json gives ${t.rank} for ${t.name} (r / rank_pattern)`);
    if (rA > info.maxLoraRank) fail(`tensor ${pair.A}: rank ${rA} is greater than the engine's max LoRA rank ${info.maxLoraRank}`);
    return { layer: t.layer, module: t.module, aName: pair.A, bName: pair.B, scaling: t.scaling, fanInFanOut: false };
  });
  return { path: file, modules };
}
