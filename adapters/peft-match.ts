/**
 * PEFT's module-name matching rules, ported to TypeScript for Llama-family bases.
 *
 * Module names are those of the Hugging Face base model's `named_modules()`, e.g.
 * `model.layers.0.self_attn.q_proj` (`language_model.model.layers...` or
 * `model.language_model.layers...` in Gemma3ForConditionalGeneration: ModelInfo.textModelPrefix);
 * PEFT matches `target_modules`, `exclude_modules`, `layers_to_transform`/`layers_pattern`,
 * `rank_pattern` and `alpha_pattern` against them.
 * Sources: peft/tuners/tuners_utils.py (`check_target_module_exists`, `_check_exclude_modules`,
 * INCLUDE_LINEAR_LAYERS_SHORTHAND) and peft/utils/other.py (`get_pattern_key`).
 */
import type { ModelInfo } from '../native/types.ts';

/** The seven decoder-layer projections an adapter may target, in spec order. */
export const LORA_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
/**
 * Phi-3's projections (modeling_phi3.py): q/k/v fused into `qkv_proj` ([q | k | v] rows) and
 * gate/up into `gate_up_proj` ([gate | up]); PEFT adapters of Phi-3 target these names. The
 * engine splits a fused pair into its parts at load (native/src/lora.h FusedModule).
 */
export const PHI3_MODULES = ['qkv_proj', 'o_proj', 'gate_up_proj', 'down_proj'] as const;
/** One adaptable projection of some supported family. */
export type LoraModule = (typeof LORA_MODULES)[number] | (typeof PHI3_MODULES)[number];

/** The projections of a base model's decoder layer, in spec order. */
export function modulesOf(info: ModelInfo): readonly LoraModule[] {
  return info.modelType === 'phi3' ? PHI3_MODULES : LORA_MODULES;
}

/** Parent block of each projection in a decoder layer. */
export const MODULE_PARENT: Readonly<Record<LoraModule, 'self_attn' | 'mlp'>> = {
  q_proj: 'self_attn', k_proj: 'self_attn', v_proj: 'self_attn', o_proj: 'self_attn', qkv_proj: 'self_attn',
  gate_proj: 'mlp', up_proj: 'mlp', down_proj: 'mlp', gate_up_proj: 'mlp',
};

/**
 * Where Gemma3ForConditionalGeneration keeps its text decoder (ModelInfo.textModelPrefix):
 * transformers < 4.52 named it `language_model.model`, later versions `model.language_model`
 * (and convert the old names when loading). An adapter of such a base may have been trained
 * under either version, whatever its base checkpoint's layout, so its modules go by both names.
 */
export const MULTIMODAL_TEXT_PREFIXES = ['language_model.model', 'model.language_model'] as const;

/** Whether the base is the language model of a multimodal checkpoint (its vision tower is not served). */
export function isMultimodalBase(info: ModelInfo): boolean {
  return (MULTIMODAL_TEXT_PREFIXES as readonly string[]).includes(info.textModelPrefix);
}

/** The decoder prefixes this base's adapters may name modules under: the base's own first, then the other multimodal spelling. */
export function textPrefixes(info: ModelInfo): string[] {
  const own = info.textModelPrefix;
  return isMultimodalBase(info) ? [own, ...MULTIMODAL_TEXT_PREFIXES.filter((p) => p !== own)] : [own];
}

/**
 * The linear layers of Gemma 3's SigLIP vision tower that no text module shares a name with
 * (`vision_tower.vision_model.encoder.layers.{i}.self_attn.out_proj`, `.mlp.fc1`, `.mlp.fc2`;
 * its q/k/v_proj share the text ones' names). PEFT's `all-linear` on a multimodal base saves
 * them in target_modules; they act on images only.
 */
export const VISION_TOWER_MODULES = ['out_proj', 'fc1', 'fc2'] as const;

/**
 * Whether a target_modules list entry names the vision side of a multimodal base only: one of
 * VISION_TOWER_MODULES, or a path through `vision_tower` / `multi_modal_projector`.
 */
export function isVisionEntry(entry: string): boolean {
  return VISION_TOWER_MODULES.some((v) => entry === v || entry.endsWith(`.${v}`)) || /(^|\.)(vision_tower|multi_modal_projector)(\.|$)/.test(entry);
}

/** A linear module of the base that LoRA can adapt. */
export interface BaseModule {
  /** Full module name in the base's layout, e.g. `model.layers.3.mlp.down_proj`. */
  name: string;
  /** The same module's name in the other layout a multimodal base's adapters may use (else empty). */
  aliases: string[];
  layer: number;
  module: LoraModule;
}

