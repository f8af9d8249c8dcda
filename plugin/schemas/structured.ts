/**
 * Request fields that constrain the output: OpenAI `response_format`, vLLM's `guided_*` and
 * `structured_outputs` body extensions (both endpoints), and OpenAI tool calling (chat).
 *
 * The shapes are checked here; what the grammar means (and whether xgrammar can enforce it)
 * is decided in plugin/structured/ and plugin/tools/, which also name the field on a 400.
 */
import { z } from 'zod';
import { jsonDepth, MAX_JSON_DEPTH } from '../json-depth.ts';

/** A JSON schema: any JSON object (its meaning is xgrammar's business), nested at most MAX_JSON_DEPTH levels. */
export const JsonSchemaObject = z.record(z.string(), z.unknown()).superRefine((v, ctx) => {
  if (jsonDepth(v, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) ctx.addIssue({ code: 'custom', message: `expected at most ${MAX_JSON_DEPTH} levels of nested objects and arrays.` });
});

/** A function (tool) name: OpenAI's 1 to 64 letters, digits, "_", "." or "-". */
export const FunctionNameSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'expected 1 to 64 letters, digits, "_", "." or "-"' });

/** A JSON-schema format's name: OpenAI's 1 to 64 letters, digits, "_" or "-". */
export const SchemaNameSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: 'expected 1 to 64 letters, digits, "_" or "-"' });

/** OpenAI `response_format`. */
export const ResponseFormatSchema = z
  .object({
    type: z.enum(['text', 'json_object', 'json_schema']),
    json_schema: z
      .object({
        name: SchemaNameSchema,
        description: z.string().nullish(),
        schema: JsonSchemaObject.nullish(),
        strict: z.boolean().nullish(),
      })
      .nullish(),
  })
  .superRefine((f, ctx) => {
    if (f.type === 'json_schema' && !f.json_schema) {
      ctx.addIssue({ code: 'custom', path: ['json_schema'], message: 'is required when type is "json_schema".' });
    }
  });

/** vLLM `structured_outputs` (current vLLM; the `guided_*` fields are its older names). */
export const StructuredOutputsSchema = z.object({
  json: z.union([JsonSchemaObject, z.string()]).nullish(),
  regex: z.string().min(1).nullish(),
  choice: z.array(z.string()).min(1).max(1024).nullish(),
  grammar: z.string().min(1).nullish(),
  json_object: z.boolean().nullish(),
  structural_tag: z.union([JsonSchemaObject, z.string()]).nullish(),
});

/** Output-constraining fields accepted by chat and legacy completions. */
export const structuredFields = {
  response_format: ResponseFormatSchema.nullish(),
  structured_outputs: StructuredOutputsSchema.nullish(),
  guided_json: z.union([JsonSchemaObject, z.string()]).nullish(),
  guided_regex: z.string().min(1).nullish(),
  guided_choice: z.array(z.string()).min(1).max(1024).nullish(),
  guided_grammar: z.string().min(1).nullish(),
};

/** One function tool. */
export const ToolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name: FunctionNameSchema,
    description: z.string().nullish(),
    parameters: JsonSchemaObject.nullish(),
    strict: z.boolean().nullish(),
  }),
});

/** `tool_choice`: a mode or one named function. */
export const ToolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), function: z.object({ name: z.string().min(1) }) }),
]);

/** Tool-calling fields of chat completions. */
export const toolFields = {
  tools: z.array(ToolSchema).max(128).nullish(),
  tool_choice: ToolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
};

/** A body with the tool fields (for the cross-field checks). */
export interface ToolBody {
  tools?: Array<z.output<typeof ToolSchema>> | null;
  tool_choice?: z.output<typeof ToolChoiceSchema> | null;
}

/** Cross-field checks of tools and tool_choice (zod superRefine helper). */
export function checkTools(b: ToolBody, ctx: z.RefinementCtx): void {
  const names = (b.tools ?? []).map((t) => t.function.name);
  names.forEach((n, i) => {
    if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['tools', i, 'function', 'name'], message: `duplicate tool name "${n}".` });
  });
  const choice = b.tool_choice;
  if (choice == null || choice === 'none' || choice === 'auto') return;
  if (names.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['tool_choice'], message: `tool_choice ${JSON.stringify(choice)} needs \`tools\`.` });
  } else if (typeof choice === 'object' && !names.includes(choice.function.name)) {
    ctx.addIssue({ code: 'custom', path: ['tool_choice', 'function', 'name'], message: `no tool named "${choice.function.name}" in \`tools\` (${names.join(', ')}).` });
  }
}
