/**
 * The JS half of constrained decoding for one engine sequence.
 *
 * The engine samples a constrained sequence only under the mask of its current position
 * (native/README.md, "Constrained decoding"): the first mask goes with the sequence
 * (`SequenceParams.tokenMask`), and after each token event the matcher accepts the token in the
 * grammar worker and the next mask is sent with `setTokenMask`. Unconstrained sequences of the
 * same step never wait for this.
 */
import { EngineError } from '../errors.ts';
import type { GrammarService, SequenceGrammar } from './service.ts';

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
   * @param onError Called when the grammar refuses a sampled token or the worker fails (the
   *   sequence should then be cancelled and the request failed).
   */
  constructor(
    readonly grammar: SequenceGrammar,
    private readonly sendMask: (mask: Int32Array) => void,
    private readonly onError: (err: Error) => void,
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
        else if (!r.terminated && r.mask) this.sendMask(r.mask);
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
