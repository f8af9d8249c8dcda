/**
 * A small streaming safetensors writer (F32 only: what merges produce).
 *
 * Layout (huggingface/safetensors `docs/source/index.mdx`): [u64 LE N][N bytes JSON header][data].
 * The header is padded with spaces to a multiple of 8 bytes (as the reference writer does, so the
 * data region is 8-byte aligned); tensors are laid out contiguously in the order given, so
 * `data_offsets` tile the data region exactly (what `readSafetensorsHeader` checks).
 *
 * Shapes are declared up front, then each tensor's data is written in order: memory stays at one
 * tensor, whatever the file size.
 */
import { open, type FileHandle } from 'node:fs/promises';

/** A tensor to be written: name and row-major shape (dtype is F32). */
export interface TensorDecl {
  name: string;
  shape: number[];
}

/** The header bytes (length prefix + padded JSON) for `tensors` in order, and the total data size. */
export function encodeHeader(tensors: TensorDecl[], metadata: Record<string, string> = {}): { header: Buffer; dataBytes: number } {
  const h: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) h.__metadata__ = metadata;
  let off = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || t.name in h) throw new Error(`safetensors writer: duplicate or reserved tensor name ${t.name}`);
    const n = t.shape.reduce((a, b) => a * b, 1) * 4;
    h[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  let json = JSON.stringify(h);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const body = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(body.length));
  return { header: Buffer.concat([len, body]), dataBytes: off };
}

/** Writes one file: `create`, then `write` every declared tensor in order, then `close`. */
export class SafetensorsWriter {
  private next = 0;
  private pos: number;

  private constructor(private readonly fh: FileHandle, private readonly tensors: TensorDecl[], headerBytes: number, private readonly path: string) {
    this.pos = headerBytes;
  }

  /** Create (truncate) `path` and write the header. */
  static async create(path: string, tensors: TensorDecl[], metadata: Record<string, string> = { format: 'pt' }): Promise<SafetensorsWriter> {
    const { header } = encodeHeader(tensors, metadata);
    const fh = await open(path, 'w');
    try {
      await fh.write(header, 0, header.length, 0);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new SafetensorsWriter(fh, tensors, header.length, path);
  }

  /** Write the next declared tensor's data (little-endian float32). */
  async write(name: string, data: Float32Array): Promise<void> {
    const t = this.tensors[this.next];
    if (!t || t.name !== name) throw new Error(`${this.path}: expected tensor ${t?.name ?? '(none left)'}, got ${name}`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`${this.path}: tensor ${name} has ${data.length} values, shape [${t.shape}] needs ${n}`);
    // Float32Array is platform-endian; every platform Node supports is little-endian.
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.fh.write(buf, 0, buf.length, this.pos);
    this.pos += buf.length;
    this.next++;
  }

  /** Flush to disk and close. @throws when declared tensors were not all written. */
  async close(): Promise<void> {
    try {
      if (this.next !== this.tensors.length) throw new Error(`${this.path}: ${this.tensors.length - this.next} declared tensors were not written`);
      await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }

  /** Close without checks (on an error path). */
  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
  }
}
