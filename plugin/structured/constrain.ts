/**
 * The JS half of constrained decoding for one engine sequence.
 *
 * The engine samples a constrained sequence only under the mask of its current position
 * (native/README.md, "Constrained decoding"): the first mask goes with the sequence
 * (`SequenceParams.tokenMask`), and after each token event the matcher accepts the token in the
 * grammar worker and the next mask is sent with `setTokenMask`. Unconstrained sequences of the
 * same step never wait for this.
 */
import { allowsAnyToken } from '../../native/token-mask.ts';
import { EngineError, InvalidRequestError } from '../errors.ts';
import type { GrammarService, SequenceGrammar } from './service.ts';

/**
 * The 400 for a grammar that, not yet complete, allows no next token: it can never be completed.
 * @param generated Tokens generated before the dead end (0: the grammar allows no first token).
 */
export function unsatisfiableGrammar(grammar: SequenceGrammar, generated: number): InvalidRequestError {
  const param = grammar.spec.param;
  return new InvalidRequestError(
    `Invalid '${param}': the grammar allows no token after ${generated} generated token${generated === 1 ? '' : 's'}, so no output can ever satisfy it (for example a $ref or rule that recurses without a base case, or a character such as an emoji that this model's vocabulary has no whole piece for: constrained output is built from pieces that decode to whole UTF-8 characters).`,
    param,
  );
}

/** One model's grammar service, created on first use (building the TokenizerInfo takes seconds). */
const services = new WeakMap<object, GrammarService>();

/** The grammar service of `owner` (a served model), made by `create` on first use. */
export function grammarServiceOf(owner: object, create: () => GrammarService): GrammarService {
  let s = services.get(owner);
  if (!s) {
    s = create();
    services.set(owner, s);
  }
  return s;
}

/** Stop the grammar service of `owner`, if it has one (router close). */
export async function disposeGrammarService(owner: object): Promise<void> {
  const s = services.get(owner);
  services.delete(owner);
  await s?.dispose();
}

/** Drives one constrained sequence: each sampled token advances the matcher; the next mask goes to the engine. */
export class ConstrainedSequence {
  private closed = false;

  /**
   * @param grammar The sequence's matcher (its current `mask` is the first token's).
   * @param sendMask Hands a mask to the engine for the sequence's next token.
   * @param onError Called when the grammar refuses a sampled token, reaches a dead end (no
   *   token allowed before it is complete: a 400 naming the grammar's field), or the worker or
   *   the engine's mask hand-off fails (the sequence should then be cancelled and the request failed).
   * @param vocabSize The model's logits width (ModelInfo.vocabSize): masks are checked over it.
   */
  constructor(
    readonly grammar: SequenceGrammar,
    private readonly sendMask: (mask: Int32Array) => void,
    private readonly onError: (err: Error) => void,
    private readonly vocabSize: number,
  ) {}

  /** The mask of the first generated token. */
  get firstMask(): Int32Array {
    return this.grammar.mask;
  }

  /** A token was sampled (and reported); a stop token ends the grammar, anything else gets the next mask. */
  onToken(token: number): void {
    if (this.closed) return;
    this.grammar.accept(token).then(
      (r) => {
        if (this.closed) return;
        if (!r.accepted) this.onError(new EngineError(`The engine sampled token ${token}, which the grammar does not allow.`));
        else if (!r.terminated && r.mask) {
          if (!allowsAnyToken(r.mask, this.vocabSize)) return this.onError(unsatisfiableGrammar(this.grammar, this.grammar.accepted.length));
          // NOTE(why): this runs in a promise callback: a throw here would be an unhandled
          // rejection that ends the process, so every failure goes to onError.
          try {
            this.sendMask(r.mask);
          } catch (err) {
            this.onError(err instanceof Error ? err : new EngineError(String(err)));
          }
        }
      },
      (err: Error) => {
        if (!this.closed) this.onError(err);
      },
    );
  }

  /** The sequence ended: free the matcher. */
  close(): void {
    this.closed = true;
    this.grammar.close();
  }
}
