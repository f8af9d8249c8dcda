/**
 * Typed errors and their one mapping to OpenAI error bodies.
 *
 * Every layer (config, adapters, native wrapper, routes) throws these classes; only the
 * Express error middleware calls `toOpenAIError`, so there is exactly one error shape on the
 * wire: `{error: {message, type, param, code}}` (openai-node `APIError.generate` in reverse).
 */

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
  constructor(model: string, detail = '') {
    super(
      404,
      `The model \`${model}\` does not exist or you do not have access to it.${detail ? ' ' + detail : ''}`,
      'invalid_request_error',
      'model',
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

/** 4xx: an adapter's files are invalid (bad config field, bad tensor, wrong shape, unsupported feature). */
export class AdapterError extends OpenLoraError {
  constructor(message: string, status = 400, code = 'invalid_adapter') {
    super(status, message, 'invalid_request_error', 'model', code);
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

/** The JSON body and status that answer an error. */
export interface OpenAIErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: { error: { message: string; type: string; param: string | null; code: string | null } };
}

/**
 * Map any thrown value to an OpenAI error response. Unknown errors become 500
 * `server_error` with a generic message (the detail goes to the log, not the client).
 */
export function toOpenAIError(err: unknown): OpenAIErrorResponse {
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
    const message =
      e?.type === 'entity.parse.failed'
        ? `We could not parse the JSON body of your request. (${e.message ?? 'invalid JSON'})`
        : e?.type === 'entity.too.large'
          ? 'Request body too large.'
          : (e?.message ?? 'Bad request');
    return {
      status,
      headers: {},
      body: { error: { message, type: 'invalid_request_error', param: null, code: e?.type ?? null } },
    };
  }
  return {
    status: 500,
    headers: {},
    body: {
      error: {
        message: 'The server had an error while processing your request.',
        type: 'server_error',
        param: null,
        code: null,
      },
    },
  };
}
