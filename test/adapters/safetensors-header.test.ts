import assert from 'node:assert/strict';
import { open, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readSafetensorsHeader } from '../../adapters/safetensors-header.ts';
import { EXAMPLES, refuses, tmpAdapters, writeSafetensors } from './helpers.ts';

let t: Awaited<ReturnType<typeof tmpAdapters>>;
before(async () => {
  t = await tmpAdapters();
});
after(() => t.cleanup());


const two = { a: { dtype: 'F32', shape: [2, 3] }, b: { dtype: 'BF16', shape: [4] } };

describe('readSafetensorsHeader', () => {
  test('reads a demo adapter header: 56 tensors, metadata, offsets', async () => {
    const h = await readSafetensorsHeader(join(EXAMPLES, 'whisper/adapter_model.safetensors'));
    assert.equal(h.tensors.size, 56);
    assert.deepEqual(h.metadata, { format: 'pt' });
    const a = h.tensors.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight');
    assert.deepEqual(a, { dtype: 'BF16', shape: [8, 704], begin: 0, end: 11264 });
    assert.equal(h.dataStart, 8 + 7136);
  });

  test('accepts a generated file; zero-element tensors are fine', async () => {
    const p = join(t.root, 'ok.safetensors');
    await writeSafetensors(p, { ...two, empty: { dtype: 'F16', shape: [0, 5] } });
    const h = await readSafetensorsHeader(p);
    assert.deepEqual([...h.tensors.keys()], ['a', 'b', 'empty']);
    assert.deepEqual(h.tensors.get('b'), { dtype: 'BF16', shape: [4], begin: 24, end: 32 });
  });

  test('missing file and files shorter than 8 bytes', async () => {
    await refuses(readSafetensorsHeader(join(t.root, 'nope.safetensors')), /nope\.safetensors: cannot open \(ENOENT\)/);
    const p = join(t.root, 'short.safetensors');
    await writeFile(p, Buffer.alloc(5));
    await refuses(readSafetensorsHeader(p), /short\.safetensors: file is 5 bytes/);
  });

  test('header length larger than the file', async () => {
    const p = join(t.root, 'len.safetensors');
    const b = Buffer.alloc(40);
    b.writeBigUInt64LE(1000n);
    await writeFile(p, b);
    await refuses(readSafetensorsHeader(p), /len\.safetensors: header length 1000 runs past the end of the file \(40 bytes\)/);
  });

  test('header length over 100 MB is refused without reading it', async () => {
    const p = join(t.root, 'huge.safetensors');
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(2n ** 40n);
    await writeFile(p, b);
    await refuses(readSafetensorsHeader(p), /exceeds the 100000000-byte limit/);
  });

  test('truncated data region', async () => {
    const p = join(t.root, 'trunc.safetensors');
    await writeSafetensors(p, two);
    const fh = await open(p, 'r');
    const size = (await fh.stat()).size;
    await fh.close();
    await truncate(p, size - 4);
    await refuses(readSafetensorsHeader(p), /trunc\.safetensors: tensor b: data_offsets \[24, 32\] out of range \(data region is 28 bytes\)/);
  });

  test('bad JSON and non-object headers', async () => {
    const p = join(t.root, 'json.safetensors');
    const body = Buffer.from('{"a": ');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(body.length));
    await writeFile(p, Buffer.concat([len, body]));
    await refuses(readSafetensorsHeader(p), /header is not valid JSON/);
    await writeSafetensors(p, {}, [1, 2]);
    await refuses(readSafetensorsHeader(p), /header is not a JSON object/);
  });

  test('malformed entries name the tensor', async () => {
    const p = join(t.root, 'bad.safetensors');
    const cases: Array<[unknown, RegExp]> = [
      [{ x: { dtype: 'F32', shape: [1] } }, /tensor x: data_offsets must be \[begin, end\]/],
      [{ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, /tensor x: shape must be an array of non-negative integers/],
      [{ x: { shape: [1], data_offsets: [0, 4] } }, /tensor x: missing dtype/],
      [{ x: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, /tensor x: unknown dtype "F33"/],
      [{ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, /tensor x: data_offsets span 4 bytes but shape \[2\] of F32 needs 8/],
      [{ x: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, /tensor x: data_offsets \[4, 0\] end before begin/],
      [{ x: 3 }, /tensor x: entry is not an object/],
      [{ __metadata__: 'x' }, /__metadata__ is not an object/],
    ];
    for (const [header, re] of cases) {
      await writeSafetensors(p, { pad: { dtype: 'F32', shape: [1] } }, header);
      await refuses(readSafetensorsHeader(p), re);
    }
  });

  test('offsets out of range, overlapping, with holes, or leaving trailing bytes', async () => {
    const p = join(t.root, 'off.safetensors');
    const f32 = (b: number, e: number) => ({ dtype: 'F32', shape: [(e - b) / 4], data_offsets: [b, e] });
    await writeSafetensors(p, { pad: { dtype: 'F32', shape: [2] } }, { x: f32(0, 4), y: f32(8, 16) });
    await refuses(readSafetensorsHeader(p), /tensor y: data_offsets \[8, 16\] out of range \(data region is 8 bytes\)/);
    await writeSafetensors(p, { pad: { dtype: 'F32', shape: [2] } }, { x: f32(0, 8), y: f32(4, 8) });
    await refuses(readSafetensorsHeader(p), /tensor y: data_offsets \[4, 8\] overlap the previous tensor/);
    await writeSafetensors(p, { pad: { dtype: 'F32', shape: [2] } }, { y: f32(4, 8) });
    await refuses(readSafetensorsHeader(p), /tensor y: data_offsets \[4, 8\] leave a hole at byte 0/);
    await writeSafetensors(p, { pad: { dtype: 'F32', shape: [2] } }, { x: f32(0, 4) });
    await refuses(readSafetensorsHeader(p), /data region is 8 bytes but tensors cover 4 \(trailing bytes\)/);
  });

  test('allowedDtypes refuses other dtypes naming the tensor', async () => {
    const p = join(t.root, 'dt.safetensors');
    await writeSafetensors(p, { w: { dtype: 'I64', shape: [2] } });
    await refuses(readSafetensorsHeader(p, { allowedDtypes: ['F32', 'F16', 'BF16'] }), /tensor w: dtype I64 is not supported \(expected one of F32, F16, BF16\)/);
    assert.equal((await readSafetensorsHeader(p)).tensors.get('w')?.dtype, 'I64');
  });
});
