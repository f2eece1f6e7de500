import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import { SEARCH_KINDS, type SearchKind, type TelemetryReader } from '../../store/reader.js';
import { list } from '../params.js';
import { ErrorRef } from '../schemas/common.js';
import { SearchQuery, SearchResult } from '../schemas/fleet.js';

/** Hits of a search unless `limit` says. */
export const DEFAULT_SEARCH_LIMIT = 20;

/** `kind`: a comma list of host, gpu, namespace, pod. */
export function searchKinds(value: string | undefined): SearchKind[] | undefined {
  const kinds = list(value);
  if (kinds === undefined) return undefined;
  for (const k of kinds)
    if (!(SEARCH_KINDS as readonly string[]).includes(k))
      throw new NexusError(
        'BAD_REQUEST',
        `kind: "${k.slice(0, 32)}" is not one of ${SEARCH_KINDS.join(', ')}`,
      );
  return [...new Set(kinds as SearchKind[])];
}

/** GET /api/v1/search: hosts, GPUs, namespaces and pods by name, from the gateway's memory. */
export const searchRoutes: FastifyPluginAsyncTypebox<{ reader: TelemetryReader }> = async (
  app,
  { reader },
) => {
  app.get(
    '/api/v1/search',
    {
      schema: {
        tags: ['fleet'],
        summary: 'Find hosts, GPUs, namespaces and pods by (a part of) their name',
        querystring: SearchQuery,
        response: { 200: SearchResult, 400: ErrorRef, 404: ErrorRef, 503: ErrorRef },
      },
    },
    async (req) => {
      const { q, cluster_id, kind, limit } = req.query;
      const kinds = searchKinds(kind);
      const res = await reader.search({
        q,
        limit: limit ?? DEFAULT_SEARCH_LIMIT,
        ...(cluster_id === undefined ? {} : { cluster: cluster_id }),
        ...(kinds === undefined ? {} : { kinds }),
      });
      return { q, count: res.hits.length, truncated: res.truncated, hits: [...res.hits] };
    },
  );
};
