/**
 * OpenAI's Responses API over the chat path: `POST /v1/responses` (whole or streamed),
 * `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`, `DELETE /v1/responses/{id}`.
 *
 * A request is translated into the chat completion it means (plugin/responses/translate.ts: input
 * items → messages, function tools, `text.format` → the response_format grammar), prepared by the
 * chat endpoint (template, tools plan, grammar), run under the same admission, key limits and
 * disconnect handling as chat (routes/generation.ts), and answered as a `response` object or its
 * event stream (plugin/responses/output.ts). With `store` (the default), the response and its
 * conversation are kept (plugin/responses/store.ts) for `previous_response_id` and the GET routes.
 * A reasoning model's `<think>` block (plugin/reasoning.ts) is a `reasoning` output item.
 */
import type { Request, Response } from 'express';
import { accessOf } from '../auth.ts';
import { InvalidRequestError, toOpenAIError } from '../errors.ts';
import { collectChoices } from '../generate.ts';
import { chatLogprobs, type ChatTokenLogprob } from '../logprobs.ts';
import { answerTokens, ReasoningSplitter, splitReasoning } from '../reasoning.ts';
import { requestLog } from '../request-context.ts';
import { resolveRequest } from '../resolve.ts';
import { outputItems, outputMessages, ResponseEvents, responseObject, responseUsage, itemId, statusOf, type OutputItem } from '../responses/output.ts';
import { ResponseNotFoundError, type ResponseStore } from '../responses/store.ts';
import { renameParam, toChatRequest } from '../responses/translate.ts';
import { parseRequest } from '../schemas/index.ts';
import { ResponseCreateRequestSchema, type InputItem, type ResponseCreateRequest } from '../schemas/responses.ts';
import { SseWriter } from '../sse.ts';
import type { TokenInfo } from '../generate.ts';
import { ToolChoiceStream, toolMessage } from '../tools/respond.ts';
import type { ToolCall } from '../tokenizer.ts';
import { chatEndpoint } from './chat.ts';
import type { RouteContext } from './context.ts';
import { inTurn, logStreamFailure, runGeneration, samplingFromBody, unixNow, watchDisconnect } from './generation.ts';

/**
 * The store owner of a request: its API key's digest (names may repeat across keys), or '' in
 * open mode, where every request may do everything.
 */
function ownerOf(req: Request): string {
  return accessOf(req).key?.digest.toString('hex') ?? '';
}

/** `POST /v1/responses`. */
export function createResponse(ctx: RouteContext, store: ResponseStore) {
  return async function responsesHandler(req: Request, res: Response): Promise<void> {
    const watch = watchDisconnect(res);
    const registry = await ctx.registry();
    const owner = ownerOf(req);
    const { body, conversation, model, composition, sampling, prepared } = await inTurn(() => {
      const body = parseRequest(ResponseCreateRequestSchema, req.body);
      const history = body.previous_response_id ? store.conversation(owner, body.previous_response_id) : [];
      const { chat, conversation } = toChatRequest(body, history);
      const { model, composition } = resolveRequest(req, res, registry, body.model, chat);
      try {
        return { body, conversation, model, composition, sampling: samplingFromBody(chat), prepared: chatEndpoint.prepare(chat, model) };
      } catch (err) {
        throw renameParam(err);
      }
    });
    const log = requestLog(res, ctx.logger);
    const { gen, done } = await runGeneration(ctx, req, watch, log, {
      ...sampling,
      maxTokens: prepared.maxTokens ?? sampling.maxTokens,
      model,
      composition,
      prompts: prepared.prompts,
      promptParam: 'input',
      logprobs: prepared.logprobs,
      grammar: prepared.grammar,
    }).catch((err: unknown) => {
      throw renameParam(err);
    });
    const head = { id: itemId('resp_'), created_at: unixNow(), body };
    const topN = body.top_logprobs ?? 0;
    const logprobsOf = (tokens: TokenInfo[]): ChatTokenLogprob[] => (prepared.logprobs !== undefined ? chatLogprobs(model.tokenizer, tokens, topN).content : []);
    let ended = false;  // stored as completed, incomplete or failed
    const keep = (response: Record<string, unknown>, items: OutputItem[]) => {
      const start = response.status === 'in_progress';
      ended = !start;
      if (body.store === false) return;
      if (!start && !store.get(owner, head.id)) return;  // deleted (or evicted) while it ran: it stays gone
      store.put(head.id, { owner, response, conversation: [...conversation, ...outputMessages(items)], inputItems: listedItems(body) });
    };
    keep(responseObject(head, 'in_progress', [], null), []);  // GET finds it while it runs
    try {
      if (!body.stream) {
        const { text, tokens, finish } = await collectChoices(gen);
        if (watch.gone) return;
        const split = prepared.reasoning ? splitReasoning(text[0]!, prepared.reasoning.insidePrompt) : undefined;
        const { message } = toolMessage(split ? split.content : text[0]!, finish[0]!, prepared.toolFormat);
        const calls = (message.tool_calls as ToolCall[] | undefined) ?? [];
        const answer = split ? answerTokens(tokens[0]!, text[0]!, split.content, (id) => model.tokenizer.tokenBytes(id).length) : tokens[0]!;
        const items = outputItems(message.content as string | null, calls, logprobsOf(answer), finish[0]!, split?.reasoning ?? null);
        const { status, incomplete_details } = statusOf(finish[0]!);
        const response = responseObject(head, status, items, responseUsage(gen.usage), incomplete_details);
        keep(response, items);
        res.json(response);
        return;
      }
      const sse = new SseWriter(res);
      const events = new ResponseEvents(head, (type, payload) => sse.sendEvent(type, JSON.stringify(payload)));
      const tools = prepared.toolFormat ? new ToolChoiceStream(prepared.toolFormat) : undefined;
      const thinking = prepared.reasoning ? new ReasoningSplitter(prepared.reasoning.insidePrompt) : undefined;
      /** The answer's text: to the tool parser when there is one; logprobs with its first piece. */
      const answer = (text: string, lp: ChatTokenLogprob[]) => {
        if (!tools) events.text(text, lp);
        else tools.push(text).forEach((delta, i) => events.chatDelta(delta, i === 0 ? lp : []));
      };
      try {
        events.start();
        let finish: string | null = null;
        for await (const d of gen) {
          const lp = logprobsOf(d.tokens);
          if (!thinking) answer(d.text, lp);
          else {
            let pending = lp;  // the delta's logprobs go with its first answer piece
            for (const p of [...thinking.push(d.text), ...(d.finishReason ? thinking.end() : [])]) {
              if ('reasoning' in p) events.reasoning(p.reasoning);
              else {
                answer(p.content, pending);
                pending = [];
              }
            }
          }
          if (d.finishReason) {
            finish = d.finishReason;
            for (const delta of tools?.end(finish).deltas ?? []) events.chatDelta(delta);
          }
        }
        if (watch.gone) return;
        keep(events.finish(finish, gen.usage), events.items);
        sse.end();
      } catch (err) {
        logStreamFailure(log, err, 'response stream');
        keep(events.fail(toOpenAIError(err).body.error), events.items);
        sse.end();
      }
    } finally {
      // The client left or the request failed before a response: nothing to retrieve, as before it started.
      if (!ended && body.store !== false) store.delete(owner, head.id);
      done();
    }
  };
}

