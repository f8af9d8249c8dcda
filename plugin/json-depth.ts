/**
 * How deep a JSON value nests, measured without recursion: request bodies may nest thousands of
 * levels (JSON.parse takes them), and every recursive walk over them (canonical JSON for grammar
 * keys, string shielding for chat templates, schema checks) would overflow the stack (a 500).
 * The request schemas bound the depth first with this.
 */

/** Most levels of arrays / objects a JSON schema or tool definition may have in a request. */
export const MAX_JSON_DEPTH = 128;

/**
 * The depth of nested arrays / objects in `v` (0 for a scalar, 1 for a flat object), walked
 * with an explicit stack; it stops as soon as the depth passes `limit` (returning limit + 1).
 */
export function jsonDepth(v: unknown, limit: number): number {
  let most = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    most = Math.max(most, d);
    if (most > limit) return most;
    for (const child of Object.values(x)) stack.push([child, d + 1]);
  }
  return most;
}
