/**
 * Grammars that make the model call tools (`tool_choice: "required"` or a named function),
 * as xgrammar structural tags in the model's own tool-call format (./format.ts).
 *
 * Each allowed function is one tag: its begin text is the format's call opening up to the
 * arguments (`<tool_call>\n{"name": "get_weather", "arguments": `), its content the function's
 * `parameters` JSON schema, its end the closing (`}\n</tool_call>`). Calls are separated by the
 * format's separator; at least one call; only one unless `parallel_tool_calls` is true. The
 * output holds nothing but the calls (then the stop token), as OpenAI's `required` implies.
 */
import { InvalidRequestError } from '../errors.ts';
import { findUnsupportedFeature } from '../structured/schema-check.ts';
import type { GrammarSpec } from '../structured/spec.ts';
import type { ToolFormat } from './format.ts';

/** A function tool as the request gives it (validated by the request schema). */
export interface FunctionTool {
  type: 'function';
  function: { name: string; description?: string | null; parameters?: Record<string, unknown> | null; strict?: boolean | null };
}

/**
 * The structural-tag grammar forcing calls to `names` (a subset of `tools`).
 * @param param The request field to blame for a schema xgrammar cannot enforce (`tools`).
 * @throws InvalidRequestError naming `tools[i].function.parameters` for an unsupported keyword.
 */
export function toolCallGrammar(tools: FunctionTool[], names: string[], parallel: boolean, format: ToolFormat): GrammarSpec {
  const tags = names.map((name) => {
    const i = tools.findIndex((t) => t.function.name === name);
    const schema = tools[i]!.function.parameters ?? { type: 'object' };
    const f = findUnsupportedFeature(schema);
    if (f) {
      throw new InvalidRequestError(
        `The parameters schema of tool '${name}' uses \`${f.keyword}\` at ${f.path}, ${f.reason ?? 'which this server cannot enforce (xgrammar ignores it)'}.`,
        `tools[${i}].function.parameters`,
        'unsupported_schema_feature',
      );
    }
    return {
      type: 'tag',
      begin: `${format.callBegin}{"name": ${JSON.stringify(name)}, "${format.argsKey}": `,
      content: { type: 'json_schema', json_schema: schema },
      end: `}${format.callEnd}`,
    };
  });
  const calls = { type: 'tags_with_separator', tags, separator: format.separator, at_least_one: true, stop_after_first: !parallel };
  // Markers that are special tokens (Mistral's [TOOL_CALLS], Llama's <|python_tag|>) cannot be
  // written as text under a mask; the parsers accept the calls without them.
  const body =
    format.name === 'mistral'
      ? { type: 'tag', begin: '[', content: calls, end: ']' }
      : calls;
  return { kind: 'structural_tag', tag: { type: 'structural_tag', format: body }, param: 'tool_choice' };
}
