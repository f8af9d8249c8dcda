/**
 * A request body's output constraint → one `GrammarSpec` (or none).
 *
 * Sources: `response_format` (`json_object`, `json_schema`), vLLM's `structured_outputs`
 * (`json`, `regex`, `choice`, `grammar`, `json_object`, `structural_tag`) and its older
 * `guided_json`, `guided_regex`, `guided_choice`, `guided_grammar`. At most one may be given:
 * two constraints on one output are refused (400 naming the second) rather than one silently
 * winning.
 */
import { InvalidRequestError } from '../errors.ts';
import type { GrammarSpec } from './spec.ts';

type Schema = Record<string, unknown>;

/** The body fields read here (validated shapes: plugin/schemas/structured.ts). */
export interface StructuredBody {
  response_format?: { type: 'text' | 'json_object' | 'json_schema'; json_schema?: { schema?: Schema | null } | null } | null;
  structured_outputs?: {
    json?: Schema | string | null;
    regex?: string | null;
    choice?: string[] | null;
    grammar?: string | null;
    json_object?: boolean | null;
    structural_tag?: Schema | string | null;
  } | null;
  guided_json?: Schema | string | null;
  guided_regex?: string | null;
  guided_choice?: string[] | null;
  guided_grammar?: string | null;
}

/** A JSON value given as an object or as JSON text; 400 naming `param` when the text does not parse. */
function jsonObject(v: Schema | string, param: string): Schema {
  if (typeof v !== 'string') return v;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (err) {
    throw new InvalidRequestError(`Invalid '${param}': not valid JSON (${(err as Error).message}).`, param);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new InvalidRequestError(`Invalid '${param}': expected a JSON object.`, param);
  return parsed as Schema;
}

/**
 * The grammar a body asks for, or undefined for free text.
 * @throws InvalidRequestError when two constraints are given or a JSON string does not parse.
 */
export function grammarFromBody(b: StructuredBody): GrammarSpec | undefined {
  const found: GrammarSpec[] = [];
  const rf = b.response_format;
  if (rf?.type === 'json_object') found.push({ kind: 'json_object', param: 'response_format' });
  if (rf?.type === 'json_schema') {
    const schema = rf.json_schema?.schema;
    found.push(schema ? { kind: 'json_schema', schema, param: 'response_format.json_schema.schema' } : { kind: 'json_object', param: 'response_format' });
  }
  const so = b.structured_outputs ?? {};
  const sources: Array<[string, () => GrammarSpec | undefined]> = [
    ['structured_outputs.json', () => (so.json != null ? { kind: 'json_schema', schema: jsonObject(so.json, 'structured_outputs.json'), param: 'structured_outputs.json' } : undefined)],
    ['structured_outputs.regex', () => (so.regex != null ? { kind: 'regex', pattern: so.regex, param: 'structured_outputs.regex' } : undefined)],
    ['structured_outputs.choice', () => (so.choice != null ? { kind: 'choice', choices: so.choice, param: 'structured_outputs.choice' } : undefined)],
    ['structured_outputs.grammar', () => (so.grammar != null ? { kind: 'ebnf', grammar: so.grammar, param: 'structured_outputs.grammar' } : undefined)],
    ['structured_outputs.json_object', () => (so.json_object ? { kind: 'json_object', param: 'structured_outputs.json_object' } : undefined)],
    [
      'structured_outputs.structural_tag',
      () => (so.structural_tag != null ? { kind: 'structural_tag', tag: jsonObject(so.structural_tag, 'structured_outputs.structural_tag'), param: 'structured_outputs.structural_tag' } : undefined),
    ],
    ['guided_json', () => (b.guided_json != null ? { kind: 'json_schema', schema: jsonObject(b.guided_json, 'guided_json'), param: 'guided_json' } : undefined)],
    ['guided_regex', () => (b.guided_regex != null ? { kind: 'regex', pattern: b.guided_regex, param: 'guided_regex' } : undefined)],
    ['guided_choice', () => (b.guided_choice != null ? { kind: 'choice', choices: b.guided_choice, param: 'guided_choice' } : undefined)],
    ['guided_grammar', () => (b.guided_grammar != null ? { kind: 'ebnf', grammar: b.guided_grammar, param: 'guided_grammar' } : undefined)],
  ];
  for (const [, make] of sources) {
    const spec = make();
    if (spec) found.push(spec);
  }
  if (found.length > 1) {
    throw new InvalidRequestError(
      `Only one output constraint may be given, but the request has both '${found[0]!.param}' and '${found[1]!.param}'.`,
      found[1]!.param,
    );
  }
  return found[0];
}
