/**
 * One request → engine sequences → a stream of text deltas per choice.
 *
 * `startGeneration` checks the context window and `logit_bias`, pins the adapter (one lease
 * for all the request's sequences), queues `prompts.length * n` sequences and returns a
 * `Generation`: an async iterator of `ChoiceDelta`s in arrival order, each labelled with its
 * choice index. Every token goes through an incremental detokenizer and a stop string matcher.
 *
 * The response may end before the engine does (a stop string matched: the sequence is
 * cancelled); the lease is released only when the engine has reported the final event of
 * every sequence, so a slot is never freed under a live sequence.
 */
import { randomInt } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Composition } from '../adapters/composition.ts';
import type { PromptLogprobsResult, SequenceEvent, SequenceParams, TokenLogprob } from '../native/types.ts';
import { Channel } from './channel.ts';
import { IncrementalDetokenizer } from './detokenizer.ts';
import { EngineError, InvalidRequestError, ServiceUnavailableError } from './errors.ts';
import { choiceSeed, completionBudget, logitBiasPairs } from './request-checks.ts';
import type { ServedModel } from './registry.ts';
import { StopMatcher } from './stop.ts';
import { allowsAnyToken } from '../native/token-mask.ts';
import { ConstrainedSequence, grammarServiceOf, unsatisfiableGrammar } from './structured/constrain.ts';
import { GrammarService, type SequenceGrammar } from './structured/service.ts';
import type { GrammarSpec } from './structured/spec.ts';

/** The smallest positive normal float32 (2^-126). */
const FLOAT32_MIN_NORMAL = 1.1754943508222875e-38;
const INT32_MAX = 2147483647;

/** Why a choice ended, in OpenAI's words. */
export type FinishReason = 'stop' | 'length';

/** A request, already validated and tokenized. */
export interface GenerateRequest {
  model: ServedModel;
  /** The adapters and how they combine (plugin/resolve.ts), or undefined for the base model. */
  composition?: Composition;
  /** One or more tokenized prompts; each gets `n` choices (choice index = prompt * n + i). */
  prompts: number[][];
  /** Field named by context-length errors: `messages` or `prompt`. */
  promptParam: string;
  n: number;
  /** Requested completion length; default and ceiling is the rest of the context window. */
  maxTokens?: number;
  /** Completion length when maxTokens is not given, capped by what the context leaves (undefined: all of it). */
  defaultMaxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** vLLM's `repetition_penalty` (SequenceParams.repetitionPenalty). */
  repetitionPenalty?: number;
  /** vLLM's `min_p` (SequenceParams.minP). */
  minP?: number;
  /** Token id (decimal string) → bias. */
  logitBias?: Record<string, number>;
  seed?: number;
  stop?: string[];
  /** vLLM's `include_stop_str_in_output`: a matched stop string stays at the end of the text. */
  includeStopStr?: boolean;
  /** vLLM's `ignore_eos`: the model's stop token ids do not end a choice (max_tokens or a stop string does). */
  ignoreEos?: boolean;
  /** vLLM's `stop_token_ids`: more token ids that end a choice (finish_reason `stop`), kept with ignoreEos. */
  stopTokenIds?: number[];
  /**
   * vLLM's `min_tokens`: the engine masks the stop token ids (SequenceParams.minTokens) and stop
   * strings are not matched until a choice has this many tokens. At most `maxTokens`.
   */
  minTokens?: number;
  /** undefined: no logprobs; k >= 0: the chosen token's logprob plus k alternatives. */
  logprobs?: number;
  /**
   * vLLM's `prompt_logprobs` (completions' `echo` with `logprobs`): k >= 0 also scores every
   * prompt token after the first, with k alternatives, under the request's adapters
   * (Generation.promptLogprobs). Not with an ensemble.
   */
  promptLogprobs?: number;
  /** The request field that asked for promptLogprobs (`echo`, `prompt_logprobs`), named by its 400s. */
  promptLogprobsParam?: string;
  /**
   * Constrain every choice's output to this grammar (plugin/structured/): each sequence gets its
   * own matcher, and the engine samples each token under the matcher's mask.
   */
  grammar?: GrammarSpec;
  /** Called for every token the engine reports for a choice (metrics: TTFT, ITL). */
  onToken?: (index: number) => void;
  /** Aborts when the client leaves: a merge it waits for stops unless another request waits for it (AdapterProvider.pin). */
  signal?: AbortSignal;
}

