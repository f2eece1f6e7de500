import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { NexusError } from '../../core/errors.js';
import {
  EVENT_TYPES,
  type EventCursor,
  type EventType,
  type GpuEvent,
} from '../../store/event-reads.js';
import type { TelemetryReader } from '../../store/reader.js';
import {
  FIRST_INSTANT,
  LAST_INSTANT,
  clip,
  filterList,
  gpuIndex,
  iso,
  parseInstant,
} from '../params.js';
import { ErrorRef } from '../schemas/common.js';
import { ClusterParams } from '../schemas/fleet.js';
import { DEFAULT_EVENT_LIMIT, EventsQuery, EventsResult } from '../schemas/events.js';

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);
const DAY = 86_400_000;
const NOT_A_CURSOR = 'cursor: not a cursor this API returned (pass next_cursor as it came)';

export function encodeEventCursor(c: EventCursor): string {
  return Buffer.from(JSON.stringify(['e1', c.time, c.id])).toString('base64url');
}

export function decodeEventCursor(text: string): EventCursor {
  if (text.length > 200) throw bad(NOT_A_CURSOR);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad(NOT_A_CURSOR);
  }
  if (!Array.isArray(parsed) || parsed.length !== 3 || parsed[0] !== 'e1') throw bad(NOT_A_CURSOR);
  const [, time, id] = parsed as unknown[];
  if (
    typeof time !== 'number' ||
    !Number.isSafeInteger(time) ||
    time < FIRST_INSTANT ||
    time > LAST_INSTANT ||
    typeof id !== 'string' ||
    !/^\d{1,19}$/.test(id)
  ) {
    throw bad(NOT_A_CURSOR);
  }
  return { time, id };
}

/** Event types from a comma list, checked. */
export function eventTypes(text: string | readonly string[] | undefined): EventType[] | undefined {
  const values = filterList('type', text, 32);
  if (values === undefined) return undefined;
  const known = new Set<string>(EVENT_TYPES);
  for (const v of values) {
    if (!known.has(v))
      throw bad(`type: "${clip(v)}" is not an event type (${EVENT_TYPES.join(', ')})`);
  }
  return [...new Set(values)] as EventType[];
}

/** An event as the API shows it (REST, GraphQL, WebSocket). */
export function eventOut(e: GpuEvent): {
  id: string;
  type: EventType;
  time: string;
  ended_at: string | null;
  severity: GpuEvent['severity'];
  host_id: string;
  gpu_id: number;
  uuid: string | null;
  code: number | null;
  message: string;
  details: Record<string, unknown>;
} {
  return {
    id: e.id,
    type: e.type,
    time: iso(e.time) ?? '',
    ended_at: e.ended_at === null ? null : iso(e.ended_at),
    severity: e.severity,
    host_id: e.host_id,
    gpu_id: e.gpu_id,
    uuid: e.uuid,
    code: e.code,
    message: e.message,
    details: e.details,
  };
}

/** The range of an events query: `to` defaults to now, `from` to 24 hours before `to`. */
export function eventRange(
  from: string | undefined,
  to: string | undefined,
  now = Date.now(),
): { from: number; to: number } {
  const end = to === undefined ? now : parseInstant('to', to, now);
  const start =
    from === undefined ? Math.max(FIRST_INSTANT, end - DAY) : parseInstant('from', from, now);
  if (start > end) throw bad('from: must not be after to');
  return { from: start, to: end };
}

/** GET /api/v1/clusters/{cluster_id}/events (docs/fleet.md, "Events"). */
export const eventRoutes: FastifyPluginAsyncTypebox<{ reader: TelemetryReader }> = async (
  app,
  { reader },
) => {
  app.get(
    '/api/v1/clusters/:cluster_id/events',
    {
      schema: {
        tags: ['fleet'],
        summary: 'GPU events of a cluster: XID errors, throttling, health, stopped, reappeared',
        description:
          'Newest first, `limit` per page, `next_cursor` to continue. `counts`: the events of each type matching every filter but `type` in the range.',
        params: ClusterParams,
        querystring: EventsQuery,
        response: { 200: EventsResult, 400: ErrorRef, 404: ErrorRef, 503: ErrorRef },
      },
    },
    async (req) => {
      const { cluster_id } = req.params;
      const q = req.query;
      const types = eventTypes(q.type);
      const range = eventRange(q.from, q.to);
      if (q.gpu_id !== undefined && q.host_id === undefined)
        throw bad('gpu_id: give host_id too (a GPU index is per host)');
      const gpu = q.gpu_id === undefined ? undefined : gpuIndex(q.gpu_id);
      const after = q.cursor === undefined ? undefined : decodeEventCursor(q.cursor);
      if ((await reader.cluster(cluster_id)) === undefined)
        throw new NexusError('NOT_FOUND', `cluster "${cluster_id}" not found`);
      const page = await reader.events.page({
        cluster: cluster_id,
        ...range,
        ...(types === undefined ? {} : { types }),
        ...(q.host_id === undefined ? {} : { host: q.host_id }),
        ...(gpu === undefined ? {} : { gpu }),
        limit: q.limit ?? DEFAULT_EVENT_LIMIT,
        ...(after === undefined ? {} : { after }),
      });
      return {
        cluster_id,
        from: iso(range.from) ?? '',
        to: iso(range.to) ?? '',
        counts: page.counts,
        events: page.events.map(eventOut),
        next_cursor: page.next === undefined ? null : encodeEventCursor(page.next),
      };
    },
  );
};
