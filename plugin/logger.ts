/**
 * The logger surface the protocol layer writes to (pino-compatible: `log.warn({fields}, 'msg')`).
 */

/** Minimal logger surface (pino-compatible). */
export interface LoggerLike {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

/** A logger that drops everything. */
export const silentLogger: LoggerLike = { debug() {}, info() {}, warn() {}, error() {} };
