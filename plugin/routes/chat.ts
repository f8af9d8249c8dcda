/**
 * `POST /v1/chat/completions`: the chat endpoint's own parts over the shared generation route
 * (routes/generation.ts): messages rendered by the model's chat template (with vLLM's
 * `add_generation_prompt`, `continue_final_message` and `chat_template_kwargs`:
 * template-kwargs.ts), and OpenAI's chat shapes.
 *
 * Stream order per choice: `{delta: {role: "assistant", content: ""}}`, content deltas, then
 * `{delta: {}, finish_reason}`. With tools (plugin/tools/), calls are parsed from the output in
 * the model's format: `message.tool_calls` / `delta.tool_calls` and finish_reason `tool_calls`.
 * For a reasoning model (plugin/reasoning.ts) the `<think>` block comes apart from the answer:
 * `message.reasoning` and `reasoning_content` (null without a block), `delta.reasoning` /
 * `delta.reasoning_content` pieces before the answer's `content` deltas.
 */
import { InvalidRequestError } from '../errors.ts';
import { chatLogprobs, vllmPromptLogprobs } from '../logprobs.ts';
import { ChatCompletionRequestSchema, promptLogprobsOf, type ChatCompletionRequest } from '../schemas/index.ts';
import { grammarFromBody } from '../structured/from-body.ts';
import { renderOptionsOf } from '../template-kwargs.ts';
import { answerTokens, promptOpensReasoning, ReasoningSplitter, splitReasoning } from '../reasoning.ts';
import type { ServedModel } from '../registry.ts';
import type { ToolFormat } from '../tools/format.ts';
import { planTools, ToolChoiceStream, toolMessage } from '../tools/respond.ts';
import { legacyDelta, legacyFinish, legacyMessage } from '../schemas/legacy-functions.ts';
import type { RouteContext } from './context.ts';
import { generationRoute, type GenerationEndpoint, type Prepared } from './generation.ts';

/** What chat prepares: the prompt, the grammar, the tool-call format and the reasoning split to parse outputs with. */
export interface ChatPrepared extends Prepared {
  toolFormat?: ToolFormat;
  /** Set when the output's `<think>` block is split from the answer (plugin/reasoning.ts); off with a grammar. */
  reasoning?: { insidePrompt: boolean };
}

/**
 * The reasoning split of a request: the model's setting, and never under a grammar (constrained
 * output is enforced from the first token, so there is no reasoning block to split).
 */
export function reasoningPlan(model: ServedModel, prompt: number[], grammar: unknown): { insidePrompt: boolean } | undefined {
  if (!model.reasoning || grammar) return undefined;
  return { insidePrompt: promptOpensReasoning(model.tokenizer.decode(prompt.slice(-16), false)) };
}

