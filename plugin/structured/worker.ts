/**
 * The grammar worker: all xgrammar state of one model lives here (a WASM instance cannot be
 * shared between threads), so compiling a grammar (0.2-2 s for a 128k vocabulary) never
 * blocks the event loop.
 *
 * Holds the model's `TokenizerInfo`, one `GrammarCompiler`, an LRU of compiled grammars keyed
 * by spec hash, and the live per-sequence `GrammarMatcher`s. Protocol: ./protocol.ts. Spawned
 * by ./service.ts through ./worker-boot.mjs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { CompiledGrammar, GrammarMatcher } from '@mlc-ai/web-xgrammar';
import { loadXGrammar } from './xgrammar.ts';
import type { Reply, Request, StepResult, WorkerInit } from './protocol.ts';
import { choiceGrammar, type GrammarSpec } from './spec.ts';

const port = parentPort!;
const init = workerData as WorkerInit;
const send = (m: Reply, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

// NOTE: xgrammar reports errors by printing "[FATAL] file:line: message" to stderr and then
// aborting the call (a JS RuntimeError "Aborted()"). Keep the last lines it printed so an
// error reply can carry xgrammar's own reason; the module stays usable after such an abort.
let printed: string[] = [];
const capture = (chunk: unknown): boolean => {
  printed.push(String(chunk));
  if (printed.length > 20) printed.shift();
  return true;
};
process.stderr.write = capture as typeof process.stderr.write;
console.error = (...args: unknown[]) => void capture(args.join(' '));
console.warn = console.error;

/** xgrammar's message for a failed call, without the source path of its C++ file. */
function reason(err: unknown): string {
  const fatal = printed.map((l) => /\[FATAL\][^:]*:\d+: (.*)/s.exec(l.trim())?.[1]).filter(Boolean).pop();
  printed = [];
  return (fatal ?? (err as Error)?.message ?? String(err)).trim();
}

const xg = loadXGrammar();
const t0 = performance.now();
const { vocab } = init;
const info = await xg.TokenizerInfo.createTokenizerInfo(vocab.encodedVocab, vocab.vocabType, vocab.addPrefixSpace, vocab.vocabSize, vocab.stopTokenIds);
const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
send({ type: 'ready', initMs: performance.now() - t0 });

/** Compiled grammars, least recently used first (Map iteration order). */
const cache = new Map<string, CompiledGrammar>();
const matchers = new Map<number, GrammarMatcher>();

/**
 * Compile one spec with xgrammar. The JSON forms are compact (one line, separators "," and
 * ":"): no whitespace runs a weak model could loop in.
 */
async function compile(spec: GrammarSpec): Promise<CompiledGrammar> {
  switch (spec.kind) {
    case 'json_object':
      return compiler.compileJSONSchema('{"type":"object"}', false, -1, [',', ':'], false);
    case 'json_schema':
      return compiler.compileJSONSchema(JSON.stringify(spec.schema), false, -1, [',', ':'], true);
    case 'regex':
      return compiler.compileStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: spec.pattern } });
    case 'choice':
      return compiler.compileGrammar(choiceGrammar(spec.choices));
    case 'ebnf':
      return compiler.compileGrammar(spec.grammar);
    case 'structural_tag':
      return compiler.compileStructuralTag((await compactJsonContents(spec.tag)) as Record<string, unknown>);
  }
}

/**
 * A structural tag with every `{type: "json_schema"}` content replaced by the compact EBNF of
 * its schema (as `compile` writes JSON: one line, no whitespace runs). xgrammar's own
 * structural-tag JSON allows any whitespace, which a weak model can fill until max_tokens.
 */
async function compactJsonContents(v: unknown): Promise<unknown> {
  if (Array.isArray(v)) return Promise.all(v.map(compactJsonContents));
  if (!v || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  if (o.type === 'json_schema' && 'json_schema' in o) {
    const grammar = await xg.Grammar.fromJSONSchema(JSON.stringify(o.json_schema), false, -1, [',', ':'], true);
    const ebnf = grammar.toString();
    grammar.dispose();
    return { type: 'grammar', grammar: ebnf };
  }
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = await compactJsonContents(x);
  return out;
}

async function compiled(id: number, key: string, spec: GrammarSpec): Promise<{ grammar: CompiledGrammar; ms: number; cached: boolean }> {
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return { grammar: hit, ms: 0, cached: true };
  }
  send({ type: 'begin', id });
  const t = performance.now();
  const grammar = await compile(spec);
  cache.set(key, grammar);
  while (cache.size > init.cacheSize) {
    const [oldest, g] = cache.entries().next().value as [string, CompiledGrammar];
    cache.delete(oldest);
    g.dispose(); // live matchers keep their own reference to the compiled grammar
  }
  return { grammar, ms: performance.now() - t, cached: false };
}

/** The next-token mask of a matcher, copied out of WASM memory. */
async function maskOf(m: GrammarMatcher): Promise<Int32Array> {
  return (await m.getNextTokenBitmask()).slice();
}

async function handle(req: Request): Promise<void> {
  if (req.type === 'close') {
    matchers.get(req.matcherId)?.dispose();
    matchers.delete(req.matcherId);
    return;
  }
  if (req.type === 'open') {
    try {
      const { grammar, ms, cached } = await compiled(req.id, req.key, req.spec);
      const m = await xg.GrammarMatcher.createGrammarMatcher(grammar, vocab.stopTokenIds);
      for (const t of req.replay) m.acceptToken(t);
      matchers.set(req.matcherId, m);
      const mask = await maskOf(m);
      send({ type: 'opened', id: req.id, mask, terminated: m.isTerminated(), compileMs: ms, cached }, [mask.buffer as ArrayBuffer]);
    } catch (err) {
      // NOTE(why): xgrammar's own errors abort the call ("Aborted()") and leave the module usable;
      // any other trap (a schema nested ~70 levels deep overflows its stack: "memory access out of
      // bounds") leaves it corrupt, and every later compile failed the same way.
      const poisoned = err instanceof WebAssembly.RuntimeError && !/Aborted\(/.test(err.message);
      send({ type: 'error', id: req.id, message: reason(err), ...(poisoned ? { poisoned } : {}) });
    }
    return;
  }
  const results: StepResult[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const { matcherId, token } of req.items) {
    const m = matchers.get(matcherId);
    if (!m) {
      results.push({ matcherId, accepted: false, terminated: true });
      continue;
    }
    const accepted = m.acceptToken(token);
    const terminated = m.isTerminated();
    const r: StepResult = { matcherId, accepted, terminated };
    if (accepted && !terminated) {
      r.mask = await maskOf(m);
      transfer.push(r.mask.buffer as ArrayBuffer);
    }
    results.push(r);
  }
  send({ type: 'stepped', id: req.id, results }, transfer);
}

// Requests are handled strictly in order (one at a time), as they arrive.
let chain = Promise.resolve();
port.on('message', (req: Request) => {
  chain = chain.then(() => handle(req)).catch((err) => send({ type: 'fatal', message: reason(err) }));
});