/** The logprob of one generated token and its top alternatives. */
export interface TokenInfo {
  id: number;
  logprob: number;
  top: TokenLogprob[];
}

/** New output of one choice. */
export interface ChoiceDelta {
  index: number;
  /** New text (may be ''). */
  text: string;
  /** Logprobs of the tokens consumed since the previous delta of this choice (when requested). */
  tokens: TokenInfo[];
  /** Set on the last delta of the choice. */
  finishReason: FinishReason | null;
  /** Tokens the choice has generated so far, this delta's included (vLLM's continuous usage stats). */
  completionTokens: number;
}

/** OpenAI usage counts. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

interface ChoiceState {
  index: number;
  seqId: number;
  maxTokens: number;
  detok: IncrementalDetokenizer;
  stop: StopMatcher;
  finished: boolean;
  engineDone: boolean;
  completionTokens: number;
  pending: TokenInfo[];
  onEngineDone: () => void;
  /** The grammar driver of a constrained choice. */
  constrained?: ConstrainedSequence;
}

/** A running request: iterate it for deltas; `abort()` on client disconnect. */
export class Generation implements AsyncIterable<ChoiceDelta> {
  private readonly channel = new Channel<ChoiceDelta>();
  private readonly choices: ChoiceState[] = [];
  private readonly stopIds: ReadonlySet<number>;
  private finishedCount = 0;
  private aborted = false;
  /** Resolves once every sequence reported its end and the adapter lease is released. */
  settled: Promise<void> = Promise.resolve();

  /** Prompt tokens of the request (counted once per prompt, not per choice). */
  readonly promptTokens: number;

  /**
   * Per prompt, its token logprobs (GenerateRequest.promptLogprobs), computed by the engine
   * between steps; undefined when not requested. Rejects with the engine's error.
   */
  promptLogprobs: Promise<PromptLogprobsResult[] | undefined> = Promise.resolve(undefined);
  /** Aborts the prompt scoring (the client went away, the request failed). */
  private readonly scoring = new AbortController();
  /** Why abort() was called, if it was given a reason (e.g. the 503 of a shutdown). */
  private abortReason: Error | undefined;

  /** @internal Use `startGeneration`. */
  constructor(
    private readonly req: GenerateRequest,
    private readonly wantLogprobs: boolean,
  ) {
    this.stopIds = new Set(stopIdsOf(req));
    this.promptTokens = req.prompts.reduce((s, p) => s + p.length, 0);
  }

  /** Usage so far (final once iteration has ended). */
  get usage(): Usage {
    const completion = this.choices.reduce((s, c) => s + c.completionTokens, 0);
    return { prompt_tokens: this.promptTokens, completion_tokens: completion, total_tokens: this.promptTokens + completion };
  }

  /** Number of choices. */
  get size(): number {
    return this.choices.length;
  }

  [Symbol.asyncIterator](): AsyncIterator<ChoiceDelta> {
    return this.channel[Symbol.asyncIterator]();
  }

  /**
   * Cancel every unfinished sequence. Without `reason` the iteration ends quietly (the client
   * went away); with one, the iterator throws it (e.g. 503 at shutdown).
   */
  abort(reason?: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.cancelLive();
    if (reason) this.channel.fail(reason);
    else this.channel.close();
  }

