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
/** Sub-schema holders to walk into: keyword → how its value holds schemas. */
const MAP_KEYS = ['properties', 'patternProperties', '$defs', 'definitions'];
const ONE_KEYS = ['items', 'additionalProperties', 'unevaluatedProperties'];
const LIST_KEYS = ['anyOf', 'oneOf', 'allOf', 'prefixItems'];

/** One refused keyword: `path` is a JSON pointer into the schema. */
export interface UnsupportedFeature {
  keyword: string;
  path: string;
}

const ptr = (s: string): string => s.replaceAll('~', '~0').replaceAll('/', '~1');

/**
 * The first keyword of `schema` xgrammar would not enforce, or undefined when all are enforced.
 * Walks properties, items, combinators and definitions (depth-first, document order).
 */
export function findUnsupportedFeature(schema: unknown, path = ''): UnsupportedFeature | undefined {
  if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return undefined;
  const s = schema as Record<string, unknown>;
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
        const f = findUnsupportedFeature(sub, `${path}/${k}/${ptr(name)}`);
        if (f) return f;
      }
    }
  }
  for (const k of ONE_KEYS) {
    const f = findUnsupportedFeature(s[k], `${path}/${k}`);
    if (f) return f;
  }
  for (const k of LIST_KEYS) {
    if (!Array.isArray(s[k])) continue;
    for (let i = 0; i < (s[k] as unknown[]).length; i++) {
      const f = findUnsupportedFeature((s[k] as unknown[])[i], `${path}/${k}/${i}`);
      if (f) return f;
    }
  }
  return undefined;
}
