/**
 * Header-only safetensors reader for adapter files.
 *
 * Format (huggingface/safetensors `docs/source/index.mdx`, Rust `safetensors/src/tensor.rs`):
 *   [u64 little-endian N][N bytes of UTF-8 JSON header][data region]
 * The header maps tensor name -> {dtype, shape, data_offsets: [begin, end]} where the
 * offsets are byte offsets into the data region, plus an optional `__metadata__` map of
 * strings. The data region must be fully indexed with no holes or overlaps (the reference
 * reader refuses polyglot files), so we check that too.
 *
 * Only the 8-byte prefix and the header are read; tensor data is left for the engine.
 */
import { open } from 'node:fs/promises';
import { AdapterError } from './errors.ts';

/** Bytes per element of every dtype the safetensors format defines. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/** Largest header we accept (the reference reader's limit is the same 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's header entry. `begin`/`end` are byte offsets into the data region. */
export interface TensorEntry {
  dtype: string;
  /** Row-major shape, e.g. [r, in] for lora_A. */
  shape: number[];
  begin: number;
  end: number;
}

/** Options for `readSafetensorsHeader`. */
export interface HeaderOptions {
  /** Dtypes accepted; any other (known) dtype is refused naming the tensor. Default: all of DTYPE_BYTES. */
  allowedDtypes?: readonly string[];
}

/** Result: tensors by name (in header order), the `__metadata__` map and the data region's file offset. */
export interface SafetensorsHeader {
  tensors: Map<string, TensorEntry>;
  metadata: Record<string, string>;
  /** File offset of the data region (8 + header length). */
  dataStart: number;
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Read and validate the header of a safetensors file without reading tensor data.
 *
 * Checks: file holds at least 8 bytes; header length N <= 100 MB and 8 + N <= file size;
 * header is a JSON object; every entry other than `__metadata__` is
 * `{dtype, shape: uint[], data_offsets: [begin, end]}` with a known dtype (and one of
 * `allowedDtypes`), `end - begin == product(shape) * bytes(dtype)`; tensors tile the data
 * region [0, fileSize - 8 - N) exactly (sorted by begin: contiguous, no overlap, nothing past
 * the end, no trailing bytes).
 *
 * @throws AdapterError whose message names the file and, where one is at fault, the tensor.
 */
export async function readSafetensorsHeader(path: string, opts: HeaderOptions = {}): Promise<SafetensorsHeader> {
  const fail: (msg: string) => never = (msg) => {
    throw new AdapterError(`${path}: ${msg}`);
  };
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new AdapterError(`${path}: cannot open (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let headerText: string;
  let fileSize: number;
  let n: number;
  try {
    fileSize = (await fh.stat()).size;
    if (fileSize < 8) fail(`file is ${fileSize} bytes, too short for a safetensors header length (8 bytes)`);
    const prefix = Buffer.alloc(8);
    await fh.read(prefix, 0, 8, 0);
    const big = prefix.readBigUInt64LE(0);
    if (big > BigInt(MAX_HEADER_BYTES)) fail(`header length ${big} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    n = Number(big);
    if (8 + n > fileSize) fail(`header length ${n} runs past the end of the file (${fileSize} bytes): truncated?`);
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 8);
    if (bytesRead !== n) fail(`short read of header (${bytesRead} of ${n} bytes)`);
    headerText = buf.toString('utf8');
  } finally {
    await fh.close();
  }

  let json: unknown;
  try {
    json = JSON.parse(headerText);
  } catch (err) {
    return fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('header is not a JSON object');

  const allowed = opts.allowedDtypes;
  const dataSize = fileSize - 8 - n;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ is not an object');
      metadata = raw as Record<string, string>;
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) fail(`tensor ${name}: entry is not an object`);
    const { dtype, shape, data_offsets: off } = t;
    if (typeof dtype !== 'string') fail(`tensor ${name}: missing dtype`);
    const size = DTYPE_BYTES[dtype];
    if (size === undefined) fail(`tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`);
    if (allowed && !allowed.includes(dtype)) {
      fail(`tensor ${name}: dtype ${dtype} is not supported (expected one of ${allowed.join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isUint)) fail(`tensor ${name}: shape must be an array of non-negative integers`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isUint)) {
      fail(`tensor ${name}: data_offsets must be [begin, end] non-negative integers`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) fail(`tensor ${name}: data_offsets [${begin}, ${end}] end before begin`);
    const want = shape.reduce((a: number, b: number) => a * b, 1) * size;
    if (end - begin !== want) {
      fail(`tensor ${name}: data_offsets span ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${want}`);
    }
    if (end > dataSize) fail(`tensor ${name}: data_offsets [${begin}, ${end}] out of range (data region is ${dataSize} bytes): truncated?`);
    tensors.set(name, { dtype, shape: shape as number[], begin, end });
  }

  // Tiling check, as the reference reader's `validate`: sorted by begin, each starts where the last ended.
  let cursor = 0;
  for (const [name, t] of [...tensors].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end)) {
    if (t.begin !== cursor) {
      fail(`tensor ${name}: data_offsets [${t.begin}, ${t.end}] ${t.begin < cursor ? 'overlap the previous tensor' : `leave a hole at byte ${cursor}`}`);
    }
    cursor = t.end;
  }
  if (cursor !== dataSize) fail(`data region is ${dataSize} bytes but tensors cover ${cursor} (trailing bytes)`);
  return { tensors, metadata, dataStart: 8 + n };
}
