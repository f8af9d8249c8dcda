import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildLoadSpec, parseAdapterDir, resolveConfig } from '../../adapters/peft.ts';
import { patternKey, selectorMatches } from '../../adapters/peft-match.ts';
import type { ModelInfo } from '../../native/types.ts';
import { EXAMPLES, loraConfig, loraTensors, refuses, tinyInfo, tmpAdapters, type FakeTensor } from './helpers.ts';

const info = tinyInfo();
let t: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  t = await tmpAdapters();
});
after(() => t.cleanup());

/** Parse and build the spec of an adapter folder. */
async function load(dir: string, i = info) {
  const parsed = await parseAdapterDir(dir, i);
  return { parsed, spec: await buildLoadSpec(parsed, i) };
}


describe('demo adapters', () => {
  test('romeo: q/v over 4 layers, F16, scaling 1.0', async () => {
    const { parsed, spec } = await load(join(EXAMPLES, 'romeo'));
    assert.deepEqual(parsed.targetKinds, ['q_proj', 'v_proj']);
    assert.equal(spec.path, join(EXAMPLES, 'romeo/adapter_model.safetensors'));
    assert.equal(spec.modules.length, 8);
    assert.deepEqual(spec.modules.map((m) => `${m.layer}.${m.module}`), ['0.q_proj', '0.v_proj', '1.q_proj', '1.v_proj', '2.q_proj', '2.v_proj', '3.q_proj', '3.v_proj']);
    assert.ok(spec.modules.every((m) => m.scaling === 1 && m.fanInFanOut === false));
    assert.deepEqual(spec.modules[1], {
      layer: 0, module: 'v_proj', scaling: 1, fanInFanOut: false,
      aName: 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight',
      bName: 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight',
    });
  });

  test('rs: o/down, rsLoRA scaling alpha/sqrt(r) = 8/2 = 4.0', async () => {
    const { parsed, spec } = await load(join(EXAMPLES, 'rs'));
    assert.equal(parsed.config.use_rslora, true);
    assert.deepEqual(parsed.targetKinds, ['o_proj', 'down_proj']);
    assert.equal(spec.modules.length, 8);
    assert.ok(spec.modules.every((m) => m.scaling === 4));
  });

  test('shout: r16, 7 modules x 4 layers, scaling 2.0', async () => {
    const { parsed, spec } = await load(join(EXAMPLES, 'shout'));
    assert.equal(parsed.config.r, 16);
    assert.equal(parsed.targets.every((x) => x.rank === 16), true);
    assert.equal(spec.modules.length, 28);
    assert.ok(spec.modules.every((m) => m.scaling === 2));
  });

  test('whisper: bf16 r8, scaling 16/8 = 2.0', async () => {
    const { parsed, spec } = await load(join(EXAMPLES, 'whisper'));
    assert.equal(parsed.config.r, 8);
    assert.equal(spec.modules.length, 28);
    assert.ok(spec.modules.every((m) => m.scaling === 2));
  });
});

describe('config refusals name the field', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['dora', { use_dora: true }, /adapter_config\.json: use_dora=true \(DoRA\) is not supported/],
    ['bias', { bias: 'all' }, /adapter_config\.json: bias=all is not supported/],
    ['mts', { modules_to_save: ['lm_head'] }, /adapter_config\.json: modules_to_save=\["lm_head"\] .*is not supported/],
    ['lorabias', { lora_bias: true }, /lora_bias=true/],
    ['prefix', { peft_type: 'PREFIX_TUNING' }, /peft_type=PREFIX_TUNING is not supported \(only LORA\)/],
    ['rtype', { r: '8' }, /adapter_config\.json: r: .*expected number/],
    ['rover', { r: 128, lora_alpha: 128 }, /rank 128 of model\.layers\.0\.self_attn\.q_proj \(r\) is greater than the engine's max LoRA rank 64/],
    ['rpover', { rank_pattern: { v_proj: 65 } }, /rank 65 of model\.layers\.0\.self_attn\.v_proj \(rank_pattern "v_proj"\) is greater than .* 64/],
    ['notinbase', { target_modules: ['q_proj', 'c_attn'] }, /target_modules entry "c_attn" matches no module of the base/],
    ['lmhead', { target_modules: ['lm_head'] }, /target_modules entry "lm_head" matches no module/],
    ['empty', { target_modules: [] }, /target_modules is empty/],
    ['regexnone', { target_modules: '.*\\.attn\\.c_proj' }, /target_modules regex ".*\\\\.attn\\\\.c_proj" matches no module of the base/],
    ['regexbad', { target_modules: '(q_proj' }, /target_modules: invalid regex "\(q_proj"/],
    ['rpbad', { rank_pattern: { '(q_proj': 4 } }, /rank_pattern key: invalid regex "\(q_proj"/],
    ['excludeall', { exclude_modules: ['q_proj', 'v_proj'] }, /leave no module of the base targeted/],
  ];
  for (const [name, over, re] of cases) {
    test(name, async () => {
      const dir = await t.make(`cfg-${name}`, loraConfig(over));
      await refuses(parseAdapterDir(dir, info), re, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    });
  }

  test('a folder with only a pickle adapter_model.bin', async () => {
    const dir = await t.make('bin-only', loraConfig(), null);
    await writeFile(join(dir, 'adapter_model.bin'), 'PK\x03\x04');
    await refuses(parseAdapterDir(dir, info), /pickle \.bin adapters are not supported; convert to adapter_model\.safetensors/);
  });

  test('missing config, missing weights, invalid JSON', async () => {
    const dir = await t.make('no-weights', loraConfig(), null);
    await refuses(parseAdapterDir(dir, info), /adapter_model\.safetensors: not found/);
    await refuses(parseAdapterDir(join(t.root, 'absent'), info), /adapter_config\.json: cannot read \(ENOENT\)/);
    const bad = await t.make('bad-json');
    await writeFile(join(bad, 'adapter_config.json'), '{"r": 8,');
    await refuses(parseAdapterDir(bad, info), /adapter_config\.json: not valid JSON/);
  });
});