  /** @internal Queue all sequences; on failure cancels what was queued and rethrows. */
  launch(params: Omit<SequenceParams, 'promptIds' | 'maxTokens' | 'seed'>, seed: number, lease: { release(): void }, grammars: SequenceGrammar[] = []): void {
    const { model, prompts, n } = this.req;
    const ends: Promise<void>[] = [];
    // Choices whose one greedy token comes from the prompt's scoring (greedyFromScoring), by prompt.
    const fromScoring: Array<{ c: ChoiceState; prompt: number }> = [];
    const greedy = this.req.promptLogprobs !== undefined && greedyFromScoring(params, grammars.length > 0);
    try {
      prompts.forEach((promptIds, p) => {
        const maxTokens = completionBudget(promptIds.length, model.info.maxModelLen, this.req.maxTokens, this.req.promptParam, this.req.defaultMaxTokens);
        for (let i = 0; i < n; i++) {
          const index = p * n + i;
          let onEngineDone!: () => void;
          const end = new Promise<void>((r) => (onEngineDone = r));
          const c: ChoiceState = {
            index,
            seqId: -1,
            maxTokens,
            detok: new IncrementalDetokenizer(model.tokenizer, promptIds),
            stop: new StopMatcher(this.req.stop, this.req.includeStopStr),
            finished: false,
            engineDone: false,
            completionTokens: 0,
            pending: [],
            onEngineDone,
          };
          if (maxTokens === 0) {
            // Completions' echo with max_tokens 0 (vLLM's echo without generation): the choice is the prompt alone.
            grammars[index]?.close();
            c.engineDone = true;
            this.choices.push(c);
            this.finish(c, 'length');
            continue;
          }
          if (greedy && maxTokens === 1) {
            // lm-evaluation-harness's loglikelihood shape (echo + logprobs, max_tokens 1, greedy):
            // the scoring runs the row after the prompt too, and its most likely token is this
            // choice's token, as a greedy sequence would sample it: no second prefill of the prompt.
            ends.push(end);
            this.choices.push(c);
            fromScoring.push({ c, prompt: p });
            continue;
          }
          const seqParams: SequenceParams = { ...params, promptIds, maxTokens, seed: choiceSeed(seed, index) };
          const grammar = grammars[index];
          let handle: { setTokenMask(mask: Int32Array): void } | undefined;
          if (grammar) {
            c.constrained = new ConstrainedSequence(grammar, (mask) => handle?.setTokenMask(mask), (err) => this.fail(err), model.info.vocabSize);
            seqParams.constrained = true;
            seqParams.tokenMask = grammar.mask;
          }
          const started = model.engine.generate(seqParams, (ev) => this.onEvent(c, ev));
          handle = started;
          c.seqId = started.seqId;
          ends.push(end);
          this.choices.push(c);
        }
      });
      const topN = this.req.promptLogprobs;
      if (topN !== undefined) {
        const signal = this.scoring.signal;
        setMaxListeners(prompts.length + 1, signal);  // one listener per prompt's scoring (up to 128 prompts)
        const nextTopN = fromScoring.length > 0 ? Math.max(1, params.logprobs) : 0;
        const scored = Promise.all(prompts.map((promptIds) => model.engine.promptLogprobs(promptIds, params.adapters, topN, signal, nextTopN)));
        if (fromScoring.length > 0) {
          void scored.then(
            (results) => {
              for (const { c, prompt } of fromScoring) this.onEvent(c, this.scoredToken(results[prompt]!, params.logprobs));
            },
            () => {
              for (const { c } of fromScoring) {
                c.engineDone = true;
                c.onEngineDone();  // the scoring's failure reaches the route through promptLogprobs
              }
            },
          );
        }
        // A scoring cut by abort(reason) fails with that reason (a shutdown's 503), not the engine's "cancelled".
        this.promptLogprobs = scored.catch((err: unknown) => Promise.reject(this.abortReason ?? err));
        this.promptLogprobs.catch(() => undefined);  // awaited by the route; never an unhandled rejection
        // The adapters stay pinned until the scoring is done too; its failure reaches whoever awaits promptLogprobs.
        ends.push(scored.then(
          () => undefined,
          () => undefined,
        ));
      }
    } catch (err) {
      // Release the slot only after the sequences already queued have ended.
      for (const g of grammars.slice(this.choices.length)) g.close();
      this.cancelLive();
      this.settled = Promise.all(ends).then(() => lease.release());
      throw err;
    }
    this.settled = (async () => {
      try {
        await Promise.all(ends);
      } finally {
        lease.release();
      }
    })();
  }

