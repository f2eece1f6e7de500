import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { isNexusError, policyOf, type ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** The HTTP status of an error code, for REST and GraphQL alike (src/core/errors.ts, ERROR_POLICY). */
export function statusOf(code: ErrorCode): number {
  return policyOf(code).status;
}

/**
 * Fastify's own refusals of a request's body, in the API's words (its codes, FST_ERR_..., are
 * Fastify's internals: every refusal carries one of ours, BAD_REQUEST, with its HTTP status).
 */
function requestProblem(err: FastifyError, req: FastifyRequest): string {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `body is too large: at most ${req.routeOptions.bodyLimit} bytes (MAX_BODY)`;
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'body is not valid JSON (or holds a __proto__ or constructor.prototype key)';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'body is empty: send a JSON document';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `content type "${req.headers['content-type'] ?? ''}" is not accepted here`;
    default:
      return err.message;
  }
}

/** Seconds a client refused for load (429, 503) should wait before trying again. */
export const RETRY_AFTER_S = 1;

/**
 * Every error leaves as JSON `{ error, code, statusCode }`: a bad parameter is a 400 that says
 * which and why, an unknown id a 404, a dependency down a 503. A 500 means a bug, and is logged.
 */
export function installErrorHandling(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation !== undefined) {
      const where = err.validationContext ?? 'request';
      const first = err.validation[0];
      const path = first?.instancePath.replace(/^\//, '').replace(/\//g, '.') ?? '';
      const param =
        path !== ''
          ? path
          : ((
              first?.params as { missingProperty?: string; additionalProperty?: string } | undefined
            )?.missingProperty ??
            (first?.params as { additionalProperty?: string } | undefined)?.additionalProperty ??
            '');
      // A choice among values (a union of literals, an enum): say which values.
      const allowed = err.validation.flatMap((e) =>
        e.instancePath !== first?.instancePath
          ? []
          : e.keyword === 'const'
            ? [(e.params as { allowedValue?: unknown }).allowedValue]
            : e.keyword === 'enum'
              ? ((e.params as { allowedValues?: unknown[] }).allowedValues ?? [])
              : [],
      );
      const named = `${where}${param === '' ? '' : ` parameter "${param}"`}`;
      const message =
        first?.keyword === 'additionalProperties'
          ? `unknown ${where} parameter "${param}"`
          : allowed.length > 0
            ? `${named} must be one of ${allowed.map(String).join(', ')}`
            : `${named} ${first?.message ?? 'is invalid'}`;
      return reply.status(400).send({ error: message, code: 'BAD_REQUEST', statusCode: 400 });
    }
    if (isNexusError(err)) {
      const status = statusOf(err.code);
      if (status === 500) {
        // An error of ours without a client status is a bug (e.g. the store refusing a query
        // that validation should have refused first): logged with its stack, hidden from the client.
        logger.error({ err, url: req.url, reqId: req.id }, 'internal error');
      } else if (status >= 500) {
        req.log.warn(
          { err: err.message, code: err.code },
          'request failed: dependency unavailable',
        );
      }
      if (status === 429 || status === 503) reply.header('retry-after', String(RETRY_AFTER_S));
      return reply.status(status).send({
        error: status === 500 ? 'internal error' : err.message,
        code: err.code,
        statusCode: status,
      });
    }
    const status =
      typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500
        ? err.statusCode
        : 500;
    if (status === 500) {
      logger.error({ err, url: req.url, reqId: req.id }, 'internal error');
      return reply.status(500).send({ error: 'internal error', code: 'INTERNAL', statusCode: 500 });
    }
    return reply
      .status(status)
      .send({ error: requestProblem(err, req), code: 'BAD_REQUEST', statusCode: status });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send({
      error: `no route ${req.method} ${req.url.split('?')[0] ?? ''}`,
      code: 'NOT_FOUND',
      statusCode: 404,
    }),
  );
}
