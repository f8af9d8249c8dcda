/**
 * Per-request id and access log: `x-request-id` from the client (when it is a short printable
 * token) or a new UUID, returned in the response header, put on every log line of the request,
 * and one line when the response ends (method, path, status, ms, model, key name; never
 * headers or bodies, so never a key). Also counts `openlora_requests_total{model,status}`.
 */
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { accessOf } from './auth.ts';
import type { LoggerLike } from './logger.ts';
import { requestsTotal } from './metrics.ts';

const ID_RE = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Label for `openlora_requests_total`: set by routes (`res.locals.openloraModel`), else `none`. */
export function setMetricModel(res: Response, model: string): void {
  res.locals.openloraModel = model;
}

/** The request's id (set by `requestContext`). */
export function requestId(res: Response): string | undefined {
  return res.locals.requestId as string | undefined;
}

/** The request's logger: the router's, with `reqId` bound when the logger has `child`. */
export function requestLog(res: Response, fallback: LoggerLike): LoggerLike {
  return (res.locals.log as LoggerLike | undefined) ?? fallback;
}

/** Middleware factory: request id, bound logger, access log line and request counter. */
export function requestContext(logger: LoggerLike) {
  return function openLoraRequestContext(req: Request, res: Response, next: NextFunction): void {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && ID_RE.test(given) ? given : randomUUID();
    res.locals.requestId = id;
    res.setHeader('x-request-id', id);
    const child = (logger as { child?: (b: object) => LoggerLike }).child;
    const log = typeof child === 'function' ? child.call(logger, { reqId: id }) : logger;
    res.locals.log = log;
    const t0 = performance.now();
    // NOTE: the upstream proxy rewrites req.url (dropping `/v1`), so keep the path as received.
    const path = req.path;
    let logged = false;
    const done = () => {
      if (logged) return;
      logged = true;
      const model = (res.locals.openloraModel as string | undefined) ?? 'none';
      const status = res.writableFinished ? res.statusCode : 499; // 499: client closed first (nginx's code)
      if (path.startsWith('/v1/')) requestsTotal.inc({ model, status: String(status) });
      const key = accessOf(req).key?.name;
      log.info(
        { ...(log === logger ? { reqId: id } : {}), method: req.method, path, status, ms: Math.round(performance.now() - t0), model, ...(key ? { key } : {}) },
        'request',
      );
    };
    res.once('finish', done);
    res.once('close', done);
    next();
  };
}
