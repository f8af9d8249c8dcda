/**
 * Stored responses (`store: true`, the Responses API's default): what `previous_response_id`
 * continues, and what `GET` / `DELETE /v1/responses/{id}` and `.../input_items` read.
 *
 * In memory, per router, bounded: at most `maxEntries` responses and about `maxBytes` of their
 * JSON; the least recently used go first (a follow-up that names an evicted id gets the 400 an
 * unknown id gets). Every entry belongs to the API key that created it (its name; one shared
 * owner in open mode): another key sees it as unknown, so ids do not leak across tenants.
 * vLLM's Responses store is likewise in memory; nothing survives a restart.
 */
import { InvalidRequestError, OpenLoraError } from '../errors.ts';
import type { ChatMessage } from '../tokenizer.ts';

/** One stored response. */
export interface StoredResponse {
  owner: string;
  /** The response object as it was returned. */
  response: Record<string, unknown>;
  /** The conversation a follow-up continues: the earlier turns, this input and this output (chat form, no instructions). */
  conversation: ChatMessage[];
  /** This request's input items as listed by `input_items` (each with an id). */
  inputItems: Array<Record<string, unknown>>;
}

/** Defaults: 4096 responses, 64 MiB of JSON. */
export const RESPONSE_STORE_DEFAULTS = { maxEntries: 4096, maxBytes: 64 * 1024 * 1024 };

/** 404 for an id this owner has no response under (`GET` / `DELETE`). */
export class ResponseNotFoundError extends OpenLoraError {
  constructor(id: string) {
    super(404, `Response with id '${id}' not found.`, 'invalid_request_error', 'response_id', 'not_found');
  }
}

/** The bounded, per-owner store of responses. */
export class ResponseStore {
  private readonly entries = new Map<string, StoredResponse & { bytes: number }>();
  private bytes = 0;

  constructor(
    readonly maxEntries = RESPONSE_STORE_DEFAULTS.maxEntries,
    readonly maxBytes = RESPONSE_STORE_DEFAULTS.maxBytes,
  ) {}

  /** Responses held now. */
  get size(): number {
    return this.entries.size;
  }

  /** Keep a response under its id (evicting the least recently used past the bounds; one larger than maxBytes is not kept). */
  put(id: string, entry: StoredResponse): void {
    this.delete(entry.owner, id);
    const bytes = 2 * (JSON.stringify(entry.response).length + JSON.stringify(entry.conversation).length + JSON.stringify(entry.inputItems).length);
    if (bytes > this.maxBytes) return;
    this.entries.set(id, { ...entry, bytes });
    this.bytes += bytes;
    for (const [old, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.entries.delete(old);
      this.bytes -= e.bytes;
    }
  }

  /** The owner's response `id` (and marks it recently used), or undefined. */
  get(owner: string, id: string): StoredResponse | undefined {
    const e = this.entries.get(id);
    if (!e || e.owner !== owner) return undefined;
    this.entries.delete(id);
    this.entries.set(id, e);
    return e;
  }

  /**
   * The conversation `previous_response_id` continues.
   * @throws InvalidRequestError (400, param `previous_response_id`, code `previous_response_not_found`) as OpenAI.
   */
  conversation(owner: string, id: string): ChatMessage[] {
    const e = this.get(owner, id);
    if (!e) throw new InvalidRequestError(`Previous response with id '${id}' not found.`, 'previous_response_id', 'previous_response_not_found');
    return structuredClone(e.conversation);
  }

  /** Drop the owner's response `id`; whether there was one. */
  delete(owner: string, id: string): boolean {
    const e = this.entries.get(id);
    if (!e || e.owner !== owner) return false;
    this.entries.delete(id);
    this.bytes -= e.bytes;
    return true;
  }
}
