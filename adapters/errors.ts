/**
 * The adapter subsystem's errors: one class, `AdapterError`, with a stable `code`.
 *
 * This layer knows nothing of HTTP: plugin/errors.ts maps each code to a status and an OpenAI
 * error `type` in its one table (`ERROR_TABLE`). A new code needs a row there; the
 * test test/plugin/error-table.test.ts fails until it has one.
 */

/**
 * Every code an `AdapterError` may carry, with what it means. The wire `code` of the OpenAI
 * error body is the same string.
 */
export const ADAPTER_ERROR_CODES = [
  /** The adapter's files are invalid: bad config field, bad tensor, wrong shape, unsupported feature, unreadable file. */
  'invalid_adapter',
  /** A merge spec is invalid (density, weights, unequal ranks, ...); `param` names the field. */
  'invalid_merge',
  /** A runtime load names an adapter that is already registered (vLLM answers this with 400). */
  'adapter_exists',
  /** Registering a name already taken by another folder or source. */
  'adapter_name_conflict',
  /** A runtime load path that is not absolute, escapes the adapter roots, or cannot be read. */
  'invalid_lora_path',
  /** The adapter's source (URL, hub id) does not exist. */
  'adapter_not_found',
  /** The adapter name is not registered with this base model (or was unloaded): an unknown `model`. */
  'model_not_found',
  /** A download of the adapter failed (unreachable, HTTP error, truncated). */
  'adapter_download_failed',
  /** A download of the adapter timed out (adapterSources.downloadTimeoutMs). */
  'adapter_download_timeout',
  /** A download exceeded adapterSources.maxDownloadBytes. */
  'adapter_too_large',
  /** The downloaded weights do not match the configured sha256. */
  'adapter_checksum_mismatch',
  /** Every adapter slot stayed pinned by running requests for `slotWaitMs`: retry later. */
  'no_free_slot',
  /** A composition needs more distinct adapters at once than the engine has slots: it can never run. */
  'too_many_adapters',
  /** An operator pin that would leave no adapter slot free of operator pins (every other adapter locked out). */
  'too_many_pins',
  /** Too many distinct merges are being computed or waiting (MergeCache limits): retry later. */
  'merges_busy',
  /** A merge ran past adapterCache.mergeTimeoutMs and was stopped (param `merge`). */
  'merge_timeout',
  /** Every request waiting for a merge left, so its computation was stopped (seen only by a request that left). */
  'merge_cancelled',
] as const;

/** One of ADAPTER_ERROR_CODES. */
export type AdapterErrorCode = (typeof ADAPTER_ERROR_CODES)[number];

/** Options of `AdapterError`. */
export interface AdapterErrorOptions {
  /** The request field at fault (default `model`: the adapter is named by the model string). */
  param?: string | null;
  /** The error that caused this one (e.g. the engine's NativeError). */
  cause?: unknown;
  /** For `no_free_slot`: seconds after which a retry may succeed (default 1). */
  retryAfterSeconds?: number;
}

/** An adapter could not be registered, read, downloaded, merged or given a slot. */
export class AdapterError extends Error {
  /** The request field at fault, or null. */
  readonly param: string | null;
  /** Seconds after which a retry may succeed (meaningful for `no_free_slot` and `merges_busy`). */
  readonly retryAfterSeconds: number;

  /**
   * @param message Names the file, tensor, URL or field at fault.
   * @param code What went wrong (ADAPTER_ERROR_CODES; default `invalid_adapter`).
   */
  constructor(
    message: string,
    readonly code: AdapterErrorCode = 'invalid_adapter',
    options: AdapterErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.param = options.param === undefined ? 'model' : options.param;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }
}

/**
 * `model_not_found` for an adapter name this base does not know (or no longer knows), worded
 * as OpenAI words an unknown model.
 * @param model The full model string, `BASE:ADAPTER`.
 * @param detail Appended after the standard sentence (e.g. "It was unloaded.").
 */
export function unknownAdapter(model: string, detail = ''): AdapterError {
  return new AdapterError(
    `The model \`${model}\` does not exist or you do not have access to it.${detail ? ' ' + detail : ''}`,
    'model_not_found',
  );
}

/**
 * `adapter_exists` (400, vLLM's words) for a runtime load of a name already registered, whether
 * it was loaded before or by a concurrent load that got there first.
 */
export function adapterExists(name: string): AdapterError {
  return new AdapterError(`The lora adapter '${name}' has already been loaded.`, 'adapter_exists', { param: 'lora_name' });
}
