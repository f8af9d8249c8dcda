/**
 * Messages between the grammar service (main thread, ./service.ts) and its worker (./worker.ts).
 *
 * Masks use xgrammar's bitmask layout: Int32Array of ceil(vocabSize / 32) words, bit
 * (id % 32) of word (id >> 5) set when token `id` is allowed.
 */
import type { GrammarSpec } from './spec.ts';
import type { XGrammarVocab } from './vocab.ts';

/** `workerData` of the grammar worker. */
export interface WorkerInit {
  vocab: XGrammarVocab;
  /** Most compiled grammars kept (LRU). */
  cacheSize: number;
}

/** main → worker. */
export type Request =
  | { type: 'open'; id: number; matcherId: number; key: string; spec: GrammarSpec; replay: number[] }
  | { type: 'step'; id: number; items: Array<{ matcherId: number; token: number }> }
  | { type: 'close'; matcherId: number };

/** The outcome of one accepted token. */
export interface StepResult {
  matcherId: number;
  /** False when the grammar refused the token (the matcher state is unchanged). */
  accepted: boolean;
  /** The matcher accepted a stop token (or the grammar cannot go on). */
  terminated: boolean;
  /** The allowed tokens for the next position (absent once terminated or refused). */
  mask?: Int32Array;
}

/** worker → main. */
export type Reply =
  | { type: 'ready'; initMs: number }
  | { type: 'begin'; id: number }
  | { type: 'opened'; id: number; mask: Int32Array; terminated: boolean; compileMs: number; cached: boolean }
  | { type: 'stepped'; id: number; results: StepResult[] }
  /** `poisoned`: a WASM trap other than xgrammar's own abort (e.g. its stack overflowed): the instance may be corrupt, replace the worker. */
  | { type: 'error'; id: number; message: string; poisoned?: boolean }
  | { type: 'fatal'; message: string };
