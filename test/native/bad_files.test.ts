/**
 * Broken model and adapter files are refused with a message naming the problem (file, tensor,
 * field, both numbers), no slot is left half-loaded, and the engine keeps working afterwards.
 * The broken files are written to a temp dir from the real ones.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { adapterSpec, adaptersDir, type Header, loadReference, modelDir, params, readSt, type StEntry as Entry, testThreads, writeSt } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[0].input_ids;

describe('bad files', () => {
  let tmp: string;
  let engine: Engine;

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'openlora-bad-'));
    engine = await Engine.load(modelDir, { threads: testThreads, maxLoras: 2, maxLoraRank: 8 });
  });
  after(async () => {
    await engine.dispose();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** A model folder whose model.safetensors (or config.json) was edited. */
  function brokenModel(name: string, edit: { header?: (h: Header) => void; raw?: (file: string) => void; config?: (c: Record<string, unknown>) => void }): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit.config?.(config);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    const file = join(dir, 'model.safetensors');
    if (edit.header) {
      const { header, data } = readSt(join(modelDir, 'model.safetensors'));
      edit.header(header);
      writeSt(file, header, data);
    } else {
      copyFileSync(join(modelDir, 'model.safetensors'), file);
    }
    edit.raw?.(file);
    return dir;
  }

  const entry = (h: Header, name: string) => h[name] as Entry;
  const modelCases: Array<[string, Parameters<typeof brokenModel>[1], RegExp]> = [
    ['truncated file', { raw: (f) => writeFileSync(f, readFileSync(f).subarray(0, 100_000)) }, /out of range: the data region has \d+ bytes \(truncated file\?\)/],
    ['tiny file', { raw: (f) => writeFileSync(f, Buffer.from([1, 2, 3, 4])) }, /truncated: file has 4 bytes/],
    ['header length > file', { raw: (f) => { const b = readFileSync(f); b.writeBigUInt64LE(BigInt(b.length)); writeFileSync(f, b); } }, /header length \d+ is larger than the \d+ bytes/],
    ['header length > 100 MB', { raw: (f) => { const b = readFileSync(f); b.writeBigUInt64LE(1n << 40n); writeFileSync(f, b); } }, /exceeds the 100 MB limit/],
    ['offsets out of range', { header: (h) => { entry(h, 'model.norm.weight').data_offsets[1] = 1e12; } }, /tensor model\.norm\.weight: data_offsets \[\d+, 1000000000000\] out of range/],
    ['shape/size mismatch', { header: (h) => { entry(h, 'model.norm.weight').shape = [255]; } }, /tensor model\.norm\.weight: shape \[255\] x 2 bytes \(BF16\) needs 510 bytes but data_offsets span 512/],
    ['unsupported dtype', { header: (h) => { entry(h, 'model.norm.weight').dtype = 'I16'; } }, /tensor model\.norm\.weight: unsupported dtype I16/],
    ['missing tensor', { header: (h) => { delete h['model.layers.2.mlp.up_proj.weight']; } }, /tensor model\.layers\.2\.mlp\.up_proj\.weight not found/],
    ['overlapping tensors', { header: (h) => { const b = entry(h, 'model.embed_tokens.weight').data_offsets[0]; entry(h, 'model.norm.weight').data_offsets = [b, b + 512]; } }, /tensors .* overlap in the data region/],
    ['weight shape vs config', { config: (c) => { c.intermediate_size = 700; } }, /tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[704, 256\], expected \[700, 256\]/],
    ['hidden_act', { config: (c) => { c.hidden_act = 'gelu'; } }, /field hidden_act must be "silu", got "gelu"/],
    ['architecture', { config: (c) => { c.model_type = 'gpt2'; c.architectures = ['GPT2LMHeadModel']; } }, /model_type "gpt2".*not supported/],
    ['rope_scaling', { config: (c) => { c.rope_scaling = { rope_type: 'ntk-by-parts', factor: 4 }; } }, /rope_scaling\.rope_type "ntk-by-parts" is not supported \(supported: default, linear, llama3, yarn, dynamic, longrope\)/],
    ['mixture of experts (Mixtral)', { config: (c) => { c.model_type = 'mixtral'; c.architectures = ['MixtralForCausalLM']; c.num_local_experts = 8; } },
      /config\.json: field model_type "mixtral" \(architectures\[0\] "MixtralForCausalLM"\) is not supported \(mixture of experts\) \(supported: LlamaForCausalLM, .*Qwen3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM/],
    ['mixture of experts (Qwen3-MoE)', { config: (c) => { c.model_type = 'qwen3_moe'; c.architectures = ['Qwen3MoeForCausalLM']; c.num_experts = 128; } },
      /model_type "qwen3_moe".*mixture of experts.*supported: /],
    ['multimodal (Llava)', { config: (c) => { c.model_type = 'llava'; c.architectures = ['LlavaForConditionalGeneration']; c.vision_config = {}; } },
      /model_type "llava" \(architectures\[0\] "LlavaForConditionalGeneration"\) is not supported \(multimodal\) \(supported: .*Gemma3ForConditionalGeneration \(text input only\)/],
    ['Gemma 3 with a vision tower but no text_config', { config: (c) => { c.model_type = 'gemma3'; c.architectures = ['Gemma3ForConditionalGeneration']; c.vision_config = {}; } },
      /config\.json: field text_config is missing: Gemma3ForConditionalGeneration keeps its language model's fields/],
    ['gemma hidden_activation', { config: (c) => { c.model_type = 'gemma2'; c.architectures = ['Gemma2ForCausalLM']; c.hidden_activation = 'silu'; } },
      /field hidden_activation must be "gelu_pytorch_tanh", got "silu"/],
  ];
  for (const [name, edit, re] of modelCases) {
    test(`loadModel refuses: ${name}`, async () => {
      const dir = brokenModel(name.replace(/\W+/g, '_'), edit);
      await assert.rejects(Engine.load(dir, { threads: 1 }), (e: Error) => {
        assert.match(e.message, re);
        return true;
      });
    });
  }

  test('loadModel refuses a folder without weights', async () => {
    await assert.rejects(Engine.load(join(tmp, 'nowhere'), {}), /config\.json: cannot open/);
  });

  /** A copy of an adapter file with an edited header (and optionally edited data). */
  function brokenAdapter(name: string, edit: (h: Header) => void): string {
    const { header, data } = readSt(join(adaptersDir, 'romeo', 'adapter_model.safetensors'));
    edit(header);
    const file = join(tmp, `${name}.safetensors`);
    writeSt(file, header, data);
    return file;
  }
  const romeoSpec = adapterSpec('romeo');
  const qA = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
  const qB = 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight';

  const adapterCases: Array<[string, () => Parameters<Engine['loadAdapter']>[0], RegExp]> = [
    ['missing tensor', () => ({ ...romeoSpec, path: brokenAdapter('missing', (h) => { delete h[qB]; }) }), /tensor base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_B\.weight not found/],
    ['wrong-shape tensor', () => ({
      ...romeoSpec,
      path: brokenAdapter('shape', (h) => { const e = entry(h, qA); e.shape = [8, 128]; e.data_offsets = [e.data_offsets[0], e.data_offsets[0] + 8 * 128 * 2]; }),
    }), /lora_A\.weight has shape \[8, 128\], expected \[r, in\] with in = 256 for q_proj/],
    ['rank mismatch', () => ({
      ...romeoSpec,
      path: brokenAdapter('rank', (h) => { const e = entry(h, qA); e.shape = [4, 256]; e.data_offsets = [e.data_offsets[0], e.data_offsets[0] + 4 * 256 * 2]; }),
    }), /rank mismatch between .*lora_A\.weight \(r = 4\) and .*lora_B\.weight \(r = 8\)/],
    ['unsupported dtype', () => ({ ...romeoSpec, path: brokenAdapter('dtype', (h) => { entry(h, qA).dtype = 'F8_E4M3'; entry(h, qA).shape = [8, 512]; }) }), /unsupported dtype F8_E4M3/],
    ['rank over maxLoraRank', () => adapterSpec('shout'), /LoRA rank 16 of tensor .* is greater than maxLoraRank 8/],
    ['unknown file', () => ({ ...romeoSpec, path: join(tmp, 'nope.safetensors') }), /nope\.safetensors: cannot open/],
    ['layer out of range', () => ({ ...romeoSpec, modules: [{ ...romeoSpec.modules[0], layer: 9 }] }), /layer index out of range \(the base model has 4 layers\)/],
  ];
  for (const [name, spec, re] of adapterCases) {
    test(`loadAdapter refuses: ${name} (no slot left behind)`, async () => {
      await assert.rejects(engine.loadAdapter(spec()), (e: Error) => {
        assert.match(e.message, re);
        return true;
      });
      assert.equal(engine.stats().slotsUsed, 0);
    });
  }

  test('loadAdapter refuses when no slot is free; unloading frees one', async () => {
    const a = await engine.loadAdapter(romeoSpec);
    const b = await engine.loadAdapter(adapterSpec('rs'));
    await assert.rejects(engine.loadAdapter(romeoSpec), /no free adapter slot: all 2 slots/);
    engine.unloadAdapter(a);
    assert.equal(await engine.loadAdapter(romeoSpec), a);
    engine.unloadAdapter(a);
    engine.unloadAdapter(b);
    assert.throws(() => engine.unloadAdapter(b), /slot \d is not loaded/);
  });

  test('the engine still works after all of that', async () => {
    const slot = await engine.loadAdapter(romeoSpec);
    const r = await engine.generate(params(prompt, { adapters: [{ slot, weight: 1 }], maxTokens: 8 })).done;
    assert.deepEqual(r.tokens, ref.prompts[0].results.romeo.greedy.tokens.slice(0, 8));
    engine.unloadAdapter(slot);
  });
});
