/**
 * Adapter files in BF16 / F16 stay 16-bit in memory (cpu::sgmv converts them in registers, half
 * the bytes to stream per decode step). The conversion is exact, so an adapter gives
 * bit-identical logits whether its values are stored as F32 or as BF16 / F16, alone or in a
 * batch with other adapters; a 16-bit tensor holding NaN / Inf is refused at load.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Engine } from '../../native/engine.ts';
import { adapterSpec, adaptersDir, loadReference, modelDir, readTensors, writeTensors } from './helpers.ts';

const ref = loadReference();
const prompt = ref.prompts[1];
type Tensors = ReturnType<typeof readTensors>;

/** BF16 bits of a float32 value, rounded to nearest even. */
function bf16Bits(v: number): number {
  const u = new Uint32Array(new Float32Array([v]).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
function fromBf16(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0];
}
/** IEEE binary16 bits of a value (nearest even, subnormals; |v| < 65504 here). */
function f16Bits(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === 0) return sign;
  let e = Math.max(Math.floor(Math.log2(a)), -14);
  if (2 ** e > a) e--;
  e = Math.max(e, -14);
  const x = a / 2 ** (e - 10);
  let q = Math.floor(x);
  const frac = x - q;
  if (frac > 0.5 || (frac === 0.5 && q % 2 === 1)) q++;
  if (q >= 2048) return sign | ((e + 16) << 10);
  if (q < 1024) return sign | q;
  return sign | ((e + 15) << 10) | (q - 1024);
}
function fromF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return s * (e === 0 ? m * 2 ** -24 : (1024 + m) * 2 ** (e - 25));
}

/** The tensors (F32, BF16 or F16) rounded to `dtype`: as F32 files (rounded values) and as 16-bit files. */
function rounded(src: Tensors, dtype: 'BF16' | 'F16'): { f32: Tensors; half: Tensors } {
  const f32: Tensors = {};
  const half: Tensors = {};
  for (const [name, t] of Object.entries(src)) {
    const raw = t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.length);
    const vals =
      t.dtype === 'F32' ? new Float32Array(raw) : Float32Array.from(new Uint16Array(raw), (h) => (t.dtype === 'BF16' ? fromBf16(h) : fromF16(h)));
    const bits = new Uint16Array(vals.length);
    const back = new Float32Array(vals.length);
    for (let i = 0; i < vals.length; i++) {
      bits[i] = dtype === 'BF16' ? bf16Bits(vals[i]) : f16Bits(vals[i]);
      back[i] = dtype === 'BF16' ? fromBf16(bits[i]) : fromF16(bits[i]);
    }
    f32[name] = { dtype: 'F32', shape: t.shape, bytes: Buffer.from(back.buffer) };
    half[name] = { dtype, shape: t.shape, bytes: Buffer.from(bits.buffer) };
  }
  return { f32, half };
}

describe('16-bit adapter files', () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'openlora-lora-dtype-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  for (const dtype of ['BF16', 'F16'] as const) {
    test(`${dtype} and F32 files of the same values give bit-identical logits, alone and in a cat`, async () => {
      const romeo = rounded(readTensors(join(adaptersDir, 'romeo', 'adapter_model.safetensors')), dtype);
      const shout = rounded(readTensors(join(adaptersDir, 'shout', 'adapter_model.safetensors')), dtype);
      const files: Record<string, string> = {};
      for (const [name, t] of [['romeo-f32', romeo.f32], ['romeo-half', romeo.half], ['shout-f32', shout.f32], ['shout-half', shout.half]] as const) {
        files[name] = join(tmp, `${name}-${dtype}.safetensors`);
        writeTensors(files[name], t);
      }
      const engine = await Engine.load(modelDir, { threads: 2 });
      try {
        const load = (name: string, base: string) => engine.loadAdapter({ ...adapterSpec(base), path: files[name] });
        const r32 = await load('romeo-f32', 'romeo');
        const r16 = await load('romeo-half', 'romeo');
        const s32 = await load('shout-f32', 'shout');
        const s16 = await load('shout-half', 'shout');
        const a = await engine.forward(prompt.input_ids, [{ slot: r32, weight: 1 }]);
        const b = await engine.forward(prompt.input_ids, [{ slot: r16, weight: 1 }]);
        assert.deepEqual(Array.from(b.logits), Array.from(a.logits));
        // A `cat` of two adapters (one row, two terms per module).
        const c = await engine.forward(prompt.input_ids, [{ slot: r32, weight: 0.7 }, { slot: s32, weight: 0.5 }]);
        const d = await engine.forward(prompt.input_ids, [{ slot: r16, weight: 0.7 }, { slot: s16, weight: 0.5 }]);
        assert.deepEqual(Array.from(d.logits), Array.from(c.logits));
        const base = await engine.forward(prompt.input_ids, []);
        assert.notDeepEqual(Array.from(b.logits), Array.from(base.logits));
      } finally {
        await engine.dispose();
      }
    });
  }

  test('a 16-bit adapter tensor with NaN or Inf is refused', async () => {
    const { half } = rounded(readTensors(join(adaptersDir, 'romeo', 'adapter_model.safetensors')), 'BF16');
    const name = Object.keys(half)[0];
    half[name].bytes.writeUInt16LE(0x7fc0, 2); // BF16 NaN
    const file = join(tmp, 'nan-bf16.safetensors');
    writeTensors(file, half);
    const engine = await Engine.load(modelDir, { threads: 1 });
    try {
      await assert.rejects(engine.loadAdapter({ ...adapterSpec('romeo'), path: file }), /contains NaN or Inf/);
    } finally {
      await engine.dispose();
    }
  });
});
