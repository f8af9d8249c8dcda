/**
 * Stored responses (`store: true`, the Responses API's default): what `previous_response_id`
 * continues, and what `GET` / `DELETE /v1/responses/{id}` and `.../input_items` read.
 *
 * In memory, per router, bounded: at most `maxEntries` responses and about `maxBytes` of their
 * JSON; the least recently used go first (a follow-up that names an evicted id gets the 400 an
 * unknown id gets). Every entry belongs to the API key that created it (its digest; one shared
 * owner in open mode): another key sees it as unknown, so ids do not leak across tenants. One
 * owner holds at most a quarter of either bound (its own least recently used go first), so a busy
 * tenant cannot push every other tenant's conversations out. A response is stored when it starts
 * (`status: "in_progress"`, so `GET` finds a response still streaming) and again when it ends.
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
  /** Per owner: entries and bytes held. */
  private readonly owners = new Map<string, { entries: number; bytes: number }>();

  constructor(
    readonly maxEntries = RESPONSE_STORE_DEFAULTS.maxEntries,
    readonly maxBytes = RESPONSE_STORE_DEFAULTS.maxBytes,
  ) {}

  /** Responses held now. */
  get size(): number {
    return this.entries.size;
  }

  /** Keep a response under its id (evicting the least recently used past the bounds; one larger than an owner's share of maxBytes is not kept). */
  put(id: string, entry: StoredResponse): void {
    this.delete(entry.owner, id);
    const bytes = 2 * (JSON.stringify(entry.response).length + JSON.stringify(entry.conversation).length + JSON.stringify(entry.inputItems).length);
    const quota = { entries: Math.max(1, Math.floor(this.maxEntries / 4)), bytes: Math.floor(this.maxBytes / 4) };
    if (bytes > quota.bytes) return;
    this.entries.set(id, { ...entry, bytes });
    this.account(entry.owner, 1, bytes);
    const mine = this.owners.get(entry.owner)!;
    for (const [old, e] of this.entries) {
      if (mine.entries <= quota.entries && mine.bytes <= quota.bytes) break;
      if (e.owner === entry.owner) this.drop(old, e);
    }
    for (const [old, e] of this.entries) {
      if (this.entries.size <= this.maxEntries && this.bytes <= this.maxBytes) break;
      this.drop(old, e);
    }
  }

  private account(owner: string, entries: number, bytes: number): void {
    const o = this.owners.get(owner) ?? { entries: 0, bytes: 0 };
    o.entries += entries;
    o.bytes += bytes;
    this.bytes += bytes;
    if (o.entries === 0) this.owners.delete(owner);
    else this.owners.set(owner, o);
  }

  private drop(id: string, e: StoredResponse & { bytes: number }): void {
    this.entries.delete(id);
    this.account(e.owner, -1, -e.bytes);
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
   * @throws InvalidRequestError (400, param `previous_response_id`, code `previous_response_not_found`) as OpenAI;
   *   `previous_response_in_progress` (400) while that response is still being generated.
   */
  conversation(owner: string, id: string): ChatMessage[] {
    const e = this.get(owner, id);
    if (!e) throw new InvalidRequestError(`Previous response with id '${id}' not found.`, 'previous_response_id', 'previous_response_not_found');
    if (e.response.status === 'in_progress') {
      throw new InvalidRequestError(`Previous response with id '${id}' is still in progress: continue it once it has completed.`, 'previous_response_id', 'previous_response_in_progress');
    }
    return structuredClone(e.conversation);
  }

  /** Drop the owner's response `id`; whether there was one. */
  delete(owner: string, id: string): boolean {
    const e = this.entries.get(id);
    if (!e || e.owner !== owner) return false;
    this.drop(id, e);
    return true;
  }
}
