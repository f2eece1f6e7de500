import type { FastifyReply, FastifyRequest } from 'fastify';
import { MAX_QUERY_LENGTH } from './limits.js';
import { isUpgrade } from '../upgrade.js';

/**
 * The shape of a GraphQL request over HTTP, checked before mercurius sees it: POST
 * `{"query": "...", "variables": {...}, "operationName": "..."}` or GET `?query=...&variables=...`.
 * mercurius only attaches its own schema's complaints, and hands a `query` that is not a string
 * (a number, an object) on to graphql-js, which fails inside validation: a 500 until this check.
 */
export function graphqlRequestProblem(req: FastifyRequest): string | undefined {
  const body: unknown = req.method === 'POST' ? req.body : req.query;
  if (req.method === 'POST' && Array.isArray(body))
    return 'batched queries are not supported: send one {"query": "..."} per request';
  if (typeof body !== 'object' || body === null)
    return 'the request must be a JSON object {"query": "...", "variables": {...}}';
  const b = body as Record<string, unknown>;
  const { query, variables, operationName, extensions } = b;
  if (query === undefined) return undefined; // mercurius says "no query", with a 400
  if (typeof query !== 'string') return `"query" must be a string, not ${kind(query)}`;
  if (query.length > MAX_QUERY_LENGTH)
    return `query is ${query.length} characters long; the limit is ${MAX_QUERY_LENGTH}`;
  if (operationName !== undefined && operationName !== null && typeof operationName !== 'string')
    return `"operationName" must be a string, not ${kind(operationName)}`;
  if (req.method === 'POST') {
    if (variables !== undefined && variables !== null && !isPlainObject(variables))
      return `"variables" must be an object, not ${kind(variables)}`;
    if (extensions !== undefined && extensions !== null && !isPlainObject(extensions))
      return `"extensions" must be an object, not ${kind(extensions)}`;
  } else {
    for (const [name, v] of [
      ['variables', variables],
      ['extensions', extensions],
    ] as const) {
      if (v === undefined) continue;
      if (typeof v !== 'string') return `"${name}" must be given once, as a JSON object`;
      let parsed: unknown;
      try {
        parsed = JSON.parse(v);
      } catch {
        return `"${name}" is not JSON: pass a JSON object, URL-encoded`;
      }
      if (parsed !== null && !isPlainObject(parsed))
        return `"${name}" must be a JSON object, not ${kind(parsed)}`;
    }
    for (const key of ['query', 'operationName'])
      if (Array.isArray(b[key])) return `"${key}" must be given once`;
  }
  return undefined;
}

function isPlainObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** A preValidation hook for mercurius's routes: a malformed request is a 400 saying why. */
export async function checkGraphqlRequest(
  req: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply | undefined> {
  if (isUpgrade(req)) return undefined;
  const problem = graphqlRequestProblem(req);
  if (problem === undefined) return undefined;
  return reply.status(400).send({
    data: null,
    errors: [{ message: problem, extensions: { code: 'BAD_REQUEST' } }],
  });
}
