/**
 * What a request asks the output to be, as one `GrammarSpec`, and its cache key.
 *
 * Sources (all optional, at most one per request): OpenAI `response_format`
 * (`json_object`, `json_schema`), vLLM's `structured_outputs` (`json`, `regex`, `choice`,
 * `grammar`, `json_object`, `structural_tag`) and its older `guided_json`, `guided_regex`,
 * `guided_choice`, `guided_grammar` body fields, and the tool-calling grammars of ../tools/.
 * Each spec carries `param`, the request field it came from, so a schema xgrammar refuses
 * becomes a 400 naming that field.
 */
import { createHash } from 'node:crypto';

/** A grammar to compile; `param` names the request field it came from (for 400s). */
export type GrammarSpec =
  | { kind: 'json_object'; param: string }
  | { kind: 'json_schema'; schema: Record<string, unknown> | boolean; param: string }
  | { kind: 'regex'; pattern: string; param: string }
  | { kind: 'choice'; choices: string[]; param: string }
  | { kind: 'ebnf'; grammar: string; param: string }
  | { kind: 'structural_tag'; tag: Record<string, unknown>; param: string };

/** JSON with object keys sorted at every depth: equal schemas give equal text. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v as object).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The payload that defines a spec's grammar (everything but `param`). */
function payload(spec: GrammarSpec): unknown {
  switch (spec.kind) {
    case 'json_object':
      return null;
    case 'json_schema':
      return spec.schema;
    case 'regex':
      return spec.pattern;
    case 'choice':
      return spec.choices;
    case 'ebnf':
      return spec.grammar;
    case 'structural_tag':
      return spec.tag;
  }
}

/** Cache key: sha256 of the kind and the canonical payload (hex, 64 chars). */
export function specKey(spec: GrammarSpec): string {
  return createHash('sha256').update(spec.kind).update('\0').update(canonicalJson(payload(spec))).digest('hex');
}

/** Size of a spec's source text in UTF-8 bytes (the bound checked before compiling). */
export function specBytes(spec: GrammarSpec): number {
  return Buffer.byteLength(canonicalJson(payload(spec)));
}

/** Quote a string as an xgrammar EBNF literal ("..." with C-style escapes). */
export function ebnfLiteral(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (c < 0x20 || c === 0x7f) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + '"';
}

/** The EBNF of a `choice` spec: exactly one of the strings. */
export function choiceGrammar(choices: string[]): string {
  return `root ::= ${choices.map(ebnfLiteral).join(' | ')}`;
}
