import { NexusError } from '../../core/errors.js';
import { EVENT_TYPES, type EventType, type GpuEvent } from '../../store/event-reads.js';
import type { TelemetryReader } from '../../store/reader.js';
import type { EventPoller } from '../live/event-poller.js';
import { eventMatches } from '../live/event-poller.js';
import { gpuIndex, iso } from '../params.js';
import { decodeEventCursor, encodeEventCursor, eventOut, eventRange } from '../routes/events.js';
import { DEFAULT_EVENT_LIMIT, MAX_EVENT_LIMIT } from '../schemas/events.js';
import { BoundedQueue, type ConnectionSlots, type LiveLimits } from './live.js';

const bad = (message: string): NexusError => new NexusError('BAD_REQUEST', message);

/** Events a slow GraphQL subscriber may have waiting; beyond, the oldest are dropped. */
export const LIVE_BUFFER_EVENTS = 1000;

export interface EventArgs {
  readonly type?: readonly EventType[] | null;
  readonly from?: string | null;
  readonly to?: string | null;
  readonly hostId?: string | null;
  readonly gpuId?: number | null;
  readonly limit?: number | null;
  readonly cursor?: string | null;
}

/** Cluster.events: the REST endpoint's page (GET /api/v1/clusters/{id}/events). */
export async function eventPage(reader: TelemetryReader, clusterId: string, a: EventArgs) {
  const limit = a.limit ?? DEFAULT_EVENT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_EVENT_LIMIT)
    throw bad(`limit: ${limit} is out of range (1 to ${MAX_EVENT_LIMIT})`);
  if (a.gpuId != null && a.hostId == null)
    throw bad('gpuId: give hostId too (a GPU index is per host)');
  const gpu = a.gpuId == null ? undefined : gpuIndex(String(a.gpuId));
  const range = eventRange(a.from ?? undefined, a.to ?? undefined);
  const after = a.cursor == null ? undefined : decodeEventCursor(a.cursor);
  const page = await reader.events.page({
    cluster: clusterId,
    ...range,
    ...(a.type == null ? {} : { types: [...new Set(a.type)] }),
    ...(a.hostId == null ? {} : { host: a.hostId }),
    ...(gpu === undefined ? {} : { gpu }),
    limit,
    ...(after === undefined ? {} : { after }),
  });
  return {
    cluster_id: clusterId,
    from: iso(range.from) ?? '',
    to: iso(range.to) ?? '',
    counts: page.counts,
    events: page.events.map((e) => ({ ...eventOut(e), cluster_id: e.cluster_id })),
    next_cursor: page.next === undefined ? null : encodeEventCursor(page.next),
  };
}

export interface EventSubscriptionArgs {
  readonly clusterId?: string | null;
  readonly types?: readonly EventType[] | null;
  readonly hostIds?: readonly string[] | null;
}

/** Subscription.events: each GPU event matching the filter, as recorded (the gateway's poll). */
export function eventStream(
  poller: EventPoller | undefined,
  limits: LiveLimits,
  a: EventSubscriptionArgs,
  slots: ConnectionSlots | undefined,
): BoundedQueue<GpuEvent, ReturnType<typeof eventOut> & { cluster_id: string }> {
  if (poller === undefined) throw bad('GPU events are not available on this gateway');
  if (a.hostIds != null && (a.hostIds.length === 0 || a.hostIds.length > 1000))
    throw bad('hostIds: 1 to 1000 hostnames');
  for (const t of a.types ?? []) if (!EVENT_TYPES.includes(t)) throw bad(`types: "${t}"`);
  if (slots !== undefined && slots.active >= limits.maxSubscriptions)
    throw bad(`too many subscriptions on this connection (at most ${limits.maxSubscriptions})`);
  const filter = {
    ...(a.clusterId == null ? {} : { cluster_id: a.clusterId }),
    ...(a.types == null ? {} : { types: a.types }),
    ...(a.hostIds == null ? {} : { host_id: a.hostIds }),
  };
  const queue = new BoundedQueue<GpuEvent, ReturnType<typeof eventOut> & { cluster_id: string }>(
    LIVE_BUFFER_EVENTS,
    () => 1,
    (e) => ({ ...eventOut(e), cluster_id: e.cluster_id }),
    () => {
      stop();
      if (slots !== undefined) slots.active--;
    },
  );
  if (slots !== undefined) slots.active++;
  const stop = poller.add((e) => {
    if (eventMatches(filter, e)) queue.push(e);
  });
  return queue;
}
