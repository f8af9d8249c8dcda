/**
 * Read an adapter's LoRA tensors as float32, one module at a time.
 *
 * Input: a `ParsedAdapter` and its `AdapterLoadSpec` (adapters/peft.ts: `parseAdapterDir` then
 * `buildLoadSpec`, which validated names, shapes, ranks and dtypes against the base). The header is
 * read again here (cheap) for dtypes and data offsets; data ranges are read with positioned reads.
 * Dtypes: F32 (copied), F16 (IEEE half, subnormals and inf/NaN included), BF16 (upper 16 bits of a
 * float32) -> Float32Array.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { AdapterLoadSpec } from '../../native/types.ts';
import { AdapterError } from '../errors.ts';
import { LORA_DTYPES, type ParsedAdapter, type TargetModule } from '../peft.ts';
import { readSafetensorsHeader, type SafetensorsHeader, type TensorEntry } from '../safetensors-header.ts';

/** One module's LoRA pair in float32. */
export interface LoraPair {
  /** Full base module name, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  layer: number;
  module: string;
  rank: number;
  in: number;
  out: number;
  /** The adapter's scaling for this module (alpha / r or alpha / sqrt(r)). */
  scaling: number;
  /** lora_A, [rank, in] row-major. */
  A: Float32Array;
  /** lora_B, [out, rank] row-major. */
  B: Float32Array;
}

/** IEEE 754 half -> number. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Decode a little-endian F32/F16/BF16 buffer into float32. */
export function decodeFloats(buf: Buffer, dtype: string): Float32Array {
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(buf.length / 4);
      for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(buf.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = f16ToF32(buf.readUInt16LE(i * 2));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(buf.length / 2);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < out.length; i++) bits[i] = buf.readUInt16LE(i * 2) << 16;
      return out;
    }
    default:
      throw new AdapterError(`dtype ${dtype} is not supported (expected one of ${LORA_DTYPES.join(', ')})`);
  }
}

/** An open adapter file; `read(name)` gives one module's pair. Call `close()` when done. */
export class AdapterTensors {
  private constructor(
    readonly parsed: ParsedAdapter,
    private readonly fh: FileHandle,
    private readonly header: SafetensorsHeader,
    private readonly byModule: Map<string, { spec: AdapterLoadSpec['modules'][number]; target: TargetModule }>,
  ) {}

  /** Open `spec.path` and index the spec's modules by full module name. @throws AdapterError. */
  static async open(parsed: ParsedAdapter, spec: AdapterLoadSpec): Promise<AdapterTensors> {
    const header = await readSafetensorsHeader(spec.path, { allowedDtypes: LORA_DTYPES });
    const targets = new Map(parsed.targets.map((t) => [`${t.layer}.${t.module}`, t]));
    const byModule = new Map<string, { spec: AdapterLoadSpec['modules'][number]; target: TargetModule }>();
    for (const m of spec.modules) {
      const target = targets.get(`${m.layer}.${m.module}`);
      if (!target) throw new AdapterError(`${spec.path}: module layer ${m.layer} ${m.module} of the load spec is not a target of ${parsed.configPath}`);
      byModule.set(target.name, { spec: m, target });
    }
    let fh: FileHandle;
    try {
      fh = await open(spec.path, 'r');
    } catch (err) {
      throw new AdapterError(`${spec.path}: cannot open (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    return new AdapterTensors(parsed, fh, header, byModule);
  }

  /** Full names of the modules this adapter has, in spec order. */
  modules(): string[] {
    return [...this.byModule.keys()];
  }

  has(name: string): boolean {
    return this.byModule.has(name);
  }

  /** The pair of module `name` (full base module name), or undefined when the adapter lacks it. */
  async read(name: string): Promise<LoraPair | undefined> {
    const e = this.byModule.get(name);
    if (!e) return undefined;
    const a = this.header.tensors.get(e.spec.aName)!;
    const b = this.header.tensors.get(e.spec.bName)!;
    // PEFT folders always store A [r, in] and B [out, r] (buildLoadSpec passes fanInFanOut false).
    const [rank, inF] = e.spec.fanInFanOut ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
    const out = e.spec.fanInFanOut ? b.shape[1]! : b.shape[0]!;
    let A = await this.range(e.spec.aName, a);
    let B = await this.range(e.spec.bName, b);
    if (e.spec.fanInFanOut) {
      A = transpose(A, inF, rank);
      B = transpose(B, rank, out);
    }
    return { name, layer: e.spec.layer, module: e.spec.module, rank, in: inF, out, scaling: e.spec.scaling, A, B };
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
  }

  private async range(name: string, t: TensorEntry): Promise<Float32Array> {
    const n = t.end - t.begin;
    const buf = Buffer.alloc(n);
    const { bytesRead } = await this.fh.read(buf, 0, n, this.header.dataStart + t.begin);
    if (bytesRead !== n) throw new AdapterError(`${this.parsed.weightsPath}: short read of tensor ${name} (${bytesRead} of ${n} bytes)`);
    return decodeFloats(buf, t.dtype);
  }
}

/** [rows, cols] -> [cols, rows]. */
function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]!;
  return out;
}

/** Read every module of an adapter at once (small adapters, tests). */
export async function readAdapterTensors(parsed: ParsedAdapter, spec: AdapterLoadSpec): Promise<Map<string, LoraPair>> {
  const t = await AdapterTensors.open(parsed, spec);
  try {
    const out = new Map<string, LoraPair>();
    for (const name of t.modules()) out.set(name, (await t.read(name))!);
    return out;
  } finally {
    await t.close();
  }
}
