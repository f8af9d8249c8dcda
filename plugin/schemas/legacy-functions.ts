/**
 * OpenAI's legacy function calling on chat completions (deprecated by OpenAI, still sent by older
 * clients and frameworks): `functions` and `function_call` in the request, assistant messages
 * with `function_call`, `role: "function"` results, and `message.function_call` /
 * `delta.function_call` with `finish_reason: "function_call"` in the response.
 *
 * The request is mapped onto tool calling (plugin/tools/), which does the work: `functions` →
 * `tools`, `function_call` → `tool_choice` (`{name}` → a named function), one call per message
 * (`parallel_tool_calls: false`); history calls get ids (`call_fn_<message index>`) and each
 * `function` message answers the latest call of its name. The response maps back (the chat route).
 */
import { z } from 'zod';
import type { z as zt } from 'zod';
import { FunctionNameSchema, JsonSchemaObject } from './structured.ts';

/** An assistant message's legacy call. */
export const FunctionCallSchema = z.object({ name: z.string(), arguments: z.string() });

/** The request fields. */
export const legacyFunctionFields = {
  functions: z
    .array(
      z.object({
        name: FunctionNameSchema,
        description: z.string().nullish(),
        parameters: JsonSchemaObject.nullish(),
      }),
    )
    .min(1)
    .max(128)
    .nullish(),
  function_call: z.union([z.enum(['none', 'auto']), z.object({ name: z.string().min(1) })]).nullish(),
};

/** A message as MessageSchema validates it, with the legacy fields. */
interface LegacyMessage {
  role: string;
  name?: string;
  tool_call_id?: string;
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }> | null;
  function_call?: { name: string; arguments: string } | null;
  [k: string]: unknown;
}

/**
 * Messages with the legacy shapes turned into tool calling: an assistant `function_call` becomes
 * its one `tool_calls` entry (id `call_fn_<index>`), a `function` message a `tool` message
 * answering the latest call of its `name` (an id no call has when none: the pairing check names it).
 */
export function legacyMessages<M extends LegacyMessage>(messages: M[]): Array<Omit<M, 'role' | 'function_call'> & { role: Exclude<M['role'], 'function'> }> {
  const ids = new Map<string, string>();
  type Out = Omit<M, 'role' | 'function_call'> & { role: Exclude<M['role'], 'function'> };
  return messages.map((m, i): Out => {
    if (m.role === 'assistant' && m.function_call && !(m.tool_calls && m.tool_calls.length > 0)) {
      const id = `call_fn_${i}`;
      ids.set(m.function_call.name, id);
      const { function_call, ...rest } = m;
      return { ...rest, tool_calls: [{ id, type: 'function' as const, function: function_call }] } as unknown as Out;
    }
    const { function_call: _unused, ...plain } = m;
    if (m.role === 'function') return { ...plain, role: 'tool', tool_call_id: ids.get(m.name ?? '') ?? `call_fn_${m.name ?? ''}` } as unknown as Out;
    return plain as unknown as Out;
  });
}

/** A body with the legacy request fields mapped onto tools (`legacy_functions` marks it for the response). */
export function legacyToTools<B extends { functions?: Array<{ name: string; description?: string | null; parameters?: Record<string, unknown> | null }> | null; function_call?: 'none' | 'auto' | { name: string } | null; tools?: unknown; tool_choice?: unknown; parallel_tool_calls?: boolean | null }>(
  b: B,
): B & { legacy_functions: boolean } {
  if (!b.functions || b.tools != null) return { ...b, legacy_functions: false };
  const fc = b.function_call;
  return {
    ...b,
    tools: b.functions.map((f) => ({ type: 'function' as const, function: { name: f.name, description: f.description, parameters: f.parameters } })),
    tool_choice: fc && typeof fc === 'object' ? { type: 'function' as const, function: { name: fc.name } } : (fc ?? undefined),
    parallel_tool_calls: false,
    legacy_functions: true,
  };
}

/**
 * Cross-field check: `functions` with `tools` (refused naming `functions`); `function_call` needs
 * `functions`, and a named one one of them (issues before the tools' own, so they name these fields).
 */
export function checkLegacyFunctions(
  b: { functions?: Array<{ name: string }> | null; function_call?: 'none' | 'auto' | { name: string } | null; tools?: unknown[] | null; legacy_functions?: boolean },
  ctx: zt.core.$RefinementCtx,
): void {
  if (b.functions && b.tools && !b.legacy_functions) {
    ctx.addIssue({ code: 'custom', path: ['functions'], message: '`functions` (deprecated) cannot be combined with `tools`; send the functions as tools.' });
  }
  const fc = b.function_call;
  if (fc != null && !b.functions) ctx.addIssue({ code: 'custom', path: ['function_call'], message: '`function_call` needs `functions`.' });
  else if (fc && typeof fc === 'object' && !b.functions!.some((f) => f.name === fc.name)) {
    ctx.addIssue({ code: 'custom', path: ['function_call', 'name'], message: `no function named "${fc.name}" in \`functions\` (${b.functions!.map((f) => f.name).join(', ')}).` });
  }
}

/**
 * The response side: an assistant message's first tool call as `function_call`, finish reason
 * `function_call` (also for a named `function_call`, whose tool call finishes "stop" under
 * `tool_choice`: the legacy API answered `function_call`).
 */
export function legacyMessage(message: Record<string, unknown>, finish: string | null): { message: Record<string, unknown>; finish: string | null } {
  const calls = message.tool_calls as Array<{ function: { name: string; arguments: string } }> | undefined;
  if (!calls || calls.length === 0) return { message, finish };
  const { tool_calls: _calls, ...rest } = message;
  return { message: { ...rest, function_call: calls[0]!.function }, finish: legacyFinish(finish) };
}

/** A choice that ended with a call: `function_call` for "tool_calls" or "stop"; a `length` cut stays. */
export function legacyFinish(finish: string | null): string | null {
  return finish === 'tool_calls' || finish === 'stop' ? 'function_call' : finish;
}

/** A streamed tool-call delta as a legacy `function_call` delta (only the first call; later ones are dropped). */
export function legacyDelta(delta: Record<string, unknown>): Record<string, unknown> | undefined {
  const calls = delta.tool_calls as Array<{ index: number; function: { name?: string; arguments?: string } }> | undefined;
  if (!calls) return delta;
  const first = calls.find((c) => c.index === 0);
  if (!first) return undefined;
  const fc: Record<string, string> = {};
  if (first.function.name !== undefined) fc.name = first.function.name;
  fc.arguments = first.function.arguments ?? '';
  return { function_call: fc };
}
