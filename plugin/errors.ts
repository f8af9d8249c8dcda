/**
 * HTTP errors, and the one mapping of every error to an OpenAI error body.
 *
 * Two kinds of errors reach the Express error middleware:
 * - `OpenLoraError` subclasses, thrown by the plugin itself (schemas, model resolution, auth,
 *   limits): they carry their status and OpenAI `type`.
 * - Domain errors of the layers below, which know nothing of HTTP: `AdapterError`
 *   (adapters/errors.ts) and `NativeError` (native/errors.ts), each with a stable `code`.
 *   `ERROR_TABLE` below maps every such code to a status and `type`: the only place that does.
 *
 * Only the Express error middleware (and the SSE error event) call `toOpenAIError`, so there is
 * exactly one error shape on the wire: `{error: {message, type, param, code}}` (openai-node
 * `APIError.generate` in reverse; llama.cpp server's `format_error_response`).
 */
import { ADAPTER_ERROR_CODES, AdapterError, type AdapterErrorCode } from '../adapters/errors.ts';
import { NATIVE_ERROR_CODES, NativeError, type NativeErrorCode } from '../native/errors.ts';

/** Base class: an error that knows its HTTP status and OpenAI `type`/`param`/`code`. */
export class OpenLoraError extends Error {
  /**
   * @param status HTTP status code to answer with.
   * @param message Human-readable text; names the offending field or file.
   * @param type OpenAI error type (`invalid_request_error`, `server_error`, ...).
   * @param param The request field at fault (dotted path), or null.
   * @param code Machine-readable code (`model_not_found`, `context_length_exceeded`, ...), or null.
   */
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** 400: a request field is missing, of the wrong type or out of range. */
export class InvalidRequestError extends OpenLoraError {
  constructor(message: string, param: string | null = null, code: string | null = null) {
    super(400, message, 'invalid_request_error', param, code);
  }
}

/** 404: the model (base, adapter or composition) named by the request is not served here. */
export class ModelNotFoundError extends OpenLoraError {
  /** @param param The request field that named it (`model`, or `adapters[i].name` for a body composition). */
  constructor(model: string, detail = '', param = 'model') {
    super(
      404,
      `The model \`${model}\` does not exist or you do not have access to it.${detail ? ' ' + detail : ''}`,
      'invalid_request_error',
      param,
      'model_not_found',
    );
  }
}

/** 400: prompt plus requested completion exceed the model's context window. */
export class ContextLengthError extends OpenLoraError {
  constructor(message: string, param = 'messages') {
    super(400, message, 'invalid_request_error', param, 'context_length_exceeded');
  }
}

/** 503: the service cannot take the request now (model loading, no free adapter slot). */
export class ServiceUnavailableError extends OpenLoraError {
  constructor(message: string, readonly retryAfterSeconds = 1) {
    super(503, message, 'server_error', null, 'service_unavailable');
  }
}

/** 500: the engine failed a sequence (its text is passed on: it names the cause, e.g. out of KV blocks). */
export class EngineError extends OpenLoraError {
  constructor(detail: string) {
    super(500, `The engine failed while generating: ${detail}`, 'server_error', null, 'engine_error');
  }
}

/** 429: a limit was hit (key rpm, concurrent streams, the model's request queue); retry after `retryAfterSeconds`. */
export class RateLimitError extends OpenLoraError {
  constructor(message: string, readonly retryAfterSeconds = 1, code = 'rate_limit_exceeded') {
    super(429, message, 'requests', null, code);
  }
}

/** 401: no API key, or an unknown one (the message never echoes the key). */
export class AuthenticationError extends OpenLoraError {
  constructor(message = 'Incorrect API key provided.', code = 'invalid_api_key') {
    super(401, message, 'invalid_request_error', null, code);
  }
}

/** 403: the key is valid but may not call this route (admin routes). */
export class PermissionError extends OpenLoraError {
  constructor(message: string) {
    super(403, message, 'invalid_request_error', null, 'insufficient_permissions');
  }
}

/** 502 (upstream unreachable or failed) / 504 (upstream timed out) for proxied models. */
export class UpstreamError extends OpenLoraError {
  constructor(status: 502 | 504, message: string) {
    super(status, message, 'server_error', null, status === 504 ? 'upstream_timeout' : 'upstream_error');
  }
}

/** 404: a request for an upstream model on a path that is not proxied (only the inference endpoints are). */
export class UpstreamPathError extends OpenLoraError {
  /**
   * @param method The request method.
   * @param path The request path as the client sent it (no query).
   * @param allowed The paths that are proxied.
   */
  constructor(method: string, path: string, allowed: readonly string[]) {
    super(
      404,
      `${method} ${path} is not proxied to an upstream: a model served by an upstream is answered only on ${allowed.map((p) => `POST ${p}`).join(', ')}.`,
      'invalid_request_error',
      null,
      'upstream_path_not_proxied',
    );
  }
}

/** How one domain error code answers: HTTP status, OpenAI `type`, and whether to send Retry-After. */
export interface ErrorRow {
  status: number;
  type: 'invalid_request_error' | 'server_error';
  /** Send `retry-after: <err.retryAfterSeconds ?? 1>` (the condition is expected to clear). */
  retry?: boolean;
  /**
   * The message is shown to the client (true for client faults and for engine failures whose
   * text names the cause); false: a generic message, the detail goes to the log only.
   */
  expose: boolean;
}

/** A domain error code of a lower layer. */
export type DomainErrorCode = AdapterErrorCode | NativeErrorCode;

const client = (status: number): ErrorRow => ({ status, type: 'invalid_request_error', expose: true });

/**
 * THE table: every `AdapterError` / `NativeError` code → its HTTP answer. A code shared by both
 * layers (`no_free_slot`) means the same thing in both and has one row.
 * NOTE(why): "no free slot" is 503 + Retry-After, not 400: the request is fine and succeeds
 * once a running request releases its adapter (vLLM and llama.cpp answer a full server with 503).
 */
export const ERROR_TABLE: Record<DomainErrorCode, ErrorRow> = {
  // adapters/errors.ts
  invalid_adapter: client(400),
  invalid_merge: client(400),
  adapter_exists: client(400), // vLLM's answer to loading a name twice
  adapter_name_conflict: client(409),
  invalid_lora_path: client(400),
  adapter_not_found: client(404),
  model_not_found: client(404),
  adapter_download_failed: { status: 502, type: 'server_error', expose: true },
  adapter_download_timeout: { status: 504, type: 'server_error', expose: true },
  adapter_too_large: client(413),
  adapter_checksum_mismatch: client(400),
  no_free_slot: { status: 503, type: 'server_error', retry: true, expose: true },
  too_many_adapters: client(400),
  too_many_pins: client(409),
  merges_busy: { status: 503, type: 'server_error', retry: true, expose: true },
  // NOTE(why): a retry would take as long again (and is answered from memory for a while: adapters/merge-cache.ts).
  merge_timeout: { status: 504, type: 'server_error', expose: true },
  merge_cancelled: { status: 503, type: 'server_error', retry: true, expose: true },
  // native/errors.ts. NOTE(why): at the HTTP edge a native error comes from serving a request,
  // so the values and files it names came from that request (loadModel's refusals happen at
  // start, never here): bad values / files are the client's (400); capacity is 503; the device,
  // memory and engine bugs are ours (500).
  invalid_argument: client(400),
  not_found: client(400),
  bad_file: client(400),
  busy: client(409),
  out_of_memory: { status: 500, type: 'server_error', expose: true },
  device_error: { status: 500, type: 'server_error', expose: true },
  unsupported_model: { status: 500, type: 'server_error', expose: true },
  disposed: { status: 503, type: 'server_error', retry: true, expose: true },
  internal: { status: 500, type: 'server_error', expose: false },
};

/** Every domain code, for the test that checks each has a row. */
export const DOMAIN_ERROR_CODES: readonly DomainErrorCode[] = [...new Set<DomainErrorCode>([...ADAPTER_ERROR_CODES, ...NATIVE_ERROR_CODES])];

/** The JSON body and status that answer an error. */
export interface OpenAIErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: { error: { message: string; type: string; param: string | null; code: string | null } };
}

