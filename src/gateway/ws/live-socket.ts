import type { FastifyPluginAsync } from 'fastify';
import type { WebSocket } from 'ws';
import type { Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { NexusMetrics } from '../../core/metrics.js';
import type { TelemetryReader } from '../../store/reader.js';
import type { ClientMistakes } from '../client-log.js';
import {
  MAX_FIELD_VALUES,
  LiveFilterSchema,
  PingMessage,
  SubscribeMessage,
  UnsubscribeMessage,
  type ClientMessage,
  type HeldFilter,
  type ServerMessage,
} from '../schemas/live.js';
import type { LiveFilter, LiveHub } from '../live/hub.js';
import { eventMatches, type EventPoller } from '../live/event-poller.js';
import { eventOut } from '../routes/events.js';
import type { EventType } from '../../store/event-reads.js';

export interface SocketLimits {
  /** A client whose unsent data exceeds this many bytes gets no more telemetry until it drains. */
  readonly maxBufferedBytes: number;
  /**
   * Unsent telemetry held for all clients together (a message shared by many clients counts
   * once); beyond it, telemetry not yet held is dropped for the clients that would need it.
   */
  readonly maxTotalBufferedBytes: number;
  /** Ping and heartbeat period; a client that misses a pong for a period is disconnected. */
  readonly heartbeatMs: number;
  /** Subscriptions per connection. */
  readonly maxSubscriptions: number;
  /** Filter values (hosts, GPUs, uuids, metrics) in all of a connection's subscriptions. */
  readonly maxFilterValues: number;
  /** A client that stays too slow this long is disconnected (close code 4008). */
  readonly slowClientMs: number;
  /** WebSocket connections, /ws and GraphQL together, and per client address. */
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
}

/** Close code of a client disconnected for reading too slowly (docs/api.md). */
export const CLOSE_TOO_SLOW = 4008;

/**
 * Telemetry held unsent for all clients, in bytes, each message counted once however many clients
 * it waits for (the clients of one filter share its bytes). Bounds the gateway's memory for live
 * push whatever the number of clients.
 */
export class SharedBacklog {
  private readonly refs = new Map<Buffer, number>();
  bytes = 0;

  constructor(private readonly max: number) {}

  /** Whether `buf` may be queued for one more client (free when another client holds it). */
  admits(buf: Buffer): boolean {
    return this.refs.has(buf) || this.bytes + buf.length <= this.max;
  }

  hold(buf: Buffer): () => void {
    const n = this.refs.get(buf);
    if (n === undefined) this.bytes += buf.length;
    this.refs.set(buf, (n ?? 0) + 1);
    return () => {
      const left = (this.refs.get(buf) ?? 1) - 1;
      if (left > 0) {
        this.refs.set(buf, left);
      } else {
        this.refs.delete(buf);
        this.bytes -= buf.length;
      }
    };
  }
}

const checks = {
  subscribe: TypeCompiler.Compile(SubscribeMessage),
  unsubscribe: TypeCompiler.Compile(UnsubscribeMessage),
  ping: TypeCompiler.Compile(PingMessage),
};
const filterCheck = TypeCompiler.Compile(LiveFilterSchema);

/** What a filter field must hold, said plainly (a union's own message says little). */
const EXPECTED: Record<string, string> = {
  cluster_id: 'a cluster id (1-128 characters)',
  host_id: 'a hostname or an array of hostnames',
  gpu_id: 'a GPU index (an integer 0-32767) or an array of them',
  uuid: 'a GPU uuid or an array of them',
  metric: 'a metric name (letters, digits, _ : .) or an array of them',
  gpu_instance: 'a MIG GPU instance id (-1 for the whole GPU, 0-32767) or an array of them',
  type: 'an event type (xid, throttle, health, stopped, reappeared) or an array of them',
};

const arr = <T>(v: T | T[] | undefined): T[] | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? v : [v];

function toFilter(f: Static<typeof LiveFilterSchema>): HeldFilter {
  const hosts = arr(f.host_id);
  const gpus = arr(f.gpu_id);
  const uuids = arr(f.uuid);
  const metrics = arr(f.metric);
  const instances = arr(f.gpu_instance);
  const types = arr(f.type);
  return {
    ...(types === undefined ? {} : { type: types }),
    ...(f.cluster_id === undefined ? {} : { cluster_id: f.cluster_id }),
    ...(hosts === undefined ? {} : { host_id: hosts }),
    ...(gpus === undefined ? {} : { gpu_id: gpus }),
    ...(uuids === undefined ? {} : { uuid: uuids }),
    ...(metrics === undefined ? {} : { metric: metrics }),
    ...(instances === undefined ? {} : { gpu_instance: instances }),
  };
}

/** The id of a client message, when it has a valid one (a string of 1 to 64 characters). */
function idOf(msg: unknown): string | undefined {
  const id: unknown = Reflect.get(Object(msg), 'id');
  return typeof id === 'string' && id.length > 0 && id.length <= 64 ? id : undefined;
}

/** Explains the first problem of an invalid client message or filter, in words. */
function problem(
  check: { Errors(value: unknown): { First(): { path: string; message: string } | undefined } },
  value: unknown,
): string {
  const first = check.Errors(value).First();
  if (first === undefined) return 'invalid';
  const parts = first.path.replace(/^\//, '').split('/').filter(Boolean);
  const field = parts.find((p) => p in EXPECTED);
  if (field !== undefined) {
    const filter: unknown = parts[0] === 'filter' ? Reflect.get(Object(value), 'filter') : value;
    const given: unknown = Reflect.get(Object(filter), field);
    if (Array.isArray(given) && given.length > MAX_FIELD_VALUES)
      return `filters too large: ${given.length} values in filter.${field}; at most ${MAX_FIELD_VALUES} a field`;
    return `filter.${field} must be ${EXPECTED[field] ?? 'valid'}`;
  }
  if (first.message === 'Unexpected property') {
    return parts[0] === 'filter' || (parts.length === 1 && check === filterCheck)
      ? `unknown field "${parts.join('.')}" (a filter takes cluster_id, host_id, gpu_id, uuid, metric, gpu_instance, type)`
      : `unknown field "${parts.join('.')}" in the message`;
  }
  return `${parts.length === 0 ? 'message' : parts.join('.')}: ${first.message}`;
}

/** The filter of the connection's default subscription, from the URL's query string. */
function queryFilter(q: Record<string, string | undefined>): {
  filter?: Static<typeof LiveFilterSchema>;
  error?: string;
} {
  const split = (v: string | undefined): string[] | undefined =>
    v === undefined
      ? undefined
      : v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
  const raw: Record<string, unknown> = {};
  if (q.cluster_id !== undefined) raw.cluster_id = q.cluster_id;
  if (q.host_id !== undefined) raw.host_id = split(q.host_id);
  if (q.gpu_id !== undefined)
    raw.gpu_id = split(q.gpu_id)?.map((x) => (/^\d+$/.test(x) ? Number(x) : x));
  if (q.uuid !== undefined) raw.uuid = split(q.uuid);
  if (q.metric !== undefined) raw.metric = split(q.metric);
  if (q.gpu_instance !== undefined)
    raw.gpu_instance = split(q.gpu_instance)?.map((x) => (/^-?\d+$/.test(x) ? Number(x) : x));
  for (const k of Object.keys(q)) {
    if (
      !['cluster_id', 'host_id', 'gpu_id', 'uuid', 'metric', 'gpu_instance', 'subscribe'].includes(
        k,
      )
    )
      return { error: `unknown query parameter "${k}"` };
  }
  if (!filterCheck.Check(raw)) return { error: problem(filterCheck, raw) };
  return { filter: raw };
}

interface Subscription {
  readonly remove: () => void;
  readonly values: number;
  dropped: number;
}

/** How many values a filter holds (what the connection's maxFilterValues counts). */
function filterValues(f: LiveFilter): number {
  return (
    (f.host_id?.length ?? 0) +
    (f.gpu_id?.length ?? 0) +
    (f.uuid?.length ?? 0) +
    (f.metric?.length ?? 0) +
    (f.gpu_instance?.length ?? 0)
  );
}

/**
 * The live WebSocket (docs/api.md, "WebSocket /ws"). A connection subscribes with filters and
 * receives each committed batch's matching readings (in parts of at most 2,000) as messages.
 * Memory is bounded per client and in all: a message is encoded once for every client of its
 * filter and shared; when a client reads slower than telemetry arrives and its unsent data passes
 * `maxBufferedBytes`, or all clients' unsent telemetry passes `maxTotalBufferedBytes`, further
 * telemetry for it is dropped and counted (it is told with a `dropped` message once it catches
 * up); a client that stays too slow for `slowClientMs` is closed with 4008.
 */
export const liveSocketRoutes: FastifyPluginAsync<{
  metrics?: NexusMetrics;
  hub: LiveHub | undefined;
  limits: SocketLimits;
  reader: TelemetryReader;
  mistakes: ClientMistakes;
  backlog: SharedBacklog;
  /** GPU events as they are recorded (subscriptions of kind `events`). */
  events?: EventPoller;
}> = async (app, { hub, limits, metrics, mistakes, backlog, events }) => {
  app.get('/ws', { websocket: true, schema: { hide: true } }, (socket: WebSocket, req) => {
    // Refused by the connection limiter (closed with its code before this handler ran).
    if (socket.readyState !== socket.OPEN) return;
    const subs = new Map<string, Subscription>();
    let alive = true;
    let slowSince: number | undefined;
    let closed = false;
    const send = (obj: ServerMessage): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(obj));
    };
    const error = (message: string, id?: string): void => {
      mistakes.note({ address: req.ip, problem: message.slice(0, 200) }, 'bad WebSocket message');
      send({
        type: 'error',
        ...(id === undefined ? {} : { id }),
        error: message,
        code: 'BAD_REQUEST',
      });
    };
    const tooSlow = (): void =>
      socket.close(
        CLOSE_TOO_SLOW,
        `too slow: more than ${limits.maxBufferedBytes} bytes unread for ${limits.slowClientMs} ms`,
      );

    /** Reports drops once the client has caught up; disconnects one that never does. */
    const checkSlow = (now: number): boolean => {
      if (socket.bufferedAmount > limits.maxBufferedBytes) {
        slowSince ??= now;
        if (now - slowSince > limits.slowClientMs) tooSlow();
        return true;
      }
      if (slowSince !== undefined) {
        slowSince = undefined;
        for (const [id, s] of subs) {
          if (s.dropped > 0) {
            send({
              type: 'dropped',
              id,
              count: s.dropped,
              reason: 'slow client: readings were dropped while its buffer was full',
            });
            s.dropped = 0;
          }
        }
      }
      return false;
    };

    /** A subscription of kind `events`: each GPU event matching the filter, as recorded. */
    const subscribeEvents = (id: string, filter: Static<typeof LiveFilterSchema>): void => {
      if (events === undefined) return error('GPU events are not available on this gateway', id);
      if (subs.has(id))
        return error(
          `subscription "${id}" already exists; unsubscribe first or use another id`,
          id,
        );
      if (subs.size >= limits.maxSubscriptions)
        return error(`at most ${limits.maxSubscriptions} subscriptions per connection`, id);
      if (filter.metric !== undefined || filter.uuid !== undefined)
        return error('an events subscription filters by cluster_id, host_id, gpu_id and type', id);
      const held = toFilter(filter);
      const values = filterValues(held) + (held.type?.length ?? 0);
      let total = 0;
      for (const s of subs.values()) total += s.values;
      if (total + values > limits.maxFilterValues)
        return error(
          `filters too large: ${total + values} values in this connection's subscriptions; at most ${limits.maxFilterValues}`,
          id,
        );
      const match = {
        ...(held.cluster_id === undefined ? {} : { cluster_id: held.cluster_id }),
        ...(held.type === undefined ? {} : { types: held.type as EventType[] }),
        ...(held.host_id === undefined ? {} : { host_id: held.host_id }),
        ...(held.gpu_id === undefined ? {} : { gpu_id: held.gpu_id }),
      };
      const sub: Subscription = { dropped: 0, values, remove: () => undefined };
      const remove = events.add((e) => {
        if (closed || !eventMatches(match, e)) return;
        if (checkSlow(Date.now())) {
          sub.dropped++;
          metrics?.wsDropped.inc();
          return;
        }
        send({ type: 'event', id, event: eventOut(e) });
      });
      subs.set(id, {
        remove,
        values,
        get dropped() {
          return sub.dropped;
        },
        set dropped(v: number) {
          sub.dropped = v;
        },
      });
      send({ type: 'subscribed', id, filter: held });
    };

    const subscribe = (id: string, filter: Static<typeof LiveFilterSchema>): void => {
      if (filter.type !== undefined)
        return error('filter.type is for subscriptions of kind "events"', id);
      if (hub === undefined)
        return error(
          'live data is not available: this gateway has no commit feed (ENABLE_NEXUS)',
          id,
        );
      if (subs.has(id))
        return error(
          `subscription "${id}" already exists; unsubscribe first or use another id`,
          id,
        );
      if (subs.size >= limits.maxSubscriptions)
        return error(`at most ${limits.maxSubscriptions} subscriptions per connection`, id);
      const live = toFilter(filter);
      const values = filterValues(live);
      let held = 0;
      for (const s of subs.values()) held += s.values;
      if (held + values > limits.maxFilterValues)
        return error(
          `filters too large: ${held + values} values in this connection's subscriptions; at most ${limits.maxFilterValues}`,
          id,
        );
      const sub: Subscription = { dropped: 0, values, remove: () => undefined };
      const drop = (n: number): void => {
        sub.dropped += n;
        metrics?.wsDropped.inc(n);
      };
      const remove = hub.add({
        filter: live,
        deliver: (batch, encoding) => {
          if (closed) return;
          const n = batch.records.length;
          if (checkSlow(Date.now())) return drop(n);
          // The message's bytes, made once for every client of this filter and subscription id.
          const bytes = encoding.shared(`ws:${id}`, () =>
            Buffer.from(
              `{"type":"telemetry","id":${JSON.stringify(id)},"cluster_id":${JSON.stringify(batch.cluster_id)},"committed_at":"${new Date(batch.committed_at).toISOString()}","count":${n},"readings":${encoding.readingsJson()}}`,
            ),
          );
          // A client with data still unsent takes no message that would carry it past its own
          // bound or the gateway's; an idle one always takes the next message, however large,
          // so clients that keep up are never starved by those that do not.
          const behind = socket.bufferedAmount > 0;
          if (
            behind &&
            (socket.bufferedAmount + bytes.length > limits.maxBufferedBytes ||
              !backlog.admits(bytes))
          )
            return drop(n);
          const release = backlog.hold(bytes);
          socket.send(bytes, { binary: false }, release);
        },
        missed: drop,
      });
      subs.set(id, {
        remove,
        values,
        get dropped() {
          return sub.dropped;
        },
        set dropped(v: number) {
          sub.dropped = v;
        },
      });
      send({ type: 'subscribed', id, filter: live });
    };

    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return error('binary messages are not supported; send JSON text');
      let msg: unknown;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        return error('message is not JSON');
      }
      const type: unknown =
        typeof msg === 'object' && msg !== null && 'type' in msg ? msg.type : undefined;
      if (type === undefined)
        return error('message needs a "type": subscribe, unsubscribe or ping');
      if (type !== 'subscribe' && type !== 'unsubscribe' && type !== 'ping') {
        return error(
          `unknown message type ${JSON.stringify(type).slice(0, 64)} (subscribe, unsubscribe, ping)`,
        );
      }
      const check = checks[type];
      // Refused with the subscription's id when it has one, so the client knows which.
      if (!check.Check(msg)) return error(problem(check, msg), idOf(msg));
      const m: ClientMessage = msg;
      switch (m.type) {
        case 'subscribe':
          return m.kind === 'events'
            ? subscribeEvents(m.id ?? `s${subs.size + 1}`, m.filter ?? {})
            : subscribe(m.id ?? `s${subs.size + 1}`, m.filter ?? {});
        case 'unsubscribe': {
          const s = subs.get(m.id);
          if (s === undefined) return error(`no subscription "${m.id}"`, m.id);
          s.remove();
          subs.delete(m.id);
          return send({ type: 'unsubscribed', id: m.id });
        }
        case 'ping':
          return send({ type: 'pong', ts: new Date().toISOString() });
      }
    });

    const heartbeat = setInterval(() => {
      const now = Date.now();
      if (!alive) {
        // No pong for a period: the client is not reading (a paused one has our ping queued
        // behind its unread data, in our buffer or the kernel's) or it is gone. Either way a
        // close with 4008, which a paused client reads when it reads again; for one that is
        // gone, ws ends the socket when the closing handshake times out.
        socket.close(
          CLOSE_TOO_SLOW,
          `too slow: no answer to a ping within ${limits.heartbeatMs} ms`,
        );
        return;
      }
      alive = false;
      socket.ping();
      checkSlow(now);
      if (socket.bufferedAmount < limits.maxBufferedBytes)
        send({ type: 'heartbeat', ts: new Date().toISOString() });
    }, limits.heartbeatMs);
    heartbeat.unref();
    socket.on('pong', () => {
      alive = true;
    });
    socket.on('close', () => {
      closed = true;
      clearInterval(heartbeat);
      for (const s of subs.values()) s.remove();
      subs.clear();
    });

    send({
      type: 'welcome',
      protocol: 'nexus-live/1',
      heartbeat_ms: limits.heartbeatMs,
      max_buffered_bytes: limits.maxBufferedBytes,
      max_subscriptions: limits.maxSubscriptions,
      max_filter_values: limits.maxFilterValues,
    });
    const q = req.query as Record<string, string | undefined>;
    if (q.subscribe !== 'none') {
      const parsed = queryFilter(q);
      if (parsed.error !== undefined) error(parsed.error, 'default');
      else subscribe('default', parsed.filter ?? {});
    }
  });
};