/** The chat endpoint: one prompt (the rendered messages); `max_completion_tokens` wins over `max_tokens`. */
export const chatEndpoint: GenerationEndpoint<ChatCompletionRequest, ChatPrepared> = {
  schema: ChatCompletionRequestSchema,
  promptParam: 'messages',
  idPrefix: 'chatcmpl-',
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  label: 'chat completion',
  prepare(body, model) {
    const tools = planTools(body, model.tokenizer.chatTemplate, model.toolCallFormat);
    let grammar = grammarFromBody(body);
    if (tools.grammar) {
      if (grammar) {
        throw new InvalidRequestError(`tool_choice ${JSON.stringify(body.tool_choice)} forces tool calls; it cannot be combined with '${grammar.param}'.`, grammar.param);
      }
      grammar = tools.grammar;
    }
    const rendered = model.tokenizer.encodeChat(body.messages, model.info.maxModelLen, tools.templateTools, renderOptionsOf(body));
    const prompt = body.add_special_tokens === true ? model.tokenizer.addSpecialTokens(rendered) : rendered;
    return {
      prompts: [prompt],
      maxTokens: body.max_completion_tokens ?? undefined,
      logprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined,
      promptLogprobs: promptLogprobsOf(body),
      promptLogprobsParam: 'prompt_logprobs',
      grammar,
      toolFormat: tools.format,
      reasoning: reasoningPlan(model, prompt, grammar),
    };
  },
  renderer(body, model, prepared, _n, size, scored) {
    const topN = body.top_logprobs ?? 0;
    const vllmK = promptLogprobsOf(body);
    const logprobsOf = (tokens: Parameters<typeof chatLogprobs>[1]) => (body.logprobs ? chatLogprobs(model.tokenizer, tokens, topN) : null);
    const format = prepared.toolFormat;
    const legacy = body.legacy_functions;  // OpenAI's deprecated `functions`: answered as `function_call`
    const streams = format ? Array.from({ length: size }, () => (legacy ? legacyStream(new ToolChoiceStream(format)) : new ToolChoiceStream(format))) : undefined;
    const think = prepared.reasoning;
    const splitters = think ? Array.from({ length: size }, () => new ReasoningSplitter(think.insidePrompt)) : undefined;
    // vLLM's include_reasoning: false drops the reasoning (the answer is split from it all the same).
    const showReasoning = body.include_reasoning !== false;
    return {
      choice: (index, text, tokens, finish) => {
        const split = think ? splitReasoning(text, think.insidePrompt) : undefined;
        const { message, finishReason } = toolMessage(split ? split.content : text, finish, format);
        if (split) {
          // `reasoning` (vLLM's name now) and `reasoning_content` (its older one, which LangChain reads).
          const r = showReasoning ? split.reasoning : null;
          Object.assign(message, { reasoning: r, reasoning_content: r });
          if (split.reasoning !== null && message.content === '') message.content = null;  // vLLM: no answer after the block
          tokens = answerTokens(tokens, text, split.content, (id) => model.tokenizer.tokenBytes(id).length);
        }
        if (legacy) {
          const old = legacyMessage(message, finishReason);
          return { index, message: old.message, logprobs: logprobsOf(tokens), finish_reason: old.finish };
        }
        return { index, message, logprobs: logprobsOf(tokens), finish_reason: finishReason };
      },
      opening: (index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }),
      // vLLM's prompt_logprobs: top level (one prompt per chat request).
      responseFields: () => (vllmK !== undefined && scored ? { prompt_logprobs: vllmPromptLogprobs(model.tokenizer, prepared.prompts[0]!, scored[0]!, vllmK) } : {}),
      delta(d, send) {
        const ts = streams?.[d.index];
        const rs = splitters?.[d.index];
        if (rs) {
          // Reasoning and answer pieces as the splitter releases them; the answer goes on to the
          // tool parser when there is one. Logprobs cover the answer: they ride with the first
          // answer piece of the delta (a delta that is all reasoning or tags carries none).
          let lp = logprobsOf(d.tokens);
          const sendDelta = (delta: Record<string, unknown>, withLogprobs = true) => {
            send(JSON.stringify({ index: d.index, delta, logprobs: withLogprobs ? lp : null, finish_reason: null }));
            if (withLogprobs) lp = null;
          };
          let answered = false;
          for (const p of [...rs.push(d.text), ...(d.finishReason ? rs.end() : [])]) {
            if ('reasoning' in p) {
              if (showReasoning) sendDelta({ reasoning: p.reasoning, reasoning_content: p.reasoning }, false);
              continue;
            }
            answered = true;
            if (ts) for (const delta of ts.push(p.content)) sendDelta(delta);
            else sendDelta({ content: p.content });
          }
          // The answer's text held back (a tag that may be starting) keeps its logprobs coming.
          if (lp !== null && !answered && rs.answering) sendDelta({ content: '' });
          if (d.finishReason) {
            const end = ts?.end(d.finishReason);
            for (const delta of end?.deltas ?? []) sendDelta(delta);
            send(JSON.stringify({ index: d.index, delta: {}, logprobs: null, finish_reason: end ? end.finishReason : d.finishReason }));
          }
          return;
        }
        if (ts) {
          // Tool-call parsing: prose and call pieces as the parser releases them; logprobs ride
          // with the first piece of the delta that produced them.
          let lp = logprobsOf(d.tokens);
          const sendDelta = (delta: Record<string, unknown>) => {
            send(JSON.stringify({ index: d.index, delta, logprobs: lp, finish_reason: null }));
            lp = null;
          };
          for (const delta of ts.push(d.text)) sendDelta(delta);
          if (d.finishReason) {
            const end = ts.end(d.finishReason);
            for (const delta of end.deltas) sendDelta(delta);
            send(JSON.stringify({ index: d.index, delta: {}, logprobs: null, finish_reason: end.finishReason }));
          }
          return;
        }
        if (d.text || d.tokens.length > 0) {
          const lp = logprobsOf(d.tokens);
          send(
            lp === null
              ? `{"index":${d.index},"delta":{"content":${JSON.stringify(d.text)}},"logprobs":null,"finish_reason":null}`
              : JSON.stringify({ index: d.index, delta: { content: d.text }, logprobs: lp, finish_reason: null }),
          );
        }
        if (d.finishReason) send(`{"index":${d.index},"delta":{},"logprobs":null,"finish_reason":${JSON.stringify(d.finishReason)}}`);
      },
    };
  },
};

/** Handler factory for chat completions. */
export function chatCompletions(ctx: RouteContext) {
  return generationRoute(ctx, chatEndpoint);
}

/** A tool-call stream whose deltas and finish reason take the legacy `function_call` shapes (schemas/legacy-functions.ts). */
function legacyStream(ts: ToolChoiceStream): Pick<ToolChoiceStream, 'push' | 'end'> {
  const map = (deltas: Array<Record<string, unknown>>) => deltas.map(legacyDelta).filter((d): d is Record<string, unknown> => d !== undefined);
  return {
    push: (text) => map(ts.push(text)),
    end(finish) {
      const e = ts.end(finish);
      return { deltas: map(e.deltas), finishReason: ts.calls.length > 0 ? legacyFinish(e.finishReason) : e.finishReason };
    },
  };
}