  /** The event a greedy one-token sequence would send, from its prompt's scoring (nextTopIds). */
  private scoredToken(r: PromptLogprobsResult, logprobs: number): SequenceEvent {
    const ids = r.nextTopIds!;
    const lps = r.nextTopLogprobs!;
    const token = ids[0]!;
    const ev: SequenceEvent = { seqId: -1, token, finishReason: this.stopIds.has(token) ? 'stop' : 'length' };
    if (logprobs >= 0) ev.logprob = lps[0]!;
    if (logprobs > 0) ev.topLogprobs = Array.from(ids.subarray(0, logprobs), (t, i) => ({ token: t, logprob: lps[i]! }));
    return ev;
  }

  private cancelLive(): void {
    for (const c of this.choices) if (!c.engineDone && c.seqId >= 0) this.req.model.engine.cancel(c.seqId);
    this.scoring.abort();
  }

  private onEvent(c: ChoiceState, ev: SequenceEvent): void {
    // A constrained sequence samples its next token only once it has that token's mask.
    if (c.constrained && ev.token >= 0 && ev.finishReason === undefined) c.constrained.onToken(ev.token);
    if (!c.finished && !this.aborted && ev.token >= 0) this.onToken(c, ev);
    if (ev.finishReason === undefined) return;
    c.constrained?.close();
    c.engineDone = true;
    c.onEngineDone();
    if (c.finished || this.aborted) return;
    if (ev.finishReason === 'stop' || ev.finishReason === 'length') this.finish(c, ev.finishReason);
    else if (ev.finishReason === 'cancelled') this.fail(new ServiceUnavailableError('The engine stopped before the request finished.'));
    else this.fail(new EngineError(ev.error ?? ev.finishReason));
  }

  private onToken(c: ChoiceState, ev: SequenceEvent): void {
    c.completionTokens++;
    this.req.onToken?.(c.index);
    if (this.stopIds.has(ev.token)) {
      this.finish(c, 'stop');
    } else {
      if (this.wantLogprobs && ev.logprob !== undefined) {
        c.pending.push({ id: ev.token, logprob: ev.logprob, top: ev.topLogprobs ?? [] });
      }
      // vLLM checks no stop condition before min_tokens (its StopChecker): stop strings included.
      const text = c.detok.push(ev.token);
      const r = c.completionTokens < (this.req.minTokens ?? 0) ? { text, stopped: false } : c.stop.push(text);
      if (r.stopped) this.finish(c, 'stop', r.text);
      else if (c.completionTokens >= c.maxTokens && ev.finishReason === undefined) this.finish(c, 'length', r.text);
      else if (r.text || c.pending.length > 0) this.emit(c, r.text, null);
    }
    // The engine keeps going unless it reported the end itself: cancel it.
    if (c.finished && ev.finishReason === undefined) this.req.model.engine.cancel(c.seqId);
  }

  /** End a choice: flush the held-back text (unless a stop string cut it) and emit the last delta. */
  private finish(c: ChoiceState, reason: FinishReason, text = ''): void {
    if (!c.stop.stopped) {
      const r = c.stop.push(c.detok.flush());
      text += r.text;
      if (r.stopped) reason = 'stop';
      else text += c.stop.flush();
    }
    c.finished = true;
    this.emit(c, text, reason);
    if (++this.finishedCount === this.req.prompts.length * this.req.n) this.channel.close();
  }

  private emit(c: ChoiceState, text: string, finishReason: FinishReason | null): void {
    const tokens = c.pending;
    c.pending = [];
    this.channel.push({ index: c.index, text, tokens, finishReason, completionTokens: c.completionTokens });
  }

