import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import type { Selection, TelemetryReader } from '../../store/reader.js';
import { END_OF_TIME } from '../../store/sql-reader.js';
import { decodeCursor, encodeCursor, gpuIds, iso, list, parseInstant } from '../params.js';
import {
  ErrorRef,
  LatestQuery,
  LatestResult,
  TelemetryResult,
  TelemetryQuery,
  ref,
} from '../schemas.js';
import { parseStep, readingOut, seriesOut } from './shapes.js';

/** The selection of /api/v1/telemetry and /latest from their query parameters. */
export function selection(q: {
  cluster_id?: string;
  host_id?: string;
  gpu_id?: string;
  uuid?: string;
  metric?: string;
  metrics?: string;
}): Selection {
  const hosts = list(q.host_id);
  const ids = gpuIds(list(q.gpu_id));
  const uuids = [...(ids.uuids ?? []), ...(list(q.uuid) ?? [])];
  const metrics = list(q.metric ?? q.metrics);
  return {
    ...(q.cluster_id === undefined ? {} : { cluster: q.cluster_id }),
    ...(hosts === undefined ? {} : { hosts }),
    ...(ids.indexes === undefined ? {} : { gpus: ids.indexes }),
    ...(uuids.length === 0 ? {} : { uuids }),
    ...(metrics === undefined ? {} : { metrics }),
  };
}

export const telemetryRoutes: FastifyPluginAsyncTypebox<{
  reader: TelemetryReader;
  maxPoints: number;
}> = async (app, { reader, maxPoints }) => {
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
    async (req) => {
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
        return {
          series: res.series.map(seriesOut),
          step: q.step,
          agg: q.agg ?? 'avg',
          from: iso(from) ?? '',
          to: iso(end) ?? '',
          source: res.source,
        };
      }
      const page = await reader.telemetry({
        ...sel,
        from,
        to,
        limit: q.limit ?? 1000,
        ...(q.cursor === undefined ? {} : { after: decodeCursor(q.cursor) }),
      });
      return {
        readings: page.readings.map(readingOut),
        count: page.readings.length,
        next_cursor: page.next === undefined ? null : encodeCursor(page.next),
      };
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
    async (req) => {
      const readings = (await reader.latest(selection(req.query))).map(readingOut);
      return { readings, count: readings.length };
    },
  );
};
