/**
 * Server-sent events in the shape openai-node's `Stream` reads: `data: <json>\n\n` per chunk,
 * `data: [DONE]\n\n` last; an error after the headers went out is one
 * `data: {"error": {...}}` event, then `data: [DONE]` as vLLM sends it (openai-node raises at
 * the error event; clients that read until [DONE] are not left waiting).
 */
import type { Response } from 'express';
import { toOpenAIError } from './errors.ts';

/**
 * Bytes a stream may have written that its client has not read yet (the response's and the
 * socket's buffers together); past it the client is cut as not reading.
 * NOTE(why): the engine does not wait for a slow reader, so a client that opens streams and never
 * reads them (n and top_logprobs multiply the bytes) would make the server hold every chunk.
 * 16 MiB is minutes of tokens for any reader that reads at all.
 */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;

/** Writes one SSE response. */
export class SseWriter {
  private started = false;
  private ended = false;
  private corked = false;
  private readonly uncork = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.res.uncork();
  };

  /** Set when the client was cut for not reading (MAX_UNSENT_BYTES). */
  overflowed = false;

  /**
   * @param res The response to stream into.
   * @param maxUnsentBytes Unread bytes past which the response is destroyed (its `close` then
   *   cancels the generation, as a disconnect does).
   */
  constructor(
    private readonly res: Response,
    private readonly maxUnsentBytes = MAX_UNSENT_BYTES,
  ) {}

  /** Whether the client is gone or the stream ended. */
  get closed(): boolean {
    return this.ended || this.res.destroyed || this.res.writableEnded;
  }

  /** Send the headers (status 200) now, before the first chunk. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.res.status(200);
    this.res.setHeader('content-type', 'text/event-stream; charset=utf-8');
    this.res.setHeader('cache-control', 'no-cache');
    this.res.setHeader('connection', 'keep-alive');
    this.res.setHeader('x-accel-buffering', 'no');
    this.res.flushHeaders();
  }

  /** Send one JSON chunk. */
  send(data: unknown): void {
    this.sendJson(JSON.stringify(data));
  }

  /** Send one chunk already serialized as JSON (the per-token hot path builds it by hand). */
  sendJson(json: string): void {
    this.write(`data: ${json}\n\n`);
  }

  /** Send one named event, `event: NAME` then `data: JSON` (the Responses API's stream). */
  sendEvent(event: string, json: string): void {
    this.write(`event: ${event}\ndata: ${json}\n\n`);
  }

  private write(text: string): void {
    if (this.closed) return;
    this.start();
    // NOTE(why): chunks written in one turn of the event loop leave in one socket write. The
    // engine's step batches that queued up while the loop was busy are delivered back to back,
    // so under load a stream gets several tokens per write instead of one syscall per token;
    // when the loop keeps up, setImmediate runs right after this turn's I/O callbacks.
    if (!this.corked) {
      this.corked = true;
      this.res.cork();
      setImmediate(this.uncork);
    }
    this.res.write(text);
    // compression middleware adds flush(); without it each write goes out at once.
    (this.res as unknown as { flush?: () => void }).flush?.();
    if (this.res.writableLength > this.maxUnsentBytes) {
      this.overflowed = true;
      this.res.locals.cutReason = `the client left ${this.res.writableLength} bytes of its stream unread (limit ${this.maxUnsentBytes})`;
      this.res.destroy();
    }
  }

  /** Send `[DONE]` and end the response. */
  done(): void {
    if (this.closed) return;
    this.start();
    this.ended = true;
    this.res.end('data: [DONE]\n\n');
    this.uncork(); // before the response lets go of a kept-alive socket
  }

  /** End the response without `[DONE]` (the Responses API's streams end with their last event). */
  end(): void {
    if (this.closed) return;
    this.start();
    this.ended = true;
    this.res.end();
    this.uncork();
  }

  /** Send an error event (OpenAI body), then `[DONE]`, and end the response. */
  error(err: unknown): void {
    if (this.closed) return;
    this.start();
    this.ended = true;
    this.res.end(`data: ${JSON.stringify(toOpenAIError(err).body)}\n\ndata: [DONE]\n\n`);
    this.uncork();
  }
}