/** Every adaptable module of the base: numHiddenLayers x modulesOf(info), layer-major. */
export function baseModules(info: ModelInfo): BaseModule[] {
  const [own, ...others] = textPrefixes(info);
  const out: BaseModule[] = [];
  for (let layer = 0; layer < info.numHiddenLayers; layer++) {
    for (const module of modulesOf(info)) {
      const tail = `layers.${layer}.${MODULE_PARENT[module]}.${module}`;
      out.push({ name: `${own}.${tail}`, aliases: others.map((p) => `${p}.${tail}`), layer, module });
    }
  }
  return out;
}

/** `selectorMatches` of the module under any of its names (BaseModule.name, then its aliases). */
export function moduleSelected(sel: ModuleSelector, m: BaseModule, compiled?: RegExp): boolean {
  return selectorMatches(sel, m.name, compiled) || m.aliases.some((n) => selectorMatches(sel, n, compiled));
}

/**
 * Input and output features of a projection (nn.Linear(in, out): weight [out, in]).
 * q: hidden -> heads*headDim; k, v: hidden -> kvHeads*headDim; o: heads*headDim -> hidden;
 * gate, up: hidden -> intermediate; down: intermediate -> hidden; Phi-3's qkv: hidden ->
 * (heads + 2 kvHeads) * headDim; gate_up: hidden -> 2 intermediate.
 */
export function moduleDims(info: ModelInfo, module: LoraModule): { in: number; out: number } {
  const q = info.numAttentionHeads * info.headDim;
  const kv = info.numKeyValueHeads * info.headDim;
  const h = info.hiddenSize;
  const i = info.intermediateSize;
  switch (module) {
    case 'q_proj': return { in: h, out: q };
    case 'k_proj': case 'v_proj': return { in: h, out: kv };
    case 'o_proj': return { in: q, out: h };
    case 'gate_proj': case 'up_proj': return { in: h, out: i };
    case 'down_proj': return { in: i, out: h };
    case 'qkv_proj': return { in: h, out: q + 2 * kv };
    case 'gate_up_proj': return { in: h, out: 2 * i };
  }
}

/**
 * Compile a Python `re` pattern as a JS RegExp anchored like `re.fullmatch`.
 * Translates the Python-only spellings `(?P<n>`, `(?P=n)`, `\A`, `\Z`.
 * @throws SyntaxError when the pattern is not a valid (JS) regex.
 */
export function pyFullmatch(pattern: string): RegExp {
  const js = pattern
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?P=(\w+)\)/g, '\\k<$1>')
    .replace(/\\A/g, '^')
    .replace(/\\Z/g, '$');
  return new RegExp(`^(?:${js})$`);
}

/** `target_modules` / `exclude_modules` as PEFT stores them: a list of suffixes or one regex string. */
export type ModuleSelector = string | string[];

/**
 * PEFT's suffix-or-regex test (check_target_module_exists / _check_exclude_modules):
 * a string is a regex that must `re.fullmatch` the full name; a list matches when the name
 * equals an entry or ends with `.` + entry.
 */
export function selectorMatches(sel: ModuleSelector, name: string, compiled?: RegExp): boolean {
  if (typeof sel === 'string') return (compiled ?? pyFullmatch(sel)).test(name);
  return sel.some((e) => name === e || name.endsWith(`.${e}`));
}

/**
 * PEFT's layer filter for list-form target_modules (check_target_module_exists): the layer
 * index is taken with `re.match(r".*\.[^.]*\.(\d+)\.", name)`, or with
 * `.*\.{pattern}\.(\d+)\.` for each layers_pattern; no index found means not targeted.
 */
export function layerSelected(name: string, layers: number | number[], pattern: string | string[] | null | undefined): boolean {
  const pats = pattern == null || pattern.length === 0 ? ['[^.]*'] : typeof pattern === 'string' ? [pattern] : pattern;
  for (const p of pats) {
    const m = new RegExp(`^.*\\.(?:${p})\\.(\\d+)\\.`).exec(name);
    if (m) {
      const idx = Number(m[1]);
      return typeof layers === 'number' ? idx === layers : layers.includes(idx);
    }
  }
  return false;
}

/**
 * PEFT `get_pattern_key`: the first key (in object order) such that
 * `re.match(rf"(.*\.)?({key})$", name)` for the name (or any of the names: a BaseModule's name
 * and aliases); undefined when none matches (PEFT then uses the default r / lora_alpha).
 */
export function patternKey(keys: string[], name: string | readonly string[]): string | undefined {
  const names = typeof name === 'string' ? [name] : name;
  return keys.find((k) => {
    const re = pyFullmatch(`(.*\\.)?(${k})`);
    return names.some((n) => re.test(n));
  });
}