describe('PEFT matching semantics', () => {
  test('target_modules list: equal or ends with "." + entry', () => {
    assert.ok(selectorMatches(['q_proj'], 'model.layers.0.self_attn.q_proj'));
    assert.ok(selectorMatches(['self_attn.q_proj'], 'model.layers.0.self_attn.q_proj'));
    assert.ok(!selectorMatches(['proj'], 'model.layers.0.self_attn.q_proj'));
    assert.ok(selectorMatches('.*\\.(q|v)_proj', 'model.layers.0.self_attn.v_proj'));
    assert.ok(!selectorMatches('q_proj', 'model.layers.0.self_attn.q_proj'), 'regex is a fullmatch');
  });

  test('get_pattern_key: (.*\\.)?key$ fullmatch, first key wins', () => {
    const name = 'model.layers.1.self_attn.q_proj';
    assert.equal(patternKey(['v_proj', 'q_proj'], name), 'q_proj');
    assert.equal(patternKey(['layers.1.self_attn.q_proj'], name), 'layers.1.self_attn.q_proj');
    assert.equal(patternKey(['proj'], name), undefined);
    assert.equal(patternKey(['layers\\.[0-1]\\..*'], name), 'layers\\.[0-1]\\..*');
    assert.equal(patternKey(['(?P<x>q)_proj'], name), '(?P<x>q)_proj');
  });

  test('regex target_modules selects exactly what it fullmatches', async () => {
    const over = { target_modules: 'model\\.layers\\.[01]\\.self_attn\\.(q|v)_proj' };
    const dir = await t.make('regex', loraConfig(over), loraTensors({ layers: [0, 1] }));
    const { spec } = await load(dir);
    assert.deepEqual(spec.modules.map((m) => `${m.layer}.${m.module}`), ['0.q_proj', '0.v_proj', '1.q_proj', '1.v_proj']);
  });

  test('rank_pattern, alpha_pattern and rsLoRA resolve per module (LoraLayer.update_layer)', () => {
    const cfg = loraConfig({ r: 8, lora_alpha: 16, rank_pattern: { 'layers.1.self_attn.q_proj': 4 }, alpha_pattern: { v_proj: 4 } });
    const r = resolveConfig(cfg, info);
    const by = new Map(r.targets.map((x) => [x.name, x]));
    assert.deepEqual(by.get('model.layers.0.self_attn.q_proj'), { name: 'model.layers.0.self_attn.q_proj', layer: 0, module: 'q_proj', rank: 8, alpha: 16, scaling: 2 });
    assert.equal(by.get('model.layers.1.self_attn.q_proj')!.rank, 4);
    assert.equal(by.get('model.layers.1.self_attn.q_proj')!.scaling, 4);
    assert.equal(by.get('model.layers.2.self_attn.v_proj')!.scaling, 0.5);
    const rs = resolveConfig({ ...cfg, use_rslora: true }, info);
    assert.equal(rs.targets.find((x) => x.name === 'model.layers.1.self_attn.q_proj')!.scaling, 16 / 2);
  });

  test('layers_to_transform / layers_pattern / exclude_modules / null target_modules / all-linear', () => {
    const kinds = (over: Record<string, unknown>) => resolveConfig(loraConfig(over), info).targets.map((x) => `${x.layer}.${x.module}`);
    assert.deepEqual(kinds({ layers_to_transform: [1, 3] }), ['1.q_proj', '1.v_proj', '3.q_proj', '3.v_proj']);
    assert.deepEqual(kinds({ layers_to_transform: 2, layers_pattern: 'layers' }), ['2.q_proj', '2.v_proj']);
    assert.throws(() => kinds({ layers_to_transform: 2, layers_pattern: 'h' }), /leave no module/);
    assert.deepEqual(kinds({ exclude_modules: 'model\\.layers\\.[123]\\..*' }), ['0.q_proj', '0.v_proj']);
    assert.deepEqual(kinds({ target_modules: null }), kinds({}));
    assert.equal(kinds({ target_modules: 'all-linear' }).length, 28);
  });

  test('fan_in_fan_out=true is reset as PEFT does for nn.Linear, with a warning', async () => {
    const dir = await t.make('fifo', loraConfig({ fan_in_fan_out: true }));
    const { parsed, spec } = await load(dir);
    assert.match(parsed.warnings[0]!, /fan_in_fan_out=true ignored/);
    assert.ok(spec.modules.every((m) => !m.fanInFanOut));
  });

  test('tensor names with .default and without the base_model.model. prefix', async () => {
    for (const [name, opts] of [['dflt', { suffix: '.default' }], ['noprefix', { prefix: '' }]] as const) {
      const dir = await t.make(name, loraConfig(), loraTensors(opts));
      const { spec } = await load(dir);
      assert.equal(spec.modules.length, 8);
      assert.ok(spec.modules[0]!.aName.startsWith(opts.prefix ?? 'base_model.model.'));
    }
  });
});

