/**
 * Stop strings matched across token boundaries.
 *
 * Text arrives in arbitrary pieces, so a stop string may start in one piece and end in a later
 * one. The matcher emits everything that cannot be the start of a stop string and holds back
 * only the longest suffix that is a proper prefix of some stop string. On a match the output
 * ends just before the stop string (OpenAI does not return the stop sequence), or right after it
 * with vLLM's `include_stop_str_in_output`.
 */

/** Result of feeding text to the matcher. */
export interface StopResult {
  /** Text that is safe to send now. */
  text: string;
  /** True once a stop string matched; `text` then ends right before it (or after it, includeStop) and later input is ignored. */
  stopped: boolean;
}

/** Length of the longest suffix of `s` that is a proper prefix of `stop`. */
function partialSuffix(s: string, stop: string): number {
  for (let k = Math.min(stop.length - 1, s.length); k > 0; k--) {
    if (s.endsWith(stop.slice(0, k))) return k;
  }
  return 0;
}

/** Per-sequence stop string matcher; with no stop strings it passes text straight through. */
export class StopMatcher {
  private readonly stops: string[];
  private held = '';
  private done = false;

  /**
   * @param stops Stop strings; empty strings are ignored.
   * @param includeStop Keep the matched stop string at the end of the text (vLLM's include_stop_str_in_output).
   */
  constructor(
    stops: readonly string[] = [],
    private readonly includeStop = false,
  ) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** Whether a stop string has matched. */
  get stopped(): boolean {
    return this.done;
  }

  /** Feed a piece of text. */
  push(text: string): StopResult {
    if (this.done) return { text: '', stopped: true };
    if (this.stops.length === 0) return { text, stopped: false };
    const buf = this.held + text;
    // Earliest match wins (at the same start, the stop listed first); a match can only involve
    // the held suffix plus the new text.
    let cut = -1;
    let matched = '';
    for (const stop of this.stops) {
      const i = buf.indexOf(stop);
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        matched = stop;
      }
    }
    if (cut >= 0) {
      this.done = true;
      this.held = '';
      return { text: buf.slice(0, this.includeStop ? cut + matched.length : cut), stopped: true };
    }
    let keep = 0;
    for (const stop of this.stops) keep = Math.max(keep, partialSuffix(buf, stop));
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** At the end of the sequence: release the held-back text (it never completed a stop string). */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    return out;
  }
}
