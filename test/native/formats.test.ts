/**
 * Model folder variants give the same logits as the original: sharded weights (index.json),
 * F32 storage, tied embeddings (no lm_head tensor), and a qwen2 config with zero q/k/v biases
 * (qwen2 implies attention biases; without the tensors the load is refused), and an adapter
 * stored transposed (PEFT fan_in_fan_out).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { adapterSpec, adaptersDir, loadReference, modelDir, readTensors, writeTensors } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[2];

type Tensors = ReturnType<typeof readTensors>;

describe('model folder formats', () => {
  let tmp: string;
  let tensors: Tensors;
  let config: Record<string, unknown>;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'openlora-formats-'));
    tensors = readTensors(join(modelDir, 'model.safetensors'));
    config = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  function folder(name: string, cfg: Record<string, unknown>): string {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    return dir;
  }

  /** Last-position logits of the reference prompt; the engine is disposed afterwards. */
  async function lastLogits(dir: string): Promise<{ logits: Float32Array; dtype: string; modelType: string }> {
    const engine = await Engine.load(dir, { threads: 1 });
    const out = await engine.forward(prompt.input_ids, []);
    const info = engine.info();
    await engine.dispose();
    return { logits: out.logits.subarray((out.numTokens - 1) * out.vocabSize), dtype: info.dtype, modelType: info.modelType };
  }

  function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
    let m = 0;
    for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
    assert.ok(m < tol, `${what}: max abs diff ${m}`);
  }

  test('sharded weights (model.safetensors.index.json)', async () => {
    const dir = folder('sharded', config);
    const names = Object.keys(tensors);
    const shards = [names.slice(0, 20), names.slice(20)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeTensors(join(dir, file), Object.fromEntries(part.map((n) => [n, tensors[n]])));
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    assertClose((await lastLogits(dir)).logits, prompt.results.base.last_logits, 1e-3, 'sharded');

    weightMap['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
    await assert.rejects(Engine.load(dir, {}), /weight_map says tensor model\.norm\.weight is in model-00001-of-00002\.safetensors, but that shard does not contain it/);
  });

  test('F32 storage', async () => {
    const dir = folder('f32', config);
    const f32: Tensors = {};
    for (const [n, t] of Object.entries(tensors)) {
      const out = Buffer.alloc(t.bytes.length * 2);
      for (let i = 0; i < t.bytes.length / 2; i++) out.writeUInt32LE(t.bytes.readUInt16LE(2 * i) << 16 >>> 0, 4 * i);
      f32[n] = { dtype: 'F32', shape: t.shape, bytes: out };
    }
    writeTensors(join(dir, 'model.safetensors'), f32);
    const r = await lastLogits(dir);
    assert.equal(r.dtype, 'F32');
    assertClose(r.logits, prompt.results.base.last_logits, 1e-3, 'F32');
  });

  test('tied embeddings: lm_head comes from embed_tokens', async () => {
    // Untied, with lm_head := embed_tokens ...
    const untied = folder('untied', config);
    writeTensors(join(untied, 'model.safetensors'), { ...tensors, 'lm_head.weight': tensors['model.embed_tokens.weight'] });
    // ... equals tied without an lm_head tensor.
    const tied = folder('tied', { ...config, tie_word_embeddings: true });
    const { ['lm_head.weight']: _dropped, ...rest } = tensors;
    writeTensors(join(tied, 'model.safetensors'), rest);
    const a = await lastLogits(untied);
    const b = await lastLogits(tied);
    assert.deepEqual(Array.from(a.logits), Array.from(b.logits));
  });

  test('qwen2: q/k/v biases are required and applied', async () => {
    const cfg = { ...config, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] };
    const dir = folder('qwen2', cfg);
    writeTensors(join(dir, 'model.safetensors'), tensors);
    await assert.rejects(Engine.load(dir, {}), /tensor model\.layers\.0\.self_attn\.q_proj\.bias not found/);
    const withBias: Tensors = { ...tensors };
    const zeros = (n: number) => ({ dtype: 'BF16', shape: [n], bytes: Buffer.alloc(2 * n) });
    for (let l = 0; l < 4; l++) {
      withBias[`model.layers.${l}.self_attn.q_proj.bias`] = zeros(256);
      withBias[`model.layers.${l}.self_attn.k_proj.bias`] = zeros(128);
      withBias[`model.layers.${l}.self_attn.v_proj.bias`] = zeros(128);
    }
    writeTensors(join(dir, 'model.safetensors'), withBias);
    const r = await lastLogits(dir);
    assert.equal(r.modelType, 'qwen2');
    assertClose(r.logits, prompt.results.base.last_logits, 1e-3, 'qwen2 with zero biases');
    // A non-zero v bias must change the output (the bias path is live).
    const one = Buffer.alloc(256);
    for (let i = 0; i < 128; i++) one.writeUInt16LE(0x3f80, 2 * i);  // bf16 1.0
    withBias['model.layers.0.self_attn.v_proj.bias'] = { dtype: 'BF16', shape: [128], bytes: one };
    writeTensors(join(dir, 'model.safetensors'), withBias);
    const changed = await lastLogits(dir);
    assert.ok(Math.abs(changed.logits[0] - r.logits[0]) > 1e-4);
  });

  test('rope_scaling variants load; linear scaling changes positions > 0', async () => {
    const linear = folder('linear', { ...config, rope_scaling: { type: 'linear', factor: 2 } });
    const llama3 = folder('llama3', {
      ...config,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 },
    });
    for (const d of [linear, llama3]) writeTensors(join(d, 'model.safetensors'), tensors);
    const a = await lastLogits(linear);
    const b = await lastLogits(llama3);
    for (const r of [a, b]) {
      let m = 0;
      for (let i = 0; i < 1024; i++) m = Math.max(m, Math.abs(r.logits[i] - prompt.results.base.last_logits[i]));
      assert.ok(m > 1e-2, 'scaled RoPE should move the logits');
    }
  });

  test('fan_in_fan_out adapters (stored transposed) give the same logits', async () => {
    const original = readTensors(join(adaptersDir, 'romeo', 'adapter_model.safetensors'));
    const transposed: Tensors = {};
    for (const [name, t] of Object.entries(original)) {
      const [rows, cols] = t.shape;
      const size = t.bytes.length / (rows * cols);
      const out = Buffer.alloc(t.bytes.length);
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < cols; j++) t.bytes.copy(out, (j * rows + i) * size, (i * cols + j) * size, (i * cols + j + 1) * size);
      transposed[name] = { dtype: t.dtype, shape: [cols, rows], bytes: out };
    }
    const file = join(tmp, 'romeo-fifo.safetensors');
    writeTensors(file, transposed);
    const spec = adapterSpec('romeo');
    const engine = await Engine.load(modelDir, { threads: 1 });
    const plain = await engine.loadAdapter(spec);
    await assert.rejects(engine.loadAdapter({ ...spec, path: file }), /has shape \[256, 8\], expected \[r, in\]/);
    const fifo = await engine.loadAdapter({ ...spec, path: file, modules: spec.modules.map((m) => ({ ...m, fanInFanOut: true })) });
    const a = await engine.forward(prompt.input_ids, [{ slot: plain, weight: 1 }]);
    const b = await engine.forward(prompt.input_ids, [{ slot: fifo, weight: 1 }]);
    assert.deepEqual(Array.from(b.logits), Array.from(a.logits));
    await engine.dispose();
  });
});
