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

/**
 * A client with more than STALL_BYTES unsent whose socket accepts no byte for STALL_MS is cut
 * too (checked every STALL_CHECK_MS, also after the stream ended).
 * NOTE(why): MAX_UNSENT_BYTES alone bounds one stream, not their number: a demo stream of n 16
 * with top_logprobs stays under it (~12 MB), and 60 such clients that never read held 1.2 GB.
 * A reader that reads at all moves the socket within seconds.
 */
export const STALL_BYTES = 256 * 1024;
export const STALL_MS = 30_000;
const STALL_CHECK_MS = 1_000;

/** Limits of one SseWriter (tests shorten them). */
export interface SseLimits {
  /** Unread bytes past which the response is destroyed at once (default MAX_UNSENT_BYTES). */
  maxUnsentBytes?: number;
  /** Unsent bytes past which a socket that accepts nothing for stallMs is cut (default STALL_BYTES). */
  stallBytes?: number;
  /** How long such a socket may accept nothing (ms, default STALL_MS). */
  stallMs?: number;
}

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

  /** Set when the client was cut for not reading (SseLimits). */
  overflowed = false;
  private readonly maxUnsentBytes: number;
  private readonly stallBytes: number;
  private readonly stallMs: number;
  /** The stall check while more than stallBytes are unsent: the bytes the kernel took and when that last moved. */
  private stall: { timer: NodeJS.Timeout; written: number; since: number } | undefined;

  /**
   * @param res The response to stream into.
   * @param limits When a client that does not read is cut: destroying the response, whose
   *   `close` cancels the generation as a disconnect does (SseLimits).
   */
  constructor(
    private readonly res: Response,
    limits: SseLimits = {},
  ) {
    this.maxUnsentBytes = limits.maxUnsentBytes ?? MAX_UNSENT_BYTES;
    this.stallBytes = limits.stallBytes ?? STALL_BYTES;
    this.stallMs = limits.stallMs ?? STALL_MS;
    res.once('close', () => this.stopStallCheck());
  }

  /** Destroy the response of a client that does not read; `reason` reaches the log (DisconnectWatch.cutReason). */
  private cut(reason: string): void {
    this.overflowed = true;
    this.res.locals.cutReason = reason;
    this.stopStallCheck();
    this.res.destroy();
  }

  private stopStallCheck(): void {
    if (this.stall) clearInterval(this.stall.timer);
    this.stall = undefined;
  }

  /** Starts the stall check when more than stallBytes are unsent (it stops itself once they drain). */
  private watchStall(): void {
    if (this.stall || this.res.writableLength <= this.stallBytes) return;
    // Bytes the kernel took: net.Socket's bytesWritten also counts what still waits in its buffer.
    const written = () => (this.res.socket ? this.res.socket.bytesWritten - this.res.socket.writableLength : 0);
    const timer = setInterval(() => {
      const st = this.stall;
      if (!st) return;
      if (this.res.destroyed || this.res.writableFinished || this.res.writableLength <= this.stallBytes) return this.stopStallCheck();
      const now = Date.now();
      if (written() !== st.written) {
        st.written = written();
        st.since = now;
      } else if (now - st.since >= this.stallMs) {
        this.cut(`the client read none of its stream's last ${this.res.writableLength} unsent bytes for ${this.stallMs} ms`);
      }
    }, Math.min(STALL_CHECK_MS, this.stallMs));
    timer.unref();
    this.stall = { timer, written: written(), since: Date.now() };
  }

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
      this.cut(`the client left ${this.res.writableLength} bytes of its stream unread (limit ${this.maxUnsentBytes})`);
    } else {
      this.watchStall();
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
