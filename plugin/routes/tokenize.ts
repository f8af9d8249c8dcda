/**
 * vLLM's tokenizer endpoints, at the root as vLLM serves them (vllm/entrypoints/openai/
 * serving_tokenization.py): `POST /tokenize`, `POST /detokenize` and `GET /version`.
 *
 * `/tokenize` counts a prompt exactly as the generation endpoints will: the chat form goes
 * through `/v1/chat/completions`' rendering (the model's template via `encodeChat`, so client
 * text cannot forge special tokens; vLLM's template fields; `tools` planned as chat plans them),
 * the completion form through `/v1/completions`' encoding of a prompt string (special-token text
 * parsed, as vLLM does). Its `count` is the `usage.prompt_tokens` that request gets. `model`
 * resolves as on /v1 (base, `BASE:ADAPTER`, aliases, compositions: the adapters do not change
 * tokenization) under the request's API key.
 */
import { createRequire } from 'node:module';
import type { Request, Response } from 'express';
import { InvalidRequestError } from '../errors.ts';
import { resolveRequest } from '../resolve.ts';
import { DetokenizeRequestSchema, parseTokenizeRequest } from '../schemas/tokenize.ts';
import { parseRequest } from '../schemas/index.ts';
import { renderOptionsOf } from '../template-kwargs.ts';
import { planTools } from '../tools/respond.ts';
import type { RouteContext } from './context.ts';
import { inTurn } from './generation.ts';

/** openlora's version (package.json), read once. */
const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** The body of a `/tokenize` answer (vLLM's `TokenizeResponse`, same key order). */
export interface TokenizeResponse {
  count: number;
  max_model_len: number;
  tokens: number[];
  /** Each token's vocabulary string when `return_token_strs` was true, else null. */
  token_strs: string[] | null;
}

/**
 * Handler factory of `POST /tokenize` (vLLM's). Body: `{model, prompt, add_special_tokens?: true,
 * return_token_strs?}` (completion form) or `{model, messages, add_generation_prompt?,
 * continue_final_message?, chat_template_kwargs?, tools?, add_special_tokens?: false,
 * return_token_strs?}` (chat form). Answers `{count, max_model_len, tokens, token_strs}`.
 * A prompt longer than the context is counted (`count` > `max_model_len`), unless it cannot fit
 * at all by its size alone (the guard of the generation endpoints, which keeps huge prompts off
 * the event loop).
 * @throws InvalidRequestError (400) naming the bad field (schema, template, `tools` for a model
 *   without a tool-call format, `chat_template_kwargs.<name>`, ...), ContextLengthError (400) for
 *   the size guard, ModelNotFoundError (404) for a model unknown or not allowed to the key.
 */
export function tokenize(ctx: RouteContext) {
  return async function tokenizeHandler(req: Request, res: Response): Promise<void> {
    const registry = await ctx.registry();
    const out = await inTurn((): TokenizeResponse => {
      const body = parseTokenizeRequest(req.body);
      const { model } = resolveRequest(req, res, registry, body.model);
      const tok = model.tokenizer;
      const maxModelLen = model.info.maxModelLen;
      let ids: number[];
      if (body.form === 'chat') {
        const tools = planTools({ tools: body.tools }, tok.chatTemplate, model.toolCallFormat);
        ids = tok.encodeChat(body.messages, maxModelLen, tools.templateTools, renderOptionsOf(body));
        if (body.add_special_tokens === true) ids = tok.addSpecialTokens(ids);
      } else {
        ids = tok.encode(body.prompt, body.add_special_tokens ?? true, { maxTokens: maxModelLen, param: 'prompt' });
      }
      return { count: ids.length, max_model_len: maxModelLen, tokens: ids, token_strs: body.return_token_strs === true ? tok.tokenStrings(ids) : null };
    });
    res.json(out);
  };
}

/**
 * Handler factory of `POST /detokenize` (vLLM's): `{model, tokens}` → `{prompt}`, the ids decoded
 * with their special tokens kept (Hugging Face's `decode` default, as vLLM), so
 * `detokenize(tokenize(x))` gives the rendered prompt back.
 * @throws InvalidRequestError (400) naming `tokens` for ids that are not this model's tokenizer's,
 *   ModelNotFoundError (404) as `/tokenize`.
 */
export function detokenize(ctx: RouteContext) {
  return async function detokenizeHandler(req: Request, res: Response): Promise<void> {
    const registry = await ctx.registry();
    const out = await inTurn(() => {
      const body = parseRequest(DetokenizeRequestSchema, req.body);
      const { model } = resolveRequest(req, res, registry, body.model);
      const tok = model.tokenizer;
      const bad = body.tokens.findIndex((id) => !tok.hasId(id));
      if (bad >= 0) {
        throw new InvalidRequestError(
          `Invalid 'tokens': token id ${body.tokens[bad]} (tokens[${bad}]) is out of range; this model's tokenizer has ids 0..${tok.vocabSize - 1}.`,
          'tokens',
        );
      }
      return { prompt: tok.decode(body.tokens, false) };
    });
    res.json(out);
  };
}

/** Handler of `GET /version` (vLLM's): `{version}`, openlora's package.json version. */
export function version(_req: Request, res: Response): void {
  res.json({ version: VERSION });
}