  private fail(err: Error): void {
    this.aborted = true;
    this.abortReason ??= err;  // a scoring cut by this failure reports it, not its own "cancelled"
    this.cancelLive();
    this.channel.fail(err);
  }
}

/** The ids that end a choice: the model's stop tokens (unless ignore_eos) and the request's stop_token_ids, once each. */
function stopIdsOf(req: GenerateRequest): number[] {
  return [...new Set([...(req.ignoreEos ? [] : req.model.tokenizer.stopTokenIds), ...(req.stopTokenIds ?? [])])];
}

/**
 * Whether a one-token choice can take its token from the prompt's scoring instead of a sequence:
 * greedy (temperature 0) over the model's raw logits, so the scoring's most likely next token is
 * the token the sampler would pick. Anything that changes the logits first (a grammar, logit_bias,
 * penalties, min_tokens' masking, an ensemble's mixture) or keeps EOS (ignore_eos) needs the engine.
 */
function greedyFromScoring(p: Omit<SequenceParams, 'promptIds' | 'maxTokens' | 'seed'>, constrained: boolean): boolean {
  return (
    p.temperature === 0 &&
    !constrained &&
    p.logitBias.length === 0 &&
    p.presencePenalty === 0 &&
    p.frequencyPenalty === 0 &&
    p.repetitionPenalty === undefined &&
    !p.minTokens &&
    p.ensemble === undefined
  );
}

/**
 * Validate, pin the adapter, queue the sequences. Throws (before anything is queued) the 400s
 * for context length and logit_bias, and whatever `AdapterProvider.pin` throws.
 */
export async function startGeneration(req: GenerateRequest): Promise<Generation> {
  const { model } = req;
  const context = model.info.maxModelLen;
  const vocab = Math.max(model.info.vocabSize, model.tokenizer.vocabSize);
  for (const p of req.prompts) {
    if (p.length === 0) throw new InvalidRequestError(`The ${req.promptParam} must not be empty.`, req.promptParam);
    const bad = p.find((id) => id >= vocab);
    if (bad !== undefined) {
      throw new InvalidRequestError(
        `Invalid '${req.promptParam}': token id ${bad} is out of range; this model's vocabulary has ids 0..${vocab - 1}.`,
        req.promptParam,
      );
    }
    completionBudget(p.length, context, req.maxTokens, req.promptParam);
  }
  const badStop = req.stopTokenIds?.find((id) => id >= vocab);
  if (badStop !== undefined) {
    throw new InvalidRequestError(`Invalid 'stop_token_ids': token id ${badStop} is out of range; this model's vocabulary has ids 0..${vocab - 1}.`, 'stop_token_ids');
  }
  const logitBias = logitBiasPairs(req.logitBias, vocab);
  const maxGiven = req.maxTokens ?? req.defaultMaxTokens;  // the endpoint's default counts as vLLM's does
  if (req.minTokens !== undefined && maxGiven !== undefined && req.minTokens > maxGiven) {
    throw new InvalidRequestError(`'min_tokens' (${req.minTokens}) must not exceed max_tokens (${maxGiven}).`, 'min_tokens');
  }
  if (req.minTokens && req.grammar) {
    // NOTE(why): a grammar may be complete before N tokens, and then allows only the end tokens
    // that min_tokens masks: refused rather than silently ignored.
    throw new InvalidRequestError("'min_tokens' cannot be combined with constrained output (response_format, guided_*, tool calls).", 'min_tokens');
  }
  if (req.ignoreEos && req.grammar) {
    // NOTE(why): a finished grammar allows only the end tokens; ignoring them would leave it nothing to allow.
    throw new InvalidRequestError("'ignore_eos' cannot be combined with constrained output (response_format, guided_*, tool calls).", 'ignore_eos');
  }

  const temperature = req.temperature ?? 1;
  const params: Omit<SequenceParams, 'promptIds' | 'maxTokens' | 'seed'> = {
    adapters: [],
    temperature,
    // NOTE(why): the engine takes float32 / int32: a top_p below float32's smallest normal (it would
    // round to 0) keeps only the most likely token either way, and a top_k past int32 keeps all.
    topP: req.topP === undefined ? 1 : Math.max(req.topP, FLOAT32_MIN_NORMAL),
    topK: req.topK === undefined ? -1 : Math.min(req.topK, INT32_MAX),
    presencePenalty: req.presencePenalty ?? 0,
    frequencyPenalty: req.frequencyPenalty ?? 0,
    ...(req.repetitionPenalty !== undefined && req.repetitionPenalty !== 1 ? { repetitionPenalty: req.repetitionPenalty } : {}),
    ...(req.minP ? { minP: req.minP } : {}),
    logitBias,
    stopTokenIds: stopIdsOf(req),
    ...(req.minTokens ? { minTokens: req.minTokens } : {}),
    logprobs: req.logprobs ?? -1,
  };
  const seed = req.seed ?? randomInt(0, 2 ** 32 - 1);
  if (req.promptLogprobs !== undefined && req.composition?.merge.strategy === 'ensemble') {
    // NOTE(why): an ensemble's distribution is a mixture of its members' (SequenceParams.ensemble);
    // the engine scores a prompt under one adapter set only.
    const param = req.promptLogprobsParam ?? 'echo';
    throw new InvalidRequestError(`Prompt logprobs ('${param}') are not supported for an ensemble.`, param);
  }

  const grammars = req.grammar ? await openGrammars(model, req.grammar, req.prompts.length * req.n) : [];
  let pinned: Awaited<ReturnType<typeof model.adapters.pin>>;
  try {
    pinned = await model.adapters.pin(req.composition, req.signal);
  } catch (err) {
    for (const g of grammars) g.close();
    throw err;
  }
  params.adapters = pinned.adapters;
  if (pinned.ensemble) params.ensemble = pinned.ensemble;
  const gen = new Generation(req, req.logprobs !== undefined);
  gen.launch(params, seed, pinned, grammars);
  return gen;
}