const GENERIC_MESSAGE = 'The server had an error while processing your request.';

/**
 * body-parser's strict mode refuses a body that is valid JSON but not an object or array
 * (`null`, `"x"`, `3`) with a confusing "Unexpected token" message: say what was expected.
 * @returns the message, or undefined when `body` is not valid JSON at all.
 */
function notAnObject(body: unknown): string | undefined {
  if (typeof body !== 'string') return undefined;
  try {
    const v: unknown = JSON.parse(body);
    const kind = v === null ? 'null' : typeof v === 'string' ? 'a string' : typeof v === 'number' ? 'a number' : typeof v === 'boolean' ? 'a boolean' : undefined;
    return kind ? `Invalid request body: expected a JSON object, but got ${kind} instead.` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Map any thrown value to an OpenAI error response: OpenLoraError as it says, domain errors
 * through ERROR_TABLE, body-parser's 4xx as they are. Unknown errors become 500
 * `server_error` with a generic message (the detail goes to the log, not the client).
 */
export function toOpenAIError(err: unknown): OpenAIErrorResponse {
  if (err instanceof AdapterError || err instanceof NativeError) {
    const row = ERROR_TABLE[err.code] ?? ERROR_TABLE.internal; // a code from a newer addon: 500
    const headers: Record<string, string> = {};
    if (row.retry) headers['retry-after'] = String(err instanceof AdapterError ? err.retryAfterSeconds : 1);
    const message = row.expose ? err.message : GENERIC_MESSAGE;
    return { status: row.status, headers, body: { error: { message, type: row.type, param: err.param, code: err.code } } };
  }
  if (err instanceof OpenLoraError) {
    const headers: Record<string, string> = {};
    if (err instanceof ServiceUnavailableError || err instanceof RateLimitError) headers['retry-after'] = String(err.retryAfterSeconds);
    return {
      status: err.status,
      headers,
      body: { error: { message: err.message, type: err.type, param: err.param, code: err.code } },
    };
  }
  // body-parser errors (malformed JSON, too large) carry status/type.
  const e = err as { status?: number; statusCode?: number; type?: string; message?: string } | null;
  const status = e?.status ?? e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Valid JSON but no object: the schema's answer for an array, code null (not a parse failure).
    const wrongKind = e?.type === 'entity.parse.failed' ? notAnObject((e as { body?: unknown }).body) : undefined;
    const message =
      wrongKind ??
      (e?.type === 'entity.parse.failed'
        ? `We could not parse the JSON body of your request. (${e.message ?? 'invalid JSON'})`
        : e?.type === 'entity.too.large'
          ? 'Request body too large.'
          : (e?.message ?? 'Bad request'));
    return {
      status,
      headers: {},
      body: { error: { message, type: 'invalid_request_error', param: null, code: wrongKind ? null : (e?.type ?? null) } },
    };
  }
  return {
    status: 500,
    headers: {},
    body: {
      error: {
        message: GENERIC_MESSAGE,
        type: 'server_error',
        param: null,
        code: null,
      },
    },
  };
}
