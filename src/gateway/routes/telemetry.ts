import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { NexusError } from '../../core/errors.js';
import type { NexusMetrics } from '../../core/metrics.js';
import { END_OF_TIME, type Selection, type TelemetryReader } from '../../store/reader.js';
import {
  decodeCursor,
  encodeCursor,
  filterList,
  gpuInstances,
  gpuIds,
  iso,
  parseInstant,
  parseStep,
} from '../params.js';
import { ErrorRef, ref } from '../schemas/common.js';
import {
  LatestQuery,
  LatestResult,
  TelemetryQuery,
  TelemetryResult,
} from '../schemas/telemetry.js';
import { readingOut } from '../presenters.js';
import { columnPageJson, readingPageJson, seriesResultJson } from '../telemetry-json.js';
import { acceptedEncoding } from '../compression.js';
import { LatestBodies, type LatestBody } from './latest-bodies.js';

/** Sends an answer already written as JSON text (the response schema's serializer is for objects). */
function sendJson(reply: FastifyReply, text: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(text);
}

/** Sends an answer already encoded (the response schema's serializer is for objects). */
function sendEncoded(reply: FastifyReply, { body, encoding }: LatestBody): FastifyReply {
  void reply.type('application/json; charset=utf-8');
  // Already compressed: the compression plugin lets it through as it is.
  if (encoding !== 'identity')
    void reply.header('content-encoding', encoding).header('vary', 'accept-encoding');
  return reply.send(body);
}

/** The selection of /api/v1/telemetry and /latest from their query parameters. */
export function selection(q: {
  cluster_id?: string;
  host_id?: string;
  gpu_id?: string;
  uuid?: string;
  metric?: string;
  metrics?: string;
  gpu_instance?: string;
}): Selection {
  const instances = gpuInstances(filterList('gpu_instance', q.gpu_instance, 64));
  const hosts = filterList('host_id', q.host_id, 253);
  const ids = gpuIds(filterList('gpu_id', q.gpu_id, 128));
  const uuids = [...(ids.uuids ?? []), ...(filterList('uuid', q.uuid, 128) ?? [])];
  // Both spellings may be given: their names add up.
  const names = [q.metric, q.metrics].filter((v) => v !== undefined);
  const metrics = filterList('metric', names.length === 0 ? undefined : names.join(','), 128);
  return {
    ...(q.cluster_id === undefined ? {} : { cluster: q.cluster_id }),
    ...(hosts === undefined ? {} : { hosts }),
    ...(ids.indexes === undefined ? {} : { gpus: ids.indexes }),
    ...(uuids.length === 0 ? {} : { uuids }),
    ...(instances === undefined ? {} : { instances }),
    ...(metrics === undefined ? {} : { metrics }),
  };
}

export const telemetryRoutes: FastifyPluginAsyncTypebox<{
  reader: TelemetryReader;
  maxPoints: number;
  metrics?: NexusMetrics;
}> = async (app, { reader, maxPoints, metrics }) => {
  const latestBodies = new LatestBodies(undefined, (result, encoding) =>
    metrics?.encodedCache.inc({ result, encoding }),
  );
  app.get(
    '/api/v1/telemetry',
    {
      schema: {
        tags: ['telemetry'],
        summary: 'Query telemetry: readings page by page, or downsampled series with step and agg',
        description:
          'Without step: readings ordered by GPU, metric and time, `limit` per page, `next_cursor` to continue. With step: one series per GPU and metric, each point the aggregate (agg) of a step; served from the 1-minute rollup when the step is a whole number of minutes.',
        querystring: TelemetryQuery,
        response: {
          200: ref(TelemetryResult),
          400: ErrorRef,
          404: ErrorRef,
          503: ErrorRef,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const now = Date.now();
      const from = q.from === undefined ? -END_OF_TIME : parseInstant('from', q.from, now);
      const to = q.to === undefined ? END_OF_TIME : parseInstant('to', q.to, now);
      if (from >= to) throw new NexusError('BAD_REQUEST', 'from must be before to');
      const sel = selection(q);
      if (q.step !== undefined || q.agg !== undefined) {
        if (q.step === undefined) throw new NexusError('BAD_REQUEST', 'agg needs a step');
        if (q.cursor !== undefined)
          throw new NexusError('BAD_REQUEST', 'cursor does not apply with step');
        if (q.from === undefined)
          throw new NexusError('BAD_REQUEST', 'step needs from (and to, default now)');
        const stepMs = parseStep(q.step);
        const end = q.to === undefined ? now : to;
        const res = await reader.series({
          ...sel,
          from,
          to: end,
          stepMs,
          agg: q.agg ?? 'avg',
          maxPoints,
        });
        const head = {
          step: q.step,
          agg: q.agg ?? 'avg',
          from: iso(from) ?? '',
          to: iso(end) ?? '',
          source: res.source,
        };
        return sendJson(reply, seriesResultJson(res.series, head, q.format === 'columns'));
      }
      const pageQuery = {
        ...sel,
        from,
        to,
        limit: q.limit ?? 1000,
        ...(q.cursor === undefined ? {} : { after: decodeCursor(q.cursor) }),
      };
      const cols = await reader.telemetryColumns(pageQuery);
      const next_cursor = cols.next === undefined ? null : encodeCursor(cols.next);
      return sendJson(
        reply,
        (q.format === 'columns' ? columnPageJson : readingPageJson)(
          cols.series,
          cols.count,
          next_cursor,
        ),
      );
    },
  );

  app.get(
    '/api/v1/telemetry/latest',
    {
      schema: {
        tags: ['telemetry'],
        summary: 'The latest reading of each GPU and metric (same filters)',
        querystring: LatestQuery,
        response: { 200: LatestResult, 400: ErrorRef, 404: ErrorRef, 503: ErrorRef },
      },
    },
    async (req, reply) => {
      const sel = selection(req.query);
      const values = await reader.latest(sel);
      const body = await latestBodies.body(JSON.stringify(sel), values, acceptedEncoding(req));
      if (body !== undefined) return sendEncoded(reply, body);
      const readings = values.map(readingOut);
      return { readings, count: readings.length };
    },
  );
};
