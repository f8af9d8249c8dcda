/**
 * The engine's errors as TypeScript sees them: `NativeError`, with the stable `code` the addon
 * puts on every Error it throws or rejects with (`err.code`), and the field it names.
 *
 * This layer knows nothing of HTTP: plugin/errors.ts maps each code to a status and an OpenAI
 * error `type` in its one table. `wrapNativeError` is applied by native/engine.ts to everything
 * the addon throws, so callers above only ever see `NativeError`.
 */

/**
 * Every code the addon may set on `err.code` (native/src/errors.h `ErrorCode`, whose names are
 * the addon's contract: never renamed, only added to), with what it means.
 */
export const NATIVE_ERROR_CODES = [
  /** A caller-supplied value is out of range or malformed; the message (and `err.field`) names the field. */
  'invalid_argument',
  /** A file, tensor or adapter slot the caller named does not exist. */
  'not_found',
  /** Every adapter slot (maxLoras) is loaded or loading: a load must wait for an unload. */
  'no_free_slot',
  /** The target is in use (an adapter slot pinned by live sequences). */
  'busy',
  /** A host or device allocation failed. */
  'out_of_memory',
  /** The compute device failed or is not available. */
  'device_error',
  /** A valid checkpoint this engine cannot run (architecture, activation, ...). */
  'unsupported_model',
  /** A model or adapter file is corrupt, truncated or inconsistent. */
  'bad_file',
  /** The engine is disposed (or disposing): no new work is taken. */
  'disposed',
  /** A bug: an invariant of the engine itself broke (the message carries the detail). */
  'internal',
] as const;

/** One of NATIVE_ERROR_CODES. */
export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

const KNOWN = new Set<string>(NATIVE_ERROR_CODES);

/** An error from the native engine, with its stable code. */
export class NativeError extends Error {
  /**
   * @param message The engine's message (names the file, tensor or field at fault).
   * @param code What went wrong (NATIVE_ERROR_CODES).
   * @param param The field at fault as the addon names it (`err.field`, e.g. `SequenceParams.promptIds[3]`,
   *   `EngineOptions.maxLoras`), or null.
   */
  constructor(
    message: string,
    readonly code: NativeErrorCode,
    readonly param: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Turn whatever the addon threw into a `NativeError` (an existing NativeError is returned as is).
 * The addon codes every error a caller can cause (native/src/errors.h), so a value without a
 * known code (an engine bug, a test double's plain Error) becomes `internal`.
 * @param err The thrown value: an Error with `code` and, when one field is at fault, `field`.
 */
export function wrapNativeError(err: unknown): NativeError {
  if (err instanceof NativeError) return err;
  const e = err as { message?: unknown; code?: unknown; field?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const param = typeof e?.field === 'string' ? e.field : null;
  const code = typeof e?.code === 'string' && KNOWN.has(e.code) ? (e.code as NativeErrorCode) : 'internal';
  return new NativeError(message, code, param, { cause: err });
}
