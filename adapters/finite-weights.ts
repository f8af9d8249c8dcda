/**
 * The value check of an adapter's LoRA tensors: no NaN or Inf, as the engine's load requires
 * (native/src/lora.cc `readMatrix` refuses such a tensor with the same words).
 *
 * Run by the host tier (adapters/spec-cache.ts) on the weights file it reads whole anyway, so
 * every path to a slot passes it once per fill: a runtime load (which fills the host tier before
 * it answers), the first request of a scanned or configured adapter, a rewritten one, a merge.
 * NOTE(why) the engine keeps its own check (its API is also used without this layer: the CLI,
 * tests); this one runs before a slot is reserved, so a bad file never evicts a resident adapter,
 * and before a runtime load reports success for weights that could never run.
 * The test is on the bits (an all-ones exponent), as the engine's, for F32, F16 and BF16.
 */
import type { AdapterLoadSpec } from '../native/types.ts';
import { AdapterError } from './errors.ts';
import type { SafetensorsHeader } from './safetensors-header.ts';

/** Exponent mask per dtype: a value whose exponent bits are all set is an Inf or a NaN. */
const EXPONENT: Readonly<Record<string, number>> = { F32: 0x7f800000, F16: 0x7c00, BF16: 0x7f80 };

/**
 * Index of the first NaN or Inf among `bytes` read as little-endian `dtype` values, or -1.
 * @throws Error for a dtype other than F32, F16, BF16.
 */
export function firstNonFinite(bytes: Uint8Array, dtype: string): number {
  const mask = EXPONENT[dtype];
  if (mask === undefined) throw new Error(`firstNonFinite: dtype ${dtype} is not a float dtype of LoRA weights`);
  const width = dtype === 'F32' ? 4 : 2;
  // A typed view needs an aligned offset: copy the (rare) unaligned tensor.
  const src = bytes.byteOffset % width === 0 ? bytes : new Uint8Array(bytes);
  const n = Math.floor(src.byteLength / width);
  const values = width === 4 ? new Uint32Array(src.buffer, src.byteOffset, n) : new Uint16Array(src.buffer, src.byteOffset, n);
  for (let i = 0; i < n; i++) if ((values[i]! & mask) === mask) return i;
  return -1;
}

/**
 * NOTE(why): the scan runs on the event loop (~1 ns a value); after this many bytes it yields, so
 * a large adapter (hundreds of MB at rank 64 on an 8B model) never holds other requests' tokens
 * for more than a few milliseconds.
 */
const YIELD_BYTES = 4 << 20;

/**
 * Check every tensor `spec` loads (lora_A and lora_B of each module; tensors it skips, such as a
 * multimodal base's vision tower, are never read) in `file`, the whole weights file whose header is
 * `header`. Little-endian host, as the engine. Yields to the event loop every `YIELD_BYTES`.
 * @throws AdapterError naming the file and the tensor: `FILE: tensor NAME contains NaN or Inf (element I)`.
 */
export async function checkFiniteWeights(spec: AdapterLoadSpec, header: SafetensorsHeader, file: Uint8Array): Promise<void> {
  let sinceYield = 0;
  for (const m of spec.modules) {
    for (const name of [m.aName, m.bName]) {
      const t = header.tensors.get(name);
      if (!t) continue;  // the spec was built from this header: never absent
      const width = t.dtype === 'F32' ? 4 : 2;
      // Pieces of YIELD_BYTES (a multiple of every value width: whole values), scanned between yields.
      for (let off = 0; off < t.end - t.begin; off += YIELD_BYTES) {
        const from = header.dataStart + t.begin + off;
        const to = Math.min(header.dataStart + t.end, from + YIELD_BYTES);
        const i = firstNonFinite(file.subarray(from, to), t.dtype);
        if (i >= 0) throw new AdapterError(`${spec.path}: tensor ${name} contains NaN or Inf (element ${off / width + i})`);
        sinceYield += to - from;  // the bytes scanned (a small tensor's piece is short)
        if (sinceYield >= YIELD_BYTES) {
          sinceYield = 0;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
    }
  }
}
