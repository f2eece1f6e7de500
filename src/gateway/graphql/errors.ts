import {
  GraphQLError,
  type ExecutionResult,
  type FormattedExecutionResult,
  type GraphQLFormattedError,
} from 'graphql';
import type { MercuriusContext } from 'mercurius';
import { isNexusError } from '../../core/errors.js';
import { RETRY_AFTER_S, statusOf } from '../errors.js';

interface Classified {
  readonly error: GraphQLError;
  readonly status: number;
  readonly code: string;
}

const record = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

const clientStatus = (v: unknown): number | undefined =>
  record(v) && typeof v.statusCode === 'number' && v.statusCode >= 400 && v.statusCode < 500
    ? v.statusCode
    : undefined;

function asGraphQLError(e: unknown): GraphQLError {
  if (e instanceof GraphQLError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new GraphQLError(message, e instanceof Error ? { originalError: e } : {});
}

function classify(e: GraphQLError): Classified[] {
  const orig = e.originalError;
  // mercurius wraps the problems found before execution (syntax, validation, variables, depth,
  // a subscription over GET) in one error holding them all.
  if (record(orig) && orig.code === 'MER_ERR_GQL_PERSISTED_QUERY_NOT_FOUND') {
    const message = 'no query: send {"query": "..."} with POST, or ?query=... with GET';
    return [{ error: new GraphQLError(message), status: 400, code: 'BAD_REQUEST' }];
  }
  if (record(orig) && Array.isArray(orig.errors)) {
    const status = clientStatus(orig) ?? 400;
    const code = status === 405 ? 'METHOD_NOT_ALLOWED' : 'BAD_REQUEST';
    return orig.errors.map((x: unknown) => ({ error: asGraphQLError(x), status, code }));
  }
  if (orig === undefined) {
    // graphql's own: without a path it is about the document (400); with one, an execution bug.
    return [
      {
        error: e,
        status: e.path === undefined ? 400 : 500,
        code: e.path === undefined ? 'BAD_REQUEST' : 'INTERNAL',
      },
    ];
  }
  if (isNexusError(orig)) return [{ error: e, status: statusOf(orig.code), code: orig.code }];
  const status = clientStatus(orig);
  if (status !== undefined) {
    const code = record(orig) && typeof orig.code === 'string' ? orig.code : 'BAD_REQUEST';
    return [{ error: e, status, code }];
  }
  return [{ error: e, status: 500, code: 'INTERNAL' }];
}

/** 400 before anything else (the request must change), then other 4xx, then 503, then 500. */
function overall(statuses: readonly number[]): number {
  if (statuses.includes(400)) return 400;
  const client = statuses.filter((s) => s >= 400 && s < 500);
  if (client.length > 0) return Math.min(...client);
  return statuses.includes(503) ? 503 : 500;
}

/**
 * mercurius errorFormatter: every error gets `extensions.code`, the answer a status that says who
 * must act. A bad argument or document is a 400, an unknown cluster or host a 404, a store down
 * a 503; a 500 is a bug (logged, its message hidden). A query without errors stays 200.
 */
export function formatErrors(
  execution: ExecutionResult & Required<Pick<ExecutionResult, 'errors'>>,
  context: MercuriusContext,
): { statusCode: number; response: FormattedExecutionResult } {
  const classified = execution.errors.flatMap(classify);
  const errors = classified.map(({ error, status, code }): GraphQLFormattedError => {
    const json = error.toJSON();
    if (status >= 500 && status !== 503) {
      context.app.log.error(
        { err: error.originalError ?? error, path: error.path },
        'GraphQL internal error',
      );
      return { ...json, message: 'internal error', extensions: { code } };
    }
    return {
      ...json,
      message: error.message.replace(/^`(.*)`$/, '$1'),
      extensions: { ...json.extensions, code },
    };
  });
  const statusCode = classified.length === 0 ? 200 : overall(classified.map((c) => c.status));
  if (statusCode === 429 || statusCode === 503)
    context.reply.header('retry-after', String(RETRY_AFTER_S));
  return { statusCode, response: { data: execution.data ?? null, errors } };
}
