/**
 * Gemma3ForConditionalGeneration (Gemma 3 4B / 12B / 27B) served as its text model: the gemma3
 * family fixture saved in both transformers layouts (gemma3-multimodal-fixture.ts) gives the text
 * fixture's reference outputs (family-checks.ts: logits, greedy, ensembles, with its adapters saved
 * in either layout, list / regex target_modules, vision-tower LoRA tensors ignored); the config's
 * Gemma3TextConfig defaults; refusals naming the file and field.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { buildLoadSpec, parseAdapterDir } from '../../adapters/peft.ts';
import { Engine } from '../../native/engine.ts';
import { describeFamilyChecks } from './family-checks.ts';
import { familiesDir, materializeFixture, type Fixture } from './family-fixtures.ts';
import { GEMMA3_LAYOUTS, GEMMA3_MM_ARCH, materializeGemma3Multimodal, multimodalConfig } from './gemma3-multimodal-fixture.ts';
import { readSt, testThreads, writeSt } from './helpers.ts';

for (const layout of GEMMA3_LAYOUTS) {
  describeFamilyChecks(`${GEMMA3_MM_ARCH} (${layout}.*) vs the gemma3 reference`, () => materializeGemma3Multimodal(layout));
}

describe(`${GEMMA3_MM_ARCH}: model info, adapters, defaults`, () => {
  const fxs = new Map<string, Fixture>();
  const engines = new Map<string, Engine>();
  before(async () => {
    for (const layout of GEMMA3_LAYOUTS) {
      const fx = materializeGemma3Multimodal(layout);
      fxs.set(layout, fx);
      engines.set(layout, await Engine.load(fx.modelDir, { threads: testThreads, maxLoraRank: 16, numKvBlocks: 64 }));
    }
  });
  after(async () => {
    for (const e of engines.values()) await e.dispose();
    for (const fx of fxs.values()) fx.dispose();
  });

  test('ModelInfo: the architecture, the text model type, the layout, vLLM\'s max_model_len for Gemma 3', () => {
    for (const layout of GEMMA3_LAYOUTS) {
      const info = engines.get(layout)!.info();
      assert.equal(info.architecture, GEMMA3_MM_ARCH);
      assert.equal(info.modelType, 'gemma3_text');
      assert.equal(info.textModelPrefix, layout);
      assert.ok(info.supportedArchitectures.includes(GEMMA3_MM_ARCH));
      assert.equal(info.dtype, 'BF16');
      assert.deepEqual([info.vocabSize, info.hiddenSize, info.numHiddenLayers, info.numAttentionHeads, info.numKeyValueHeads, info.headDim], [1024, 64, 4, 4, 1, 32]);
      // max_position_embeddings 32768 with linear factor 8: Gemma 3's already counts the scaling (vLLM).
      assert.equal(info.derivedMaxModelLen, 32768);
    }
  });

  test('adapter specs: keys of either layout, vision-tower tensors skipped with a warning', async () => {
    const info = engines.get('model.language_model')!.info();
    const dir = fxs.get('model.language_model')!.adaptersDir;
    const all = await parseAdapterDir(join(dir, 'all'), info);
    assert.match(all.warnings.join('\n'), /target_modules "out_proj", "fc2", "fc1" name vision-tower layers only: ignored/);
    assert.match(all.warnings.join('\n'), /6 LoRA tensors of the vision tower \(e\.g\. base_model\.model\.model\.vision_tower\.vision_model\.encoder\.layers\.0\.self_attn\.q_proj\.lora_A\.weight\) are ignored: they act on images only/);
    assert.deepEqual(all.targetKinds, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const spec = await buildLoadSpec(all, info);
    assert.equal(spec.modules.length, 28);
    assert.ok(spec.modules.every((m) => m.aName.startsWith('base_model.model.model.language_model.layers.')));
    // pat was saved under the other layout (an adapter of the other transformers version).
    const pat = await buildLoadSpec(await parseAdapterDir(join(dir, 'pat'), info), info);
    assert.ok(pat.modules.every((m) => m.aName.startsWith('base_model.model.language_model.model.layers.')));
    assert.deepEqual(pat.modules.filter((m) => m.module === 'o_proj').map((m) => m.scaling), [1.5, 1.5, 1.5, 1.5], 'rank_pattern / alpha_pattern o_proj');
    // The targets are named in the base's layout (what merges write and /v1/models shows).
    assert.equal(all.targets[0]!.name, 'model.language_model.layers.0.self_attn.q_proj');
  });

  test('a text_config relying on Gemma3TextConfig defaults (max_position_embeddings 131072, head_dim 256, vocab 262208)', async () => {
    const fx = materializeGemma3Multimodal('model.language_model', (c) => delete c.max_position_embeddings);
    try {
      const e = await Engine.load(fx.modelDir, { threads: 1, numKvBlocks: 8 });
      assert.equal(e.info().maxPositionEmbeddings, 131072);
      assert.equal(e.info().derivedMaxModelLen, 131072);
      await e.dispose();
    } finally {
      fx.dispose();
    }
    // Defaults that do not fit the fixture's weights: the shape error names the tensor and the numbers.
    for (const [field, re] of [
      ['head_dim', /model\.language_model\.layers\.0\.self_attn\.q_proj\.weight has shape \[128, 64\], expected \[1024, 64\] \(num_attention_heads \* head_dim = 1024/],
      ['vocab_size', /model\.safetensors: tensor model\.language_model\.embed_tokens\.weight has shape \[1024, 64\], expected \[262208, 64\]/],
    ] as const) {
      const bad = materializeGemma3Multimodal('model.language_model', (c) => delete c[field]);
      try {
        await assert.rejects(Engine.load(bad.modelDir, { threads: 1, numKvBlocks: 8 }), (err: Error) => (assert.match(err.message, re), true));
      } finally {
        bad.dispose();
      }
    }
  });
});

describe(`${GEMMA3_MM_ARCH}: refusals`, () => {
  let tmp: string;
  let text: Fixture;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'openlora-gemma3-mm-bad-'));
    text = materializeFixture('gemma3');
  });
  after(() => {
    text.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A folder with `config` and the text fixture's weights, optionally renamed by `rename`. */
  function folder(name: string, config: Record<string, unknown>, rename?: (n: string) => string | undefined): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const { header, data } = readSt(join(text.modelDir, 'model.safetensors'));
    const renamed: typeof header = {};
    for (const [k, v] of Object.entries(header)) {
      const n = rename ? rename(k) : k;
      if (n !== undefined) renamed[n] = v;
    }
    writeSt(join(dir, 'model.safetensors'), renamed, data);
    return dir;
  }
  const mm = (edit: (c: Record<string, unknown>) => void = () => {}) => {
    const c = multimodalConfig('language_model.model');
    edit(c);
    return c;
  };
  const legacy = (n: string) => (n === 'lm_head.weight' ? 'language_model.lm_head.weight' : n.replace(/^model\./, 'language_model.model.'));
  const textConfig = JSON.parse(readFileSync(join(familiesDir, 'gemma3', 'config.json'), 'utf8')) as Record<string, unknown>;

  const cases: Array<[string, () => string, RegExp]> = [
    ['text_config missing', () => folder('no-text-config', mm((c) => delete c.text_config), legacy),
      /config\.json: field text_config is missing: Gemma3ForConditionalGeneration keeps its language model's fields/],
    ['text_config not an object', () => folder('text-config-array', mm((c) => (c.text_config = [])), legacy), /config\.json: field text_config must be an object, got array/],
    ['text_config of another model', () => folder('text-config-type', mm((c) => ((c.text_config as Record<string, unknown>).model_type = 'gemma2_text')), legacy),
      /field text_config\.model_type must be "gemma3_text", got "gemma2_text"/],
    ['a bad text_config field names text_config', () => folder('text-config-field', mm((c) => ((c.text_config as Record<string, unknown>).num_hidden_layers = 'four')), legacy),
      /config\.json: text_config: field num_hidden_layers must be an integer, got string/],
    ['weights of a text-only checkpoint', () => folder('causal-weights', mm()),
      /no language-model weights for Gemma3ForConditionalGeneration: expected tensor language_model\.model\.embed_tokens\.weight \(transformers < 4\.52\) or model\.language_model\.embed_tokens\.weight \(it has model\.embed_tokens\.weight: a text-only checkpoint, whose config\.json should say Gemma3ForCausalLM\)/],
    ['a text tensor missing', () => folder('missing-tensor', mm(), (n) => (n === 'model.layers.2.mlp.up_proj.weight' ? undefined : legacy(n))),
      /tensor language_model\.model\.layers\.2\.mlp\.up_proj\.weight not found/],
    ['other multimodal architectures (Gemma 3n)', () => folder('gemma3n', { architectures: ['Gemma3nForConditionalGeneration'], model_type: 'gemma3n', text_config: textConfig, vision_config: {}, audio_config: {} }),
      /field model_type "gemma3n" \(architectures\[0\] "Gemma3nForConditionalGeneration"\) is not supported \(multimodal\) \(supported: .*Gemma3ForCausalLM \(text\), Gemma3ForConditionalGeneration \(text input only\)/],
    ['other multimodal architectures (Mistral 3)', () => folder('mistral3', { architectures: ['Mistral3ForConditionalGeneration'], model_type: 'mistral3', text_config: textConfig, vision_config: {} }),
      /model_type "mistral3" .*is not supported \(multimodal\) \(supported: LlamaForCausalLM, /],
    ['model_type gemma3 under another architecture', () => folder('gemma3-causal-vision', mm((c) => (c.architectures = ['Gemma3ForCausalLM']))),
      /model_type "gemma3" \(architectures\[0\] "Gemma3ForCausalLM"\) is not supported \(multimodal\)/],
    ['Gemma3ForConditionalGeneration with another model_type', () => folder('mm-type', mm((c) => (c.model_type = 'gemma3_text')), legacy),
      /architectures\[0\] "Gemma3ForConditionalGeneration" needs model_type "gemma3", got "gemma3_text"/],
  ];
  for (const [name, make, re] of cases) {
    test(`loadModel refuses: ${name}`, async () => {
      await assert.rejects(Engine.load(make(), { threads: 1 }), (e: Error) => (assert.match(e.message, re), true));
    });
  }
});