describe('a Gemma3ForConditionalGeneration base (its language model under language_model.model / model.language_model)', () => {
  const legacy = tinyInfo({ architecture: 'Gemma3ForConditionalGeneration', modelType: 'gemma3_text', textModelPrefix: 'language_model.model' });
  const newer = tinyInfo({ architecture: 'Gemma3ForConditionalGeneration', modelType: 'gemma3_text', textModelPrefix: 'model.language_model' });
  const names = (over: Record<string, unknown>, i = legacy) => resolveConfig(loraConfig(over), i).targets.map((x) => x.name);

  test('targets are named in the base\'s layout; regexes and pattern keys match either layout', () => {
    assert.deepEqual(names({}).slice(0, 2), ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.v_proj']);
    assert.deepEqual(names({}, newer).slice(0, 2), ['model.language_model.layers.0.self_attn.q_proj', 'model.language_model.layers.0.self_attn.v_proj']);
    // A layout-specific regex of an adapter trained under the other transformers version.
    const re = 'model\\.language_model\\.layers\\.[01]\\.self_attn\\.(q|v)_proj';
    assert.deepEqual(names({ target_modules: re }), names({ target_modules: re }, newer).map((n) => n.replace('model.language_model', 'language_model.model')));
    assert.equal(names({ target_modules: re }).length, 4);
    assert.equal(names({ target_modules: '.*language_model.*\\.(q_proj|o_proj)' }).length, 8);
    assert.throws(() => resolveConfig(loraConfig({ target_modules: re }), info), /matches no module of the base \(supported: model\.layers\.\{i\}/);
    const r = resolveConfig(loraConfig({ rank_pattern: { 'model.language_model.layers.1.self_attn.q_proj': 4 } }), legacy);
    assert.equal(r.targets.find((x) => x.name === 'language_model.model.layers.1.self_attn.q_proj')!.rank, 4);
    assert.deepEqual(names({ exclude_modules: 'model\\.language_model\\.layers\\.[123]\\..*' }), ['language_model.model.layers.0.self_attn.q_proj', 'language_model.model.layers.0.self_attn.v_proj']);
  });

  test('vision-tower entries of an all-linear target list are ignored with a warning (refused on a text-only base)', () => {
    const r = resolveConfig(loraConfig({ target_modules: ['q_proj', 'fc1', 'fc2', 'out_proj', 'vision_tower.vision_model.post_layernorm'] }), newer);
    assert.equal(r.targets.length, 4);
    assert.match(r.warnings[0]!, /target_modules "fc1", "fc2", "out_proj", "vision_tower\.vision_model\.post_layernorm" name vision-tower layers only: ignored/);
    assert.throws(() => resolveConfig(loraConfig({ target_modules: ['q_proj', 'fc1'] }), info), /target_modules entry "fc1" matches no module of the base/);
    assert.throws(() => resolveConfig(loraConfig({ target_modules: ['q_proj', 'c_attn'] }), newer), /entry "c_attn" matches no module of the base \(supported: \{model\.language_model,language_model\.model\}\.layers\.\{i\}\.self_attn/);
  });

  test('keys of either layout load; vision-tower keys are skipped and said at registration', async () => {
    const vision = {
      'base_model.model.model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.lora_A.weight': { dtype: 'F32', shape: [8, 16] },
      'base_model.model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.lora_B.weight': { dtype: 'F32', shape: [16, 8] },
      'base_model.model.multi_modal_projector.lora_A.weight': { dtype: 'BF16', shape: [8, 3] },
    };
    for (const [keys, base] of [['language_model.model', legacy], ['model.language_model', legacy], ['language_model.model', newer]] as const) {
      const dir = await t.make(`mm-${keys}-${base.textModelPrefix}`, loraConfig(), { ...vision, ...loraTensors({ textPrefix: keys }) });
      const { parsed, spec } = await load(dir, base);
      assert.equal(spec.modules.length, 8);
      assert.equal(spec.modules[0]!.aName, `base_model.model.${keys}.layers.0.self_attn.q_proj.lora_A.weight`);
      assert.match(parsed.warnings.join('\n'), /3 LoRA tensors of the vision tower \(e\.g\. base_model\.model\.model\.vision_tower\..*\) are ignored/);
    }
  });

  const cases: Array<[string, ModelInfo, Record<string, FakeTensor>, RegExp]> = [
    ['text-only keys on a multimodal base', legacy, loraTensors(), /tensor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight: the Gemma3ForConditionalGeneration base keeps its decoder layers under language_model\.model or model\.language_model, not model \(an adapter of a text-only checkpoint\?\)/],
    ['multimodal keys on a text-only base', info, loraTensors({ textPrefix: 'model.language_model' }), /the LlamaForCausalLM base keeps its decoder layers under model, not model\.language_model \(an adapter of a multimodal checkpoint's language model\?\)/],
    ['vision keys on a text-only base', info, { ...loraTensors(), 'base_model.model.vision_tower.a.lora_A.weight': { dtype: 'F32', shape: [8, 8] } }, /tensor base_model\.model\.vision_tower\.a\.lora_A\.weight is not a lora_A\/lora_B weight of a decoder-layer projection/],
    ['one module in both layouts', newer, { ...loraTensors({ textPrefix: 'model.language_model' }), ...loraTensors({ textPrefix: 'language_model.model', layers: [2] }) }, /duplicate lora_A for model\.language_model\.layers\.2\.self_attn\.q_proj/],
  ];
  for (const [name, base, tensors, re] of cases) {
    test(`refused: ${name}`, async () => {
      const dir = await t.make(`mm-bad-${name.replace(/\W+/g, '-')}`, loraConfig(), tensors);
      await refuses(load(dir, base), re);
    });
  }
});

describe('tensor refusals name the tensor', () => {
  const q0 = 'base_model.model.model.layers.0.self_attn.q_proj';
  const base = () => loraTensors();
  const cases: Array<[string, Record<string, unknown>, () => Record<string, FakeTensor>, RegExp]> = [
    ['dtype', {}, () => ({ ...base(), [`${q0}.lora_A.weight`]: { dtype: 'F64', shape: [8, 256] } }), /tensor .*q_proj\.lora_A\.weight: dtype F64 is not supported/],
    ['shape', {}, () => ({ ...base(), [`${q0}.lora_A.weight`]: { dtype: 'F32', shape: [8, 512] } }), /tensor .*layers\.0\.self_attn\.q_proj\.lora_A\.weight: shape \[8,512\] does not fit the base's q_proj \(expected \[r, 256\]\)/],
    ['shapeB', {}, () => ({ ...base(), [`${q0.replace('q_proj', 'v_proj')}.lora_B.weight`]: { dtype: 'F32', shape: [256, 8] } }), /v_proj\.lora_B\.weight: shape \[256,8\] does not fit the base's v_proj \(expected \[128, r\]\)/],
    ['3d', {}, () => ({ ...base(), [`${q0}.lora_A.weight`]: { dtype: 'F32', shape: [8, 256, 1] } }), /shape \[8,256,1\] is not 2-D/],
    ['rankAB', {}, () => ({ ...base(), [`${q0}.lora_B.weight`]: { dtype: 'F32', shape: [256, 4] } }), /rank mismatch for model\.layers\.0\.self_attn\.q_proj: lora_A .* has r=8 but lora_B .* has r=4/],
    ['rankcfg', { r: 4 }, () => base(), /q_proj\.lora_A\.weight: rank 8 but adapter_config\.json gives 4 for model\.layers\.0\.self_attn\.q_proj/],
    ['rankmax', {}, () => base(), /rank 8 is greater than the engine's max LoRA rank 4|rank 8 of .* greater than .* 4/],
    ['noB', {}, () => { const x = base(); delete x[`${q0}.lora_B.weight`]; return x; }, /tensor .*q_proj\.lora_A\.weight has no matching lora_B/],
    ['noA', {}, () => { const x = base(); delete x[`${q0}.lora_A.weight`]; return x; }, /q_proj\.lora_B\.weight has no matching lora_A/],
    ['nomodule', {}, () => loraTensors({ layers: [0, 1, 2] }), /no lora_A\/lora_B tensors for model\.layers\.3\.self_attn\.q_proj, which adapter_config\.json targets/],
    ['untargeted', {}, () => ({ ...base(), ...loraTensors({ modules: ['k_proj'], layers: [0] }) }), /k_proj\.lora_A\.weight: module model\.layers\.0\.self_attn\.k_proj is not targeted/],
    ['layer', {}, () => ({ ...base(), ...loraTensors({ layers: [4] }) }), /layers\.4\.self_attn\.q_proj\.lora_A\.weight: layer 4 is out of range \(the base has 4 layers\)/],
    ['embed', {}, () => ({ ...base(), 'base_model.model.model.embed_tokens.lora_embedding_A': { dtype: 'F32', shape: [8, 1024] } }), /tensor .*lora_embedding_A is not a lora_A\/lora_B weight .*\(embedding LoRA is not supported\)/],
    ['magnitude', {}, () => ({ ...base(), [`${q0}.lora_magnitude_vector`]: { dtype: 'F32', shape: [256] } }), /lora_magnitude_vector is not .*\(DoRA magnitude vectors/],
    ['parent', {}, () => ({ ...base(), 'base_model.model.model.layers.0.mlp.q_proj.lora_A.weight': { dtype: 'F32', shape: [8, 256] } }), /mlp\.q_proj is not one of the base's adaptable projections/],
    ['dup', {}, () => ({ ...base(), [`${q0}.lora_A.default.weight`]: { dtype: 'F32', shape: [8, 256] } }), /duplicate lora_A for model\.layers\.0\.self_attn\.q_proj/],
  ];
  for (const [name, over, tensors, re] of cases) {
    test(name, async () => {
      const dir = await t.make(`st-${name}`, loraConfig(over), tensors());
      const i = name === 'rankmax' ? tinyInfo({ maxLoraRank: 4 }) : info;
      // rankmax is caught at config time (cheap), the rest at header time.
      await refuses(load(dir, i), re, /adapter_(model\.safetensors|config\.json)/);
    });
  }
});

describe('added vocabulary (issue 11 item 7)', () => {
  test('added_tokens.json or tokenizer.json ids beyond the base vocabulary: 400 at load and at first use', async () => {
    const a = await t.make('adds-json');
    await writeFile(join(a, 'added_tokens.json'), JSON.stringify({ '<new>': info.vocabSize, '<old>': 3 }));
    await refuses(parseAdapterDir(a, info), /added_tokens\.json/, /adds 1 token/, new RegExp(`vocabulary of ${info.vocabSize}`));

    const b = await t.make('adds-tokenizer');
    const tok = { version: '1.0', added_tokens: [{ id: 1, content: '<s>', special: true }, { id: info.vocabSize + 4, content: '<x>' }], model: { vocab: { a: 0 } } };
    await writeFile(join(b, 'tokenizer.json'), JSON.stringify(tok));
    await refuses(parseAdapterDir(b, info), /tokenizer\.json/, new RegExp(`ids ${info.vocabSize + 4}`));

    // registered while clean, then the folder gains tokens: the first use (load spec) refuses
    const c = await t.make('adds-later');
    const parsed = await parseAdapterDir(c, info);
    await writeFile(join(c, 'added_tokens.json'), JSON.stringify({ '<late>': info.vocabSize + 1 }));
    await refuses(buildLoadSpec(parsed, info), /adds 1 token/);
  });

  test('tokenizer files that add nothing are ignored', async () => {
    const d = await t.make('copies-base-tokenizer');
    await writeFile(join(d, 'added_tokens.json'), JSON.stringify({ '<eot>': info.vocabSize - 1 }));
    await writeFile(join(d, 'tokenizer.json'), JSON.stringify({ added_tokens: [{ id: info.vocabSize - 1, content: '<eot>' }], model: { vocab: { 'x]"': 0 } } }));
    await load(d);
  });
});
