import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { NexusError } from '../../core/errors.js';
import {
  END_OF_TIME,
  type LatestValue,
  type Selection,
  type TelemetryReader,
} from '../../store/reader.js';
import {
  decodeCursor,
  encodeCursor,
  filterList,
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
import { readingOut, seriesOut } from '../presenters.js';

/**
 * Each latest value's JSON, encoded once: the reader's in-memory latest values are shared objects,
 * equal until the reading changes, so a value is encoded once however often it is served.
 */
const encoded = new WeakMap<LatestValue, string>();

/**
 * The /latest answer as JSON, exactly as the response schema would encode it, from the encoded
 * values; undefined if a value is not a finite number (the schema's serializer decides then).
 */
function latestJson(values: readonly LatestValue[]): string | undefined {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as LatestValue;
    let json = encoded.get(v);
    if (json === undefined) {
      if (!Number.isFinite(v.value)) return undefined;
      json = JSON.stringify(readingOut(v));
      encoded.set(v, json);
    }
    parts[i] = json;
  }
  return `{"readings":[${parts.join(',')}],"count":${values.length}}`;
}

/**
 * The latest answers of the last few selections, encoded: the same values again (the same
 * objects, in the same order) give the same bytes without encoding anything.
 */
class LatestBodies {
  private readonly bodies = new Map<string, { values: readonly LatestValue[]; body: Buffer }>();

  constructor(
    private readonly maxEntries = 32,
    private readonly minValues = 64,
  ) {}

  body(key: string, values: readonly LatestValue[]): Buffer | string | undefined {
    if (values.length < this.minValues) return latestJson(values);
    const hit = this.bodies.get(key);
    if (hit !== undefined && sameValues(hit.values, values)) return hit.body;
    const json = latestJson(values);
    if (json === undefined) return undefined;
    const body = Buffer.from(json);
    this.bodies.delete(key);
    if (this.bodies.size >= this.maxEntries) {
      const oldest = this.bodies.keys().next();
      if (oldest.done !== true) this.bodies.delete(oldest.value);
    }
    this.bodies.set(key, { values, body });
    return body;
  }
}

function sameValues(a: readonly LatestValue[], b: readonly LatestValue[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Sends JSON already encoded (the response schema's serializer is for objects). */
function sendJson(reply: FastifyReply, json: Buffer | string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(json);
}

/** The selection of /api/v1/telemetry and /latest from their query parameters. */
export function selection(q: {
  cluster_id?: string;
  host_id?: string;
  gpu_id?: string;
  uuid?: string;
  metric?: string;
  metrics?: string;
}): Selection {
  const hosts = filterList('host_id', q.host_id, 253);
  const ids = gpuIds(filterList('gpu_id', q.gpu_id, 128));
  const uuids = [...(ids.uuids ?? []), ...(filterList('uuid', q.uuid, 128) ?? [])];
  const metrics = filterList('metric', q.metric ?? q.metrics, 128);
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
  const latestBodies = new LatestBodies();
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
    async (req, reply) => {
      const sel = selection(req.query);
      const values = await reader.latest(sel);
      const json = latestBodies.body(JSON.stringify(sel), values);
      if (json !== undefined) return sendJson(reply, json);
      const readings = values.map(readingOut);
      return { readings, count: readings.length };
    },
  );
};