/** This request's input items as `input_items` lists them (ids given to those sent without one). */
function listedItems(b: ResponseCreateRequest): Array<Record<string, unknown>> {
  const items: InputItem[] = typeof b.input === 'string' ? [{ type: 'message', role: 'user', content: b.input }] : b.input;
  return items.map((it) => {
    switch (it.type) {
      case 'message': {
        const part = it.role === 'assistant' ? 'output_text' : 'input_text';
        const texts = typeof it.content === 'string' ? [it.content] : it.content;
        return { id: it.id ?? itemId('msg_'), type: 'message', role: it.role, status: 'completed', content: texts.map((text) => ({ type: part, text })) };
      }
      case 'function_call':
        return { id: it.id ?? itemId('fc_'), type: 'function_call', status: 'completed', call_id: it.call_id, name: it.name, arguments: it.arguments };
      case 'function_call_output':
        return { id: it.id ?? itemId('fco_'), type: 'function_call_output', status: 'completed', call_id: it.call_id, output: typeof it.output === 'string' ? it.output : it.output.join('') };
      default:
        return { id: itemId('rs_'), type: it.type };
    }
  });
}

/** `GET /v1/responses/{id}`: a stored response of the request's key (404 otherwise). */
export function retrieveResponse(store: ResponseStore) {
  return function retrieveResponseHandler(req: Request, res: Response): void {
    const id = String(req.params.id);
    const e = store.get(ownerOf(req), id);
    if (!e) throw new ResponseNotFoundError(id);
    res.json(e.response);
  };
}

/** `DELETE /v1/responses/{id}`: drop a stored response of the request's key (404 otherwise). */
export function deleteResponse(store: ResponseStore) {
  return function deleteResponseHandler(req: Request, res: Response): void {
    const id = String(req.params.id);
    if (!store.delete(ownerOf(req), id)) throw new ResponseNotFoundError(id);
    res.json({ id, object: 'response', deleted: true });
  };
}

/**
 * `GET /v1/responses/{id}/input_items?order=desc|asc&limit=1..100&after=ID`: the stored response's
 * input items as an OpenAI list (newest first by default, 20 a page).
 */
export function listInputItems(store: ResponseStore) {
  return function listInputItemsHandler(req: Request, res: Response): void {
    const id = String(req.params.id);
    const e = store.get(ownerOf(req), id);
    if (!e) throw new ResponseNotFoundError(id);
    const q = req.query as Record<string, unknown>;
    if (q.order !== undefined && q.order !== 'asc' && q.order !== 'desc') throw new InvalidRequestError(`Invalid 'order': expected "asc" or "desc".`, 'order');
    const limit = q.limit === undefined ? 20 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new InvalidRequestError(`Invalid 'limit': expected an integer from 1 to 100.`, 'limit');
    const order = q.order ?? 'desc';
    let items = order === 'asc' ? e.inputItems : [...e.inputItems].reverse();
    if (typeof q.after === 'string') {
      const at = items.findIndex((it) => it.id === q.after);
      items = at < 0 ? [] : items.slice(at + 1);
    }
    const data = items.slice(0, limit);
    res.json({ object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: items.length > limit });
  };
}
