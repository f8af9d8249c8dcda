/**
 * JSON-schema keywords xgrammar 0.1.27 does not enforce, refused up front.
 *
 * xgrammar silently ignores some keywords (measured: random walks through the compiled grammar
 * produced values that break them), so a schema using them could yield output that does not
 * validate. Rather than serve "valid" output that is not, the request is refused with a 400
 * naming the keyword and where it is. The list follows vLLM's
 * `has_xgrammar_unsupported_json_features` plus what the tests in
 * test/structured/schema-check.test.ts measured.
 */

/** Keywords refused wherever they appear. */
const ALWAYS = ['multipleOf', 'uniqueItems', 'not', 'if', 'then', 'else', 'contains', 'minContains', 'maxContains', 'propertyNames', 'dependentRequired', 'dependentSchemas', 'dependencies'];
/** Bounds enforced for "integer" but not for "number". */
const NUMBER_BOUNDS = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];
/**
 * Deepest sub-schema accepted. NOTE(why): xgrammar 0.1.27's WASM build overflows its stack on
 * schemas nested ~70 levels deep (arrays of arrays: 60 compiled, 80 trapped) and is corrupt
 * afterwards; 32 leaves a margin for wider levels (objects, combinators).
 */
const MAX_DEPTH = 32;
/** Sub-schema holders to walk into: keyword → how its value holds schemas. */
const MAP_KEYS = ['properties', 'patternProperties', '$defs', 'definitions'];
const ONE_KEYS = ['items', 'additionalProperties', 'unevaluatedProperties'];
const LIST_KEYS = ['anyOf', 'oneOf', 'allOf', 'prefixItems'];

/** One refused keyword: `path` is a JSON pointer into the schema. */
export interface UnsupportedFeature {
  keyword: string;
  path: string;
  /** Why, when it is not that xgrammar ignores the keyword (the callers' default wording). */
  reason?: string;
}

const ptr = (s: string): string => s.replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * Whether `ref` is a pointer into `root` that xgrammar 0.1.27 resolves: `#`, or `#/a/b` looked up
 * segment by segment as written (it does not unescape RFC 6901's `~1` / `~0` nor %-encoding).
 * A pointer to nothing fails a FATAL check inside xgrammar (its WASM instance aborts), so it is
 * refused up front.
 */
function refResolves(root: unknown, ref: string): boolean {
  if (ref === '#') return true;
  if (!ref.startsWith('#/')) return false;
  let cur: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    if (!cur || typeof cur !== 'object' || !Object.hasOwn(cur, part)) return false;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur !== null && typeof cur === 'object';
}

/**
 * Keywords of one schema level that no value can satisfy (xgrammar compiles some of them into a
 * grammar that still emits `{}`, others fail with its internal text), or undefined.
 */
function unsatisfiable(s: Record<string, unknown>): string | undefined {
  if (Array.isArray(s.enum) && s.enum.length === 0) return 'enum: []';
  for (const [lo, hi] of [['minLength', 'maxLength'], ['minItems', 'maxItems'], ['minProperties', 'maxProperties'], ['minimum', 'maximum']]) {
    if (typeof s[lo!] === 'number' && typeof s[hi!] === 'number' && (s[lo!] as number) > (s[hi!] as number)) return `${lo} ${String(s[lo!])} > ${hi} ${String(s[hi!])}`;
  }
  if (s.additionalProperties === false && Array.isArray(s.required)) {
    const props = s.properties && typeof s.properties === 'object' ? (s.properties as Record<string, unknown>) : {};
    const missing = s.required.find((k) => typeof k === 'string' && !Object.hasOwn(props, k));
    if (missing !== undefined) return `required "${String(missing)}" (not in properties, and additionalProperties is false)`;
  }
  return undefined;
}

/**
 * The first keyword of `schema` xgrammar would not enforce, or undefined when all are enforced.
 * Also a `$ref` that is not a pointer into `root` (the whole schema) that resolves, a
 * sub-schema nested more than MAX_DEPTH levels deep, and keywords no value satisfies.
 * Walks properties, items, combinators and definitions (depth-first, document order).
 */
export function findUnsupportedFeature(schema: unknown, path = '', root: unknown = schema, depth = 0): UnsupportedFeature | undefined {
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return undefined;
  if (depth > MAX_DEPTH) return { keyword: `a sub-schema ${depth} levels deep`, path, reason: `more than this server compiles (${MAX_DEPTH})` };
  const s = schema as Record<string, unknown>;
  const empty = unsatisfiable(s);
  if (empty) return { keyword: empty, path: path || '/', reason: 'which no value satisfies' };
  if ('$ref' in s) {
    const ref = s.$ref;
    if (typeof ref !== 'string' || !refResolves(root, ref)) {
      const local = typeof ref === 'string' && (ref === '#' || ref.startsWith('#/'));
      return {
        keyword: `$ref ${JSON.stringify(ref)}`,
        path: path || '/',
        reason: local ? 'which points to nothing in this schema (segments are matched as written: ~0, ~1 and %-escapes are not decoded)' : 'which is not a local reference (only "#" and "#/..." pointers into this schema are resolved)',
      };
    }
  }
  for (const k of ALWAYS) {
    if (k in s && !(k === 'uniqueItems' && s[k] === false)) return { keyword: k, path: path || '/' };
  }
  const types = Array.isArray(s.type) ? s.type : [s.type];
  if (types.includes('number')) {
    for (const k of NUMBER_BOUNDS) if (k in s) return { keyword: `${k} (on a "number"; use "integer" or drop the bound)`, path: path || '/' };
  }
  if (typeof s.format === 'string' && ('minLength' in s || 'maxLength' in s || 'pattern' in s)) {
    return { keyword: 'format together with minLength/maxLength/pattern', path: path || '/' };
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 1) return { keyword: 'allOf with more than one schema', path: path || '/' };
  for (const k of MAP_KEYS) {
    const m = s[k];
    if (m && typeof m === 'object') {
      for (const [name, sub] of Object.entries(m)) {
        const f = findUnsupportedFeature(sub, `${path}/${k}/${ptr(name)}`, root, depth + 1);
        if (f) return f;
      }
    }
  }
  for (const k of ONE_KEYS) {
    const f = findUnsupportedFeature(s[k], `${path}/${k}`, root, depth + 1);
    if (f) return f;
  }
  for (const k of LIST_KEYS) {
    if (!Array.isArray(s[k])) continue;
    for (let i = 0; i < (s[k] as unknown[]).length; i++) {
      const f = findUnsupportedFeature((s[k] as unknown[])[i], `${path}/${k}/${i}`, root, depth + 1);
      if (f) return f;
    }
  }
  return undefined;
}
