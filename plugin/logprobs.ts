/**
 * Engine logprobs → the two OpenAI logprobs shapes.
 *
 * Chat: `{content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`.
 * Completions (legacy): `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`;
 * each `top_logprobs` entry has the k most likely tokens and the token itself (OpenAI's and vLLM's
 * "up to logprobs + 1 elements").
 * A token that is only part of a UTF-8 character is shown as `\xNN` escapes; `bytes` is exact.
 */
import type { PromptLogprobsResult } from '../native/types.ts';
import type { TokenInfo } from './generate.ts';
import { tokenDisplay } from './token-bytes.ts';
import type { ModelTokenizer } from './tokenizer.ts';

/** One entry of a chat `top_logprobs` list. */
export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}

/** One entry of chat `logprobs.content`. */
export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}

/** Legacy completions logprobs (the first token of an echoed prompt has null entries: nothing precedes it). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

function entry(tok: ModelTokenizer, id: number, logprob: number): ChatTopLogprob {
  const bytes = tok.tokenBytes(id);
  return { token: tokenDisplay(bytes), logprob, bytes: [...bytes] };
}

/** Chat `logprobs` object for a run of tokens; `topN` alternatives are kept per token. */
export function chatLogprobs(tok: ModelTokenizer, tokens: TokenInfo[], topN: number): { content: ChatTokenLogprob[] } {
  return {
    content: tokens.map((t) => ({
      ...entry(tok, t.id, t.logprob),
      top_logprobs: t.top.slice(0, topN).map((a) => entry(tok, a.token, a.logprob)),
    })),
  };
}

/**
 * Legacy completions `logprobs` for a run of tokens. `offset` is the text offset of the first
 * token in the choice's text; returns the offset after the last one too.
 */
export function completionLogprobs(
  tok: ModelTokenizer,
  tokens: TokenInfo[],
  topN: number,
  offset: number,
): { logprobs: CompletionLogprobs; offset: number } {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const t of tokens) {
    const text = tokenDisplay(tok.tokenBytes(t.id));
    out.tokens.push(text);
    out.token_logprobs.push(t.logprob);
    const top: Record<string, number> = {};
    for (const a of t.top.slice(0, topN)) top[tokenDisplay(tok.tokenBytes(a.token))] = a.logprob;
    if (!(text in top)) top[text] = t.logprob;  // OpenAI / vLLM: the sampled token is always there (up to k + 1 entries)
    out.top_logprobs.push(top);
    out.text_offset.push(offset);
    offset += text.length;
  }
  return { logprobs: out, offset };
}

/**
 * Legacy completions `logprobs` of an echoed prompt (vLLM's prompt logprobs for `echo` with
 * `logprobs`): every prompt token, its logprob given the tokens before it (null for the first)
 * and the `topN` most likely tokens there (null for the first); text offsets count from 0 over
 * the tokens' texts. Returns the offset after the last prompt token (the generated tokens' start).
 * @param ids the prompt's token ids; @param scored the engine's scoring of them (Engine.promptLogprobs).
 */
export function promptCompletionLogprobs(
  tok: ModelTokenizer,
  ids: number[],
  scored: PromptLogprobsResult,
  topN: number,
): { logprobs: CompletionLogprobs; offset: number } {
  const first = tokenDisplay(tok.tokenBytes(ids[0]!));
  const k = scored.topN;
  // Every later prompt token as a generated one would be: its logprob and the top k there.
  const rest: TokenInfo[] = ids.slice(1).map((id, i) => ({
    id,
    logprob: scored.tokenLogprobs[i]!,
    top: Array.from({ length: k }, (_, j) => ({ token: scored.topIds[i * k + j]!, logprob: scored.topLogprobs[i * k + j]! })),
  }));
  const r = completionLogprobs(tok, rest, topN, first.length);
  const out: CompletionLogprobs = {
    tokens: [first, ...r.logprobs.tokens],
    token_logprobs: [null, ...r.logprobs.token_logprobs],
    top_logprobs: [null, ...r.logprobs.top_logprobs],
    text_offset: [0, ...r.logprobs.text_offset],
  };
  return { logprobs: out, offset: r.offset };
}

/** One entry of vLLM's `prompt_logprobs`: a token's logprob, its vocabulary rank (1 = most likely) and its text. */
export interface VllmLogprob {
  logprob: number;
  rank: number;
  decoded_token: string;
}

/**
 * vLLM's `prompt_logprobs` for one prompt: null for the first token, then per prompt token a map
 * from token id (a decimal string) to VllmLogprob holding the token itself and the `topN` most
 * likely tokens there (ranks 1..topN).
 * @param scored the engine's scoring of `ids` (Engine.promptLogprobs) with at least topN alternatives.
 */
export function vllmPromptLogprobs(tok: ModelTokenizer, ids: number[], scored: PromptLogprobsResult, topN: number): Array<Record<string, VllmLogprob> | null> {
  const k = scored.topN;
  return ids.map((id, i) => {
    if (i === 0) return null;
    const at: Record<string, VllmLogprob> = {};
    at[String(id)] = { logprob: scored.tokenLogprobs[i - 1]!, rank: scored.tokenRanks[i - 1]!, decoded_token: tokenDisplay(tok.tokenBytes(id)) };
    for (let j = 0; j < Math.min(topN, k); j++) {
      const t = scored.topIds[(i - 1) * k + j]!;
      if (String(t) in at) continue;
      const lp = scored.topLogprobs[(i - 1) * k + j]!;
      // The rank counts strictly more likely tokens, as the prompt token's (ties share a rank): all of them are earlier in the list.
      let rank = 1;
      for (let m = 0; m < j; m++) if (scored.topLogprobs[(i - 1) * k + m]! > lp) rank++;
      at[String(t)] = { logprob: lp, rank, decoded_token: tokenDisplay(tok.tokenBytes(t)) };
    }
    return at;
  });
}
