/**
 * What tool calling changes in a chat response: the plan for a request (which format, whether
 * to parse, which grammar), and the assistant message / stream deltas of one choice.
 *
 * `tool_choice` (OpenAI): `none` renders the tools but neither parses nor forces calls; `auto`
 * (the default with tools) lets the model choose and parses what it writes; `required` and a
 * named function are enforced by a grammar (./grammar.ts). A choice that ended with calls has
 * `finish_reason: "tool_calls"` (a `length` cut stays `length`), except under a named function:
 * "stop", as OpenAI answers a forced call (`ToolFormat.named`). `parallel_tool_calls: false`
 * keeps one call: the grammar allows one, and under `auto` only the first call the model wrote is
 * kept (`ToolFormat.oneCall`), streamed or not.
 */
import { InvalidRequestError } from '../errors.ts';
import type { GrammarSpec } from '../structured/spec.ts';
import { detectToolFormat, type ToolFormat, type ToolFormatName } from './format.ts';
import { toolCallGrammar, type FunctionTool } from './grammar.ts';
import { parseToolCalls, type ToolCall } from './parse.ts';
import { ToolStreamParser, type ToolCallDelta } from './stream.ts';

/** The tool fields of a validated chat body. */
export interface ToolRequest {
  tools?: FunctionTool[] | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
}

/** How one request handles tools. */
export interface ToolPlan {
  /** Tools for the chat template (undefined: none). */
  templateTools?: FunctionTool[];
  /** The format to parse outputs with (undefined: no parsing). */
  format?: ToolFormat;
  /** The grammar forcing calls (required / named). */
  grammar?: GrammarSpec;
}

/**
 * Decide the tool handling of a request.
 * @param template The model's chat template (its markers give the format).
 * @param override The configured format of the model, if any.
 * @throws InvalidRequestError (param `tools`) when the model's template has no tool-call format,
 *   and the grammar's 400s for parameter schemas xgrammar cannot enforce.
 */
export function planTools(body: ToolRequest, template: string | undefined, override?: ToolFormatName): ToolPlan {
  const tools = body.tools ?? [];
  if (tools.length === 0) return {};
  const choice = body.tool_choice ?? 'auto';
  if (choice === 'none') return { templateTools: tools };
  const format = detectToolFormat(template, override);
  if (!format) {
    throw new InvalidRequestError(
      "This model's chat template shows no tool-call format (Hermes <tool_call>, Llama 3.1 <|python_tag|> JSON or Mistral [TOOL_CALLS]); configure `toolCallFormat` for it to use tools.",
      'tools',
    );
  }
  // parallel_tool_calls: false: required / named are held to one call by their grammar, auto by the parser.
  const plan: ToolPlan = { templateTools: tools, format: body.parallel_tool_calls === false ? { ...format, oneCall: true } : format };
  if (choice === 'required') plan.grammar = toolCallGrammar(tools, tools.map((t) => t.function.name), body.parallel_tool_calls !== false, format);
  else if (typeof choice === 'object') {
    plan.grammar = toolCallGrammar(tools, [choice.function.name], false, format);
    plan.format = { ...plan.format!, named: true };
  }
  return plan;
}

/** A finished choice's assistant message and finish reason under a tool plan. */
export function toolMessage(text: string, finish: string | null, format: ToolFormat | undefined): { message: Record<string, unknown>; finishReason: string | null } {
  if (!format) return { message: { role: 'assistant', content: text, refusal: null }, finishReason: finish };
  const parsed = parseToolCalls(text, format, finish === 'length');
  // No calls: the text, or (cut by max_tokens inside a first call) the prose before that call.
  if (parsed.toolCalls.length === 0) return { message: { role: 'assistant', content: parsed.content ?? '', refusal: null }, finishReason: finish };
  return {
    message: { role: 'assistant', content: parsed.content, refusal: null, tool_calls: parsed.toolCalls },
    finishReason: callsFinish(finish, format),
  };
}

/** The finish reason of a choice that ended with calls: "tool_calls" for a `stop`, but "stop" under a named function. */
function callsFinish(finish: string | null, format: ToolFormat): string | null {
  return finish === 'stop' && !format.named ? 'tool_calls' : finish;
}

/** One streamed choice under a tool plan: text in, OpenAI `delta` objects out. */
export class ToolChoiceStream {
  private readonly parser: ToolStreamParser;

  constructor(private readonly format: ToolFormat) {
    this.parser = new ToolStreamParser(format);
  }

  /** Deltas for new text (`{content}` or `{tool_calls: [..]}`), possibly none. */
  push(text: string): Array<Record<string, unknown>> {
    return this.parser.push(text).map(toDelta);
  }

  /** The choice ended: flushed deltas and the finish reason to send. */
  end(finish: string | null): { deltas: Array<Record<string, unknown>>; finishReason: string | null } {
    const deltas = this.parser.end(finish === 'length').map(toDelta);
    return { deltas, finishReason: this.parser.calls.length > 0 ? callsFinish(finish, this.format) : finish };
  }

  /** The calls seen (complete after `end`). */
  get calls(): ToolCall[] {
    return this.parser.calls;
  }
}

function toDelta(d: { content: string } | { toolCall: ToolCallDelta }): Record<string, unknown> {
  return 'content' in d ? { content: d.content } : { tool_calls: [d.toolCall] };
}
