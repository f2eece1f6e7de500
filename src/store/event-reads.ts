/** What the reads need of a database (SqlClient of types.ts; not imported: reader.ts imports this). */
interface Queryable {
  query<R>(text: string, params?: readonly unknown[]): Promise<{ readonly rows: R[] }>;
}

/** The event types (docs/fleet.md, "Events"). */
export const EVENT_TYPES = ['xid', 'throttle', 'health', 'stopped', 'reappeared'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface GpuEvent {
  /** Database id (a bigint, as a string). */
  readonly id: string;
  readonly cluster_id: string;
  readonly type: EventType;
  /** Epoch ms. */
  readonly time: number;
  readonly ended_at: number | null;
  readonly severity: 'info' | 'warning' | 'critical';
  readonly host_id: string;
  readonly gpu_id: number;
  readonly uuid: string | null;
  readonly code: number | null;
  readonly message: string;
  readonly details: Record<string, unknown>;
}

/** Where a page ends: the last event's (time, id); the next page starts after it. */
export interface EventCursor {
  readonly time: number;
  readonly id: string;
}

export interface EventQuery {
  readonly cluster: string;
  /** Epoch ms: from inclusive, to exclusive. */
  readonly from: number;
  readonly to: number;
  readonly types?: readonly EventType[];
  readonly host?: string;
  readonly gpu?: number;
  readonly hosts?: readonly string[];
  readonly limit: number;
  readonly after?: EventCursor;
}

export interface EventPage {
  /** Newest first. */
  readonly events: GpuEvent[];
  /** Events of each type matching every filter but the types (and the cursor) in the range. */
  readonly counts: Record<EventType, number>;
  /** Set when more events follow. */
  readonly next?: EventCursor;
}

/** Events as stored (the gateway's poll for the live feeds), oldest first. */
export interface RecordedEvents {
  /** Each event with when it was stored (`recorded_at`, epoch ms). */
  readonly events: { readonly event: GpuEvent; readonly recorded: number }[];
  /** The database's clock when it was read (epoch ms): the next poll's reference. */
  readonly now: number;
  /** More were stored than `limit`: ask again after the last one. */
  readonly more: boolean;
}

interface Row {
  id: string;
  cluster: string;
  type: EventType;
  t: string;
  ended: string | null;
  severity: GpuEvent['severity'];
  hostname: string;
  gpu_index: number;
  uuid: string | null;
  code: number | null;
  message: string;
  details: Record<string, unknown> | string;
}

const COLUMNS = `e.id::text AS id, c.name AS cluster, e.type, nexus_ms(e.time)::text AS t,
  nexus_ms(e.ended_at)::text AS ended, e.severity, h.hostname, g.gpu_index, g.uuid, e.code,
  e.message, e.details`;
const FROM = `gpu_events e JOIN gpus g ON g.id = e.gpu_id JOIN hosts h ON h.id = g.host_id
  JOIN clusters c ON c.id = h.cluster_id`;

function eventOf(r: Row): GpuEvent {
  return {
    id: r.id,
    cluster_id: r.cluster,
    type: r.type,
    time: Number(r.t),
    ended_at: r.ended === null ? null : Number(r.ended),
    severity: r.severity,
    host_id: r.hostname,
    gpu_id: r.gpu_index,
    uuid: r.uuid,
    code: r.code,
    message: r.message,
    details:
      typeof r.details === 'string'
        ? (JSON.parse(r.details) as Record<string, unknown>)
        : r.details,
  };
}

/** The read side of the events (migration 008). */
export class EventReads {
  constructor(private readonly db: Queryable) {}

  async page(q: EventQuery): Promise<EventPage> {
    const hosts = q.hosts ?? (q.host === undefined ? null : [q.host]);
    const filter = `c.name = $1 AND e.time >= nexus_ts($2) AND e.time < nexus_ts($3)
      AND ($4::text[] IS NULL OR h.hostname = ANY($4::text[]))
      AND ($5::int IS NULL OR g.gpu_index = $5::int)`;
    const base = [q.cluster, q.from, q.to, hosts, q.gpu ?? null];
    const rows = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM ${FROM}
       WHERE ${filter} AND ($6::text[] IS NULL OR e.type = ANY($6::text[]))
         AND ($7::bigint IS NULL OR (e.time, e.id) < (nexus_ts($7::bigint), $8::bigint))
       ORDER BY e.time DESC, e.id DESC LIMIT $9`,
      [
        ...base,
        q.types === undefined ? null : [...q.types],
        q.after?.time ?? null,
        q.after?.id ?? null,
        q.limit + 1,
      ],
    );
    const counts = await this.db.query<{ type: EventType; n: number }>(
      `SELECT e.type, count(*)::int AS n FROM ${FROM} WHERE ${filter} GROUP BY e.type`,
      base,
    );
    const out = Object.fromEntries(EVENT_TYPES.map((t) => [t, 0])) as Record<EventType, number>;
    for (const r of counts.rows) out[r.type] = r.n;
    const events = rows.rows.slice(0, q.limit).map(eventOf);
    const last = events.at(-1);
    return {
      events,
      counts: out,
      ...(rows.rows.length > q.limit && last !== undefined
        ? { next: { time: last.time, id: last.id } }
        : {}),
    };
  }

  /**
   * Events stored (`recorded_at`) after (`since`, `afterId`) in (recorded_at, id) order, at most
   * `limit`. A transaction stamps its events when it starts and they become visible when it
   * commits: the caller asks again from a while back (an overlap) and drops the ids it has seen.
   */
  async recordedSince(since: number, afterId: string, limit: number): Promise<RecordedEvents> {
    const rows = await this.db.query<Row & { recorded: string; now: string }>(
      `SELECT ${COLUMNS}, nexus_ms(e.recorded_at)::text AS recorded, nexus_ms(now())::text AS now
       FROM ${FROM}
       WHERE (e.recorded_at, e.id) > (nexus_ts($1), $2::bigint)
       ORDER BY e.recorded_at, e.id LIMIT $3`,
      [since, afterId, limit + 1],
    );
    let now: number;
    const first = rows.rows[0];
    if (first !== undefined) now = Number(first.now);
    else {
      const r = await this.db.query<{ now: string }>('SELECT nexus_ms(now())::text AS now');
      now = Number(r.rows[0]?.now ?? Date.now());
    }
    return {
      events: rows.rows
        .slice(0, limit)
        .map((r) => ({ event: eventOf(r), recorded: Number(r.recorded) })),
      now,
      more: rows.rows.length > limit,
    };
  }
}
