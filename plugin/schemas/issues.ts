/**
 * Zod issues → OpenAI 400 bodies.
 *
 * Only the first issue is reported (as OpenAI does); its path becomes `param`
 * (`messages[0].content`), and the message states what was expected and what was received.
 */
import type { z } from 'zod';
import { InvalidRequestError } from '../errors.ts';
import { jsonDepth } from '../json-depth.ts';

type Issue = z.core.$ZodIssue;
type Path = ReadonlyArray<PropertyKey>;

/** `['messages', 0, 'content']` → `messages[0].content`. */
export function formatParam(path: Path): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/** The JSON type of a value, in OpenAI's words ("a string", "an array", "null", ...). */
export function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return !Number.isFinite(v) ? 'a number too large to represent' : Number.isInteger(v) ? 'an integer' : 'a decimal';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'boolean') return 'a boolean';
  return `a ${typeof v}`;
}

/** The value at `path` inside `input` (undefined where the path leaves it). */
function valueAt(input: unknown, path: Path): unknown {
  let v = input;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

/** Levels of a received value the 400 message quotes at most (deeper: its type alone). */
const SHOW_DEPTH = 8;

/** The received value as the 400 message quotes it: its JSON, cut at 60 characters. */
function show(v: unknown): string {
  // NOTE(why): JSON.stringify recurses: a value nested a few thousand levels overflowed the stack (a 500).
  if (jsonDepth(v, SHOW_DEPTH) > SHOW_DEPTH) return `${describeType(v)} nested more than ${SHOW_DEPTH} levels deep`;
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

const EXPECTED: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
};

/** Whether an invalid_type issue's expected type is of the value's own kind (an integer for 1.5). */
function sameKind(expected: string, v: unknown): boolean {
  if (expected === 'int' || expected === 'number') return typeof v === 'number';
  if (expected === 'array') return Array.isArray(v);
  if (expected === 'object') return v !== null && typeof v === 'object' && !Array.isArray(v);
  return typeof v === expected;
}

/**
 * Descend into the union branch that matched the input best: one that got past the root, and
 * among those, one whose issue is not a wrong type, else one that expected the value's own kind
 * (`prompt: [1.5]` is a token id that is not an integer, not a string that is a number).
 */
function unwrapUnion(issue: Issue, path: Path, input: unknown): [Issue, Path] {
  if (issue.code !== 'invalid_union') return [issue, path];
  let best: Issue | undefined;
  let bestScore = -1;
  for (const branch of issue.errors) {
    const first = branch[0];
    if (!first || (first.code === 'invalid_type' && first.path.length === 0)) continue;
    const score = first.code !== 'invalid_type' ? 2 : sameKind(first.expected, valueAt(input, [...path, ...first.path])) ? 1 : 0;
    if (score > bestScore) [best, bestScore] = [first, score];
  }
  return best ? unwrapUnion(best, [...path, ...best.path], input) : [issue, path];
}

/** Build the message for one issue. */
function describeIssue(issue: Issue, param: string, received: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (received === undefined) return `Missing required parameter: '${param}'.`;
      return `Invalid type for '${param}': expected ${EXPECTED[issue.expected] ?? issue.expected}, but got ${describeType(received)} instead.`;
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
      const op = issue.code === 'too_small' ? (issue.inclusive ? '>=' : '>') : issue.inclusive ? '<=' : '<';
      if (issue.origin === 'array' || issue.origin === 'string') {
        const unit = issue.origin === 'array' ? 'items' : 'characters';
        const got = (received as { length?: number } | undefined)?.length;
        return `Invalid '${param}': expected ${issue.code === 'too_small' ? 'at least' : 'at most'} ${String(bound)} ${unit}, but got ${got ?? show(received)} instead.`;
      }
      return `Invalid '${param}': expected a value ${op} ${String(bound)}, but got ${show(received)} instead.`;
    }
    case 'invalid_value':
      return `Invalid value for '${param}': expected one of ${issue.values.map(show).join(', ')}, but got ${show(received)} instead.`;
    case 'invalid_union':
      if (received === undefined) return `Missing required parameter: '${param}'.`;
      return `Invalid type for '${param}': ${issue.message === 'Invalid input' ? 'it matches none of the accepted types' : issue.message}, but got ${describeType(received)} (${show(received)}) instead.`;
    case 'invalid_format':
      return `Invalid value for '${param}': expected ${issue.format === 'regex' ? 'the format ' + String((issue as { pattern?: string }).pattern) : issue.format}, but got ${show(received)} instead.`;
    case 'invalid_key': {
      // A record's key (logit_bias): the key's own issue says what a key must be.
      const inner = issue.issues[0]?.message;
      return `Invalid key in '${formatParam(issue.path.slice(0, -1))}': ${inner ?? issue.message}, but got ${show(issue.path[issue.path.length - 1])} instead.`;
    }
    default:
      return `Invalid value for '${param}': ${issue.message}`;
  }
}

/** Turn a failed safeParse into the InvalidRequestError for its first issue. */
export function issueToError(error: z.ZodError, input: unknown): InvalidRequestError {
  const first = error.issues[0];
  if (!first) return new InvalidRequestError('Invalid request body.');
  const [issue, path] = unwrapUnion(first, first.path, input);
  const param = formatParam(path);
  if (path.length === 0) {
    return new InvalidRequestError(`Invalid request body: expected a JSON object, but got ${describeType(input)} instead.`);
  }
  return new InvalidRequestError(describeIssue(issue, param, valueAt(input, path)), param);
}

/** Validate `input` against `schema`; throws InvalidRequestError (400) naming the first bad field. */
export function parseRequest<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input);
  if (!r.success) throw issueToError(r.error, input);
  return r.data;
}