/**
 * One matcher per choice for `spec`, from the model's grammar service (started on first use).
 * @throws InvalidRequestError (400 naming the spec's field) when the grammar is refused.
 */
async function openGrammars(model: ServedModel, spec: GrammarSpec, count: number): Promise<SequenceGrammar[]> {
  const service = grammarServiceOf(model, () => new GrammarService(model.tokenizer.grammarVocab(model.info.vocabSize)));
  const opened = await Promise.allSettled(Array.from({ length: count }, () => service.open(spec)));
  const failed = opened.find((r) => r.status === 'rejected');
  if (failed) {
    for (const r of opened) if (r.status === 'fulfilled') r.value.close();
    throw failed.reason;
  }
  const grammars = opened.map((r) => (r as PromiseFulfilledResult<SequenceGrammar>).value);
  const dead = grammars.find((g) => !g.terminated && !allowsAnyToken(g.mask, model.info.vocabSize));
  if (dead) {
    for (const g of grammars) g.close();
    throw unsatisfiableGrammar(dead, 0);
  }
  return grammars;
}

/** A whole (non-streaming) generation: per choice its text, token infos and finish reason. */
export interface CollectedChoices {
  text: string[];
  tokens: TokenInfo[][];
  finish: Array<FinishReason | null>;
}

/**
 * Drain a generation into per-choice results (for non-streaming responses).
 * @param prefix Text each choice starts with (completions' `echo`), by choice index.
 */
export async function collectChoices(gen: Generation, prefix: (index: number) => string = () => ''): Promise<CollectedChoices> {
  const text = Array.from({ length: gen.size }, (_, i) => prefix(i));
  const tokens: TokenInfo[][] = Array.from({ length: gen.size }, () => []);
  const finish: Array<FinishReason | null> = Array.from({ length: gen.size }, () => null);
  for await (const d of gen) {
    text[d.index] += d.text;
    tokens[d.index]!.push(...d.tokens);
    if (d.finishReason) finish[d.index] = d.finishReason;
  }
  return { text, tokens, finish };
}
