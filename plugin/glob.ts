/**
 * Model-name globs for config (`upstreams[].pattern`, `keys[].models`, `keys[].adapters`):
 * `*` matches any run of characters (`:` and `/` included), `?` exactly one; everything else
 * is literal. Matching is case-sensitive and whole-string.
 */

/** Compile one glob to an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let re = '^';
  for (const ch of glob) {
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else re += ch.replace(/[.+^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(re + '$', 's');
}

/** A compiled list of globs: `test(name)` is true when any of them matches. */
export class GlobList {
  private readonly res: RegExp[];
  /** True when the list contains `*` alone (matches everything). */
  readonly all: boolean;

  constructor(readonly globs: readonly string[]) {
    this.res = globs.map(globToRegExp);
    this.all = globs.includes('*');
  }

  test(name: string): boolean {
    return this.all || this.res.some((r) => r.test(name));
  }
}
