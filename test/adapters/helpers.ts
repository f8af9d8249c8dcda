/**
 * Test helpers: the tiny-shakespeare ModelInfo and the engine double (re-exported), a safetensors
 * writer and a PEFT folder generator.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tinyInfo } from '../native/scripted-engine.ts';
import { DTYPE_BYTES } from '../../adapters/safetensors-header.ts';
import { AdapterError } from '../../adapters/errors.ts';
import { moduleDims, MODULE_PARENT, type LoraModule } from '../../adapters/peft-match.ts';

export const EXAMPLES = fileURLToPath(new URL('../../examples/adapters/', import.meta.url));

// The demo model's ModelInfo and the engine double (test/native/scripted-engine.ts) are shared
// with the protocol tests.
export { ScriptedEngine, tinyInfo } from '../native/scripted-engine.ts';

export interface FakeTensor { dtype: string; shape: number[] }

/** Write a safetensors file with zero-filled data; `header` overrides the computed JSON header. */
export async function writeSafetensors(path: string, tensors: Record<string, FakeTensor>, header?: unknown): Promise<void> {
  const h: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[t.dtype] ?? 4);
    h[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.from(JSON.stringify(header ?? h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  await writeFile(path, Buffer.concat([len, json, Buffer.alloc(off)]));
}

/**
 * lora_A/lora_B entries for `modules` of every layer in `layers` with the base's shapes, named
 * `{prefix}{textPrefix}.layers.{i}...` (textPrefix: ModelInfo.textModelPrefix, default "model").
 */
export function loraTensors(opts: { modules?: LoraModule[]; layers?: number[]; r?: number; dtype?: string; prefix?: string; suffix?: string; textPrefix?: string } = {}): Record<string, FakeTensor> {
  const { modules = ['q_proj', 'v_proj'], layers = [0, 1, 2, 3], r = 8, dtype = 'F32', prefix = 'base_model.model.', suffix = '', textPrefix = 'model' } = opts;
  const info = tinyInfo();
  const out: Record<string, FakeTensor> = {};
  for (const l of layers) {
    for (const m of modules) {
      const d = moduleDims(info, m);
      const base = `${prefix}${textPrefix}.layers.${l}.${MODULE_PARENT[m]}.${m}`;
      out[`${base}.lora_A${suffix}.weight`] = { dtype, shape: [r, d.in] };
      out[`${base}.lora_B${suffix}.weight`] = { dtype, shape: [d.out, r] };
    }
  }
  return out;
}

/** A valid romeo-like adapter_config.json (r 8, alpha 8, q/v). */
export function loraConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], bias: 'none',
    fan_in_fan_out: false, use_rslora: false, use_dora: false, modules_to_save: null, rank_pattern: {}, alpha_pattern: {},
    layers_to_transform: null, layers_pattern: null, some_future_field: { ignored: true }, ...over,
  };
}

/** A temp root with `make(name, config, tensors)` writing adapter folders; `cleanup()` removes it. */
export async function tmpAdapters(): Promise<{
  root: string;
  make: (name: string, config?: Record<string, unknown>, tensors?: Record<string, FakeTensor> | null) => Promise<string>;
  cleanup: () => Promise<void>;
}> {
  const root = await mkdtemp(join(tmpdir(), 'openlora-adapters-'));
  return {
    root,
    async make(name, config = loraConfig(), tensors = loraTensors()) {
      const dir = join(root, name);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'adapter_config.json'), JSON.stringify(config));
      if (tensors) await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors);
      return dir;
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

/** Assert `p` rejects with an `invalid_adapter` AdapterError whose message matches every regex. */
export async function refuses(p: Promise<unknown>, ...res: RegExp[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AdapterError, `expected AdapterError, got ${String(err)}`);
    assert.equal(err.code, 'invalid_adapter');
    for (const re of res) assert.match(err.message, re);
    return true;
  });
}
