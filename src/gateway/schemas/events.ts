import { Type } from '@sinclair/typebox';
import { EVENT_TYPES } from '../../store/event-reads.js';
import { Nullable, StringEnum, Time } from './common.js';

/** GPU events (docs/fleet.md, "Events"): XID errors, throttling, health, stopped, reappeared. */
export const GpuEvent = Type.Object({
  id: Type.String({ description: 'Opaque, unique' }),
  type: StringEnum(EVENT_TYPES),
  time: Time,
  ended_at: Nullable(Time),
  severity: StringEnum(['info', 'warning', 'critical'] as const),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  uuid: Nullable(Type.String()),
  code: Nullable(Type.Integer({ description: 'xid: the XID code; throttle: the reasons bitmask' })),
  message: Type.String(),
  details: Type.Record(Type.String(), Type.Unknown()),
});

export const EventCounts = Type.Object(
  Object.fromEntries(EVENT_TYPES.map((t) => [t, Type.Integer()])) as Record<
    (typeof EVENT_TYPES)[number],
    ReturnType<typeof Type.Integer>
  >,
);

/** Most events in one page, and the default. */
export const MAX_EVENT_LIMIT = 1000;
export const DEFAULT_EVENT_LIMIT = 100;

export const EventsQuery = Type.Object(
  {
    type: Type.Optional(
      Type.String({ description: `Event types, comma-separated: ${EVENT_TYPES.join(', ')}` }),
    ),
    from: Type.Optional(
      Type.String({
        description:
          'Start, inclusive: RFC 3339, epoch ms (12+ digits) or s (9-11), now, or -15m (default: to - 24h)',
      }),
    ),
    to: Type.Optional(Type.String({ description: 'End, exclusive (default: now)' })),
    host_id: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    gpu_id: Type.Optional(Type.String({ description: 'GPU index on host_id (needs host_id)' })),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_EVENT_LIMIT,
        description: `Events per page (default ${DEFAULT_EVENT_LIMIT}, at most ${MAX_EVENT_LIMIT})`,
      }),
    ),
    cursor: Type.Optional(Type.String({ description: 'next_cursor of the previous page' })),
  },
  { additionalProperties: false },
);

export const EventsResult = Type.Object({
  cluster_id: Type.String(),
  from: Time,
  to: Time,
  counts: EventCounts,
  events: Type.Array(GpuEvent),
  next_cursor: Nullable(Type.String()),
});
