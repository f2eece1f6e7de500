import { Type, type Static } from '@sinclair/typebox';
import { EVENT_TYPES } from '../../store/event-reads.js';
import { GpuEvent } from './events.js';

/**
 * The live WebSocket's protocol, nexus-live/1 (docs/api.md, "WebSocket /ws"): what a client sends
 * (checked with these schemas) and what the gateway sends (the dashboard's types come from them).
 */

/** Values of one filter field at most (WS_MAX_FILTER_VALUES bounds a connection's together). */
export const MAX_FIELD_VALUES = 1000;

const OneOrMany = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(
  t: T,
) => Type.Union([t, Type.Array(t, { minItems: 1, maxItems: MAX_FIELD_VALUES })]);

/** An event type, as literals (these schemas are compiled by TypeBox's TypeCompiler). */
const EventTypeLiteral = Type.Union(EVENT_TYPES.map((t) => Type.Literal(t)));

/** A subscription's filter: every field optional, a value or an array of them. */
export const LiveFilterSchema = Type.Object(
  {
    cluster_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    host_id: Type.Optional(OneOrMany(Type.String({ minLength: 1, maxLength: 253 }))),
    gpu_id: Type.Optional(OneOrMany(Type.Integer({ minimum: 0, maximum: 32767 }))),
    uuid: Type.Optional(OneOrMany(Type.String({ minLength: 1, maxLength: 128 }))),
    metric: Type.Optional(OneOrMany(Type.String({ pattern: '^[A-Za-z0-9_:.]{1,128}$' }))),
    gpu_instance: Type.Optional(
      OneOrMany(
        Type.Integer({
          minimum: -1,
          maximum: 32767,
          description: "MIG GPU instance id(s); -1 the whole GPU's own readings (the default)",
        }),
      ),
    ),
    /** Event types (a subscription of kind `events` only). */
    type: Type.Optional(
      Type.Union([EventTypeLiteral, Type.Array(EventTypeLiteral, { minItems: 1, maxItems: 5 })]),
    ),
  },
  { additionalProperties: false },
);

const SubscriptionId = Type.String({ minLength: 1, maxLength: 64 });

// What a client sends.

export const SubscribeMessage = Type.Object(
  {
    type: Type.Literal('subscribe'),
    id: Type.Optional(SubscriptionId),
    /** telemetry (default): committed readings; events: GPU events as they are recorded. */
    kind: Type.Optional(Type.Union([Type.Literal('telemetry'), Type.Literal('events')])),
    filter: Type.Optional(LiveFilterSchema),
  },
  { additionalProperties: false },
);
export const UnsubscribeMessage = Type.Object(
  { type: Type.Literal('unsubscribe'), id: SubscriptionId },
  { additionalProperties: false },
);
export const PingMessage = Type.Object(
  { type: Type.Literal('ping') },
  { additionalProperties: false },
);
export type ClientMessage =
  Static<typeof SubscribeMessage> | Static<typeof UnsubscribeMessage> | Static<typeof PingMessage>;

// What the gateway sends.

/** A reading as the socket sends it: the REST reading without its unit (REST has it). */
export const LiveReading = Type.Object({
  cluster_id: Type.String(),
  host_id: Type.String(),
  gpu_id: Type.Integer(),
  gpu_instance_id: Type.Optional(
    Type.Integer({ description: "A MIG instance's reading: its GPU instance id" }),
  ),
  uuid: Type.Union([Type.String(), Type.Null()]),
  metric: Type.String(),
  timestamp: Type.String({ format: 'date-time' }),
  value: Type.Number(),
});

/** A filter as the gateway says it holds it (arrays, absent fields match everything). */
export const HeldFilterSchema = Type.Object({
  cluster_id: Type.Optional(Type.String()),
  host_id: Type.Optional(Type.Array(Type.String())),
  gpu_id: Type.Optional(Type.Array(Type.Integer())),
  uuid: Type.Optional(Type.Array(Type.String())),
  metric: Type.Optional(Type.Array(Type.String())),
  gpu_instance: Type.Optional(Type.Array(Type.Integer())),
  type: Type.Optional(Type.Array(Type.String())),
});

export const ServerMessageSchema = Type.Union([
  Type.Object({
    type: Type.Literal('welcome'),
    protocol: Type.Literal('nexus-live/1'),
    heartbeat_ms: Type.Integer(),
    max_buffered_bytes: Type.Integer(),
    max_subscriptions: Type.Integer(),
    max_filter_values: Type.Integer(),
  }),
  Type.Object({ type: Type.Literal('subscribed'), id: Type.String(), filter: HeldFilterSchema }),
  Type.Object({ type: Type.Literal('unsubscribed'), id: Type.String() }),
  Type.Object({
    type: Type.Literal('telemetry'),
    id: Type.String(),
    cluster_id: Type.String(),
    committed_at: Type.String({ format: 'date-time' }),
    count: Type.Integer(),
    readings: Type.Array(LiveReading),
  }),
  Type.Object({ type: Type.Literal('event'), id: Type.String(), event: GpuEvent }),
  Type.Object({ type: Type.Literal('heartbeat'), ts: Type.String({ format: 'date-time' }) }),
  Type.Object({ type: Type.Literal('pong'), ts: Type.String({ format: 'date-time' }) }),
  Type.Object({
    type: Type.Literal('dropped'),
    id: Type.String(),
    count: Type.Integer(),
    reason: Type.String(),
  }),
  Type.Object({
    type: Type.Literal('error'),
    id: Type.Optional(Type.String()),
    error: Type.String(),
    code: Type.Literal('BAD_REQUEST'),
  }),
]);
export type ServerMessage = Static<typeof ServerMessageSchema>;
export type HeldFilter = Static<typeof HeldFilterSchema>;
