/**
 * Test doubles for the protocol layer: the shared scripted engine (test/native/scripted-engine.ts),
 * an in-memory adapter provider, and an app factory using the real demo tokenizer.
 */
import express from 'express';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdapterInfo, AdapterLease, AdapterProvider } from '../../adapters/types.ts';
import type { Composition } from '../../adapters/composition.ts';
import { pinComposition, type PinnedComposition } from '../../adapters/pin.ts';
import { ScriptedEngine, TINY_INFO, type Script, type ScriptedEngineOptions } from '../native/scripted-engine.ts';
import { ModelNotFoundError } from '../../plugin/errors.ts';
import { loadTokenizer, openLora, type ModelTokenizer, type OpenLoraModel, type OpenLoraRouter } from '../../plugin/index.ts';

// The shared engine double lives with the native tests; re-exported for the protocol tests.
export { ScriptedEngine, TINY_INFO, type Script, type ScriptedEngineOptions } from '../native/scripted-engine.ts';

export const MODEL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../examples/models/tiny-shakespeare');

let tokenizerPromise: Promise<ModelTokenizer> | undefined;
/** The demo model's tokenizer, loaded once per test file. */
export function demoTokenizer(): Promise<ModelTokenizer> {
  return (tokenizerPromise ??= loadTokenizer(MODEL_DIR));
}

/** An AdapterProvider over a fixed list; counts acquires and releases. */
export class FakeAdapters implements AdapterProvider {
  acquired = 0;
  released = 0;
  private releaseWaiters: Array<() => void> = [];

  constructor(
    private readonly base: string,
    private readonly infos: AdapterInfo[] = defaultAdapters(base),
  ) {}

  list(): AdapterInfo[] {
    return this.infos;
  }

  get(name: string): AdapterInfo | undefined {
    return this.infos.find((a) => a.name === name);
  }

  async acquire(name: string): Promise<AdapterLease> {
    const info = this.get(name);
    if (!info) throw new ModelNotFoundError(`${this.base}:${name}`);
    this.acquired++;
    let done = false;
    return {
      name,
      slot: this.infos.indexOf(info),
      release: () => {
        if (done) throw new Error('lease released twice');
        done = true;
        this.released++;
        for (const w of this.releaseWaiters.splice(0)) w();
      },
    };
  }

  /** Compositions asked of `acquireMerged`, in order. */
  merged: Composition[] = [];

  /** A materialised merge: recorded, then served from a synthetic slot 100. */
  async acquireMerged(c: Composition): Promise<AdapterLease> {
    this.merged.push(c);
    this.acquired++;
    let done = false;
    return {
      name: 'merged',
      slot: 100,
      release: () => {
        if (done) throw new Error('lease released twice');
        done = true;
        this.released++;
        for (const w of this.releaseWaiters.splice(0)) w();
      },
    };
  }

  /** Pin a composition over this provider's acquire / acquireMerged (the real pinning decision). */
  pin(c: Composition | undefined): Promise<PinnedComposition> {
    return pinComposition(this, c);
  }

  /** Resolves once every acquired lease has been released. */
  async allReleased(): Promise<void> {
    while (this.released < this.acquired) await new Promise<void>((r) => this.releaseWaiters.push(r));
  }
}

/** The demo adapters' metadata. */
export function defaultAdapters(base: string): AdapterInfo[] {
  const mk = (name: string, rank: number, targets: string[]): AdapterInfo => ({
    name,
    base,
    dir: `/adapters/${name}`,
    rank,
    alpha: rank * 2,
    useRslora: false,
    targetModules: targets,
    created: 1700000000,
  });
  return [mk('shout', 16, ['q_proj', 'v_proj']), mk('whisper', 8, ['q_proj']), mk('romeo', 8, ['q_proj', 'v_proj'])];
}

/**
 * An app serving one fake model named `tiny` with the real demo tokenizer (or `opts.tokenizer`);
 * `opts.toolCallFormat` gives it a tool-call format (the demo template has none).
 */
export async function makeApp(script: Script, opts: ScriptedEngineOptions & { tokenizer?: ModelTokenizer; toolCallFormat?: OpenLoraModel['toolCallFormat'] } = {}) {
  const tokenizer = opts.tokenizer ?? (await demoTokenizer());
  // A real tokenizer (opts.tokenizer) gets a model vocabulary that holds its ids, as real weights would.
  const engine = new ScriptedEngine(script, { vocabSize: Math.max(TINY_INFO.vocabSize, tokenizer.vocabSize), ...opts });
  const adapters = new FakeAdapters('tiny');
  const models: OpenLoraModel[] = [{ name: 'tiny', engine: engine.asEngine(), tokenizer, adapters, toolCallFormat: opts.toolCallFormat }];
  const router: OpenLoraRouter = openLora({ models });
  const app = express();
  app.use(router);
  await router.ready;
  return { app, router, engine, adapters, tokenizer };
}

/** Parse an SSE body into its `data:` payloads (JSON objects, or the string "[DONE]"). */
export function parseSse(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((e) => e.trim() !== '')
    .map((e) => {
      const data = e
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return data === '[DONE]' ? data : JSON.parse(data);
    });
}
