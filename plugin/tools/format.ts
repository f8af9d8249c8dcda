/**
 * Tool-call formats, recognised from the model's own chat template.
 *
 * A fine-tune often ships an edited template, so the family is read from the markers the
 * template itself writes, not from the model name:
 * - `hermes` (Hermes, Qwen 2.5 / Qwen3): `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
 * - `llama3_json` (Llama 3.1 / 3.2): `{"name": ..., "parameters": {...}}`, optionally after
 *   `<|python_tag|>`; several calls separated by `; `
 * - `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`
 * A per-model config value (`toolCallFormat`) overrides the detection.
 */

/** The tool-call output formats this server parses and enforces. */
export const TOOL_FORMATS = ['hermes', 'llama3_json', 'mistral'] as const;
/** One of `TOOL_FORMATS`. */
export type ToolFormatName = (typeof TOOL_FORMATS)[number];

/** How one family writes a tool call. */
export interface ToolFormat {
  name: ToolFormatName;
  /** Text before the calls (may be a special token that the detokenizer drops). */
  prefix: string;
  /** Text before each call's JSON object, and after it. */
  callBegin: string;
  callEnd: string;
  /** Between two calls. */
  separator: string;
  /** Text after the last call. */
  suffix: string;
  /** The key of the arguments object: "arguments" or "parameters". */
  argsKey: 'arguments' | 'parameters';
  /**
   * `parallel_tool_calls: false` (set per request by ../tools/respond.ts `planTools`): an output
   * keeps only its first call, streamed or not (./parse.ts `parseToolCalls`), as vLLM's
   * `maybe_filter_parallel_tool_calls` does.
   */
  oneCall?: boolean;
  /**
   * `tool_choice` named one function (set per request by ../tools/respond.ts `planTools`): the
   * choice finishes with "stop", not "tool_calls", as OpenAI answers (and vLLM since its PR 25054).
   */
  named?: boolean;
}

/** The formats, by name. */
export const FORMATS: Record<ToolFormatName, ToolFormat> = {
  hermes: { name: 'hermes', prefix: '', callBegin: '<tool_call>\n', callEnd: '\n</tool_call>', separator: '\n', suffix: '', argsKey: 'arguments' },
  llama3_json: { name: 'llama3_json', prefix: '<|python_tag|>', callBegin: '', callEnd: '', separator: '; ', suffix: '', argsKey: 'parameters' },
  mistral: { name: 'mistral', prefix: '[TOOL_CALLS][', callBegin: '', callEnd: '', separator: ', ', suffix: ']', argsKey: 'arguments' },
};

/**
 * The tool-call format a chat template writes, from its markers; undefined when the template
 * shows no tool support (then a request with `tools` is refused).
 * @param override A configured format name; wins over detection.
 */
export function detectToolFormat(template: string | undefined, override?: ToolFormatName): ToolFormat | undefined {
  if (override) return FORMATS[override];
  if (!template) return undefined;
  if (template.includes('<tool_call>')) return FORMATS.hermes;
  if (template.includes('[TOOL_CALLS]')) return FORMATS.mistral;
  if (template.includes('<|python_tag|>') || (template.includes('"parameters"') && template.includes('ipython'))) return FORMATS.llama3_json;
  return undefined;
}
