import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import { NexusError } from '../../core/errors.js';
import { dcgmField } from '../../core/dcgm-fields.js';
import type { FeedRecord } from '../../registry/feed.js';
import type { TelemetryReader } from '../../store/reader.js';
import type { LiveDelivery, LiveFilter, LiveHub } from '../live/hub.js';
import { iso } from '../params.js';
import { apiReading } from '../presenters.js';
import { liveFilterOf, type FilterArgs } from './args.js';

/** Readings one subscription may hold unsent; beyond, the oldest are dropped and counted. */
export const LIVE_BUFFER_READINGS = 10_000;

/** A reading as GraphQL returns it: the REST reading, field for field. */
export interface ReadingNode {
  readonly cluster_id: string;
  readonly host_id: string;
  readonly gpu_id: number;
  readonly uuid: string | null;
  readonly metric: string;
  readonly unit: string;
  readonly timestamp: string;
  readonly value: number;
}

export interface BatchNode {
  readonly cluster_id: string;
  readonly committed_at: string;
  readonly readings: readonly ReadingNode[];
  readonly count: number;
  readonly dropped: number;
}

/**
 * A bounded FIFO read as an async iterator. Each item weighs some readings; when the total goes
 * over `capacity` the oldest items are dropped (never the newest alone) and their weight counted.
 * `take` turns an item into the value sent, given what was dropped since the previous one.
 */
export class BoundedQueue<T, Out> implements AsyncIterator<Out, undefined> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private load = 0;
  private droppedSinceTake = 0;
  private readonly waiters: ((r: IteratorResult<Out, undefined>) => void)[] = [];
  private closed = false;
  /** Readings dropped in all. */
  dropped = 0;

  constructor(
    private readonly capacity: number,
    private readonly weigh: (item: T) => number,
    private readonly take: (item: T, dropped: number) => Out,
    private readonly onClose: () => void,
  ) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.closed) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      waiter({ value: this.emit(item), done: false });
      return;
    }
    this.items.push(item);
    this.load += this.weigh(item);
    while (this.load > this.capacity && this.length > 1) {
      const old = this.items[this.head];
      this.items[this.head] = undefined;
      this.head++;
      if (old !== undefined) {
        const w = this.weigh(old);
        this.load -= w;
        this.dropped += w;
        this.droppedSinceTake += w;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** Counts readings that never reached the queue (the gateway could not fan them out in time). */
  skip(readings: number): void {
    this.dropped += readings;
    this.droppedSinceTake += readings;
  }

  private emit(item: T): Out {
    const dropped = this.droppedSinceTake;
    this.droppedSinceTake = 0;
    return this.take(item, dropped);
  }

  next(): Promise<IteratorResult<Out, undefined>> {
    if (this.length > 0) {
      const item = this.items[this.head];
      this.items[this.head] = undefined;
      this.head++;
      if (item !== undefined) {
        this.load -= this.weigh(item);
        return Promise.resolve({ value: this.emit(item), done: false });
      }
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Ends the stream (client unsubscribed or disconnected): stops the feed, wakes the reader. */
  return(): Promise<IteratorResult<Out, undefined>> {
    if (!this.closed) {
      this.closed = true;
      this.items = [];
      this.head = 0;
      this.load = 0;
      for (const w of this.waiters.splice(0)) w({ value: undefined, done: true });
      this.onClose();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(): Promise<IteratorResult<Out, undefined>> {
    return this.return();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

/** Units of metrics for live readings (the feed carries none): the stored catalogue, else DCGM's. */
export class UnitBook {
  private units = new Map<string, string>();
  private at = 0;

  constructor(private readonly reader: TelemetryReader) {}

  async refresh(now = Date.now()): Promise<void> {
    if (now - this.at < 30_000) return;
    this.at = now;
    try {
      this.units = new Map((await this.reader.metricCatalogue()).map((m) => [m.name, m.unit]));
    } catch {
      // The store is down: DCGM's catalogue still gives the usual units.
    }
  }

  unit(metric: string): string {
    return this.units.get(metric) ?? dcgmField(metric)?.unit ?? '';
  }
}

/** A feed reading as GraphQL returns it: the live socket's reading, with its unit. */
function readingNode(clusterId: string, r: FeedRecord, units: UnitBook): ReadingNode {
  return { ...apiReading(clusterId, r), unit: units.unit(r.metric) };
}

/** Counts a connection's subscriptions (the context object is shared by them). */
export interface ConnectionSlots {
  active: number;
}

export interface LiveLimits {
  readonly maxSubscriptions: number;
  readonly maxBufferedBytes: number;
  readonly slowClientMs: number;
}

export interface LiveDeps {
  readonly hub: LiveHub | undefined;
  readonly units: UnitBook;
  readonly log: FastifyBaseLogger;
  readonly limits: LiveLimits;
}

/**
 * Watches a subscriber connection for slowness: mercurius sends an event only once the previous
 * one is written, so a slow subscriber's events wait in its bounded queues (the oldest dropped and
 * counted) rather than in the socket; a connection that stays `maxBufferedBytes` behind for
 * `slowClientMs` is closed with 4008, as on /ws.
 */
export function closeWhenSlow(socket: WebSocket, limits: LiveLimits): void {
  let slowSince: number | undefined;
  const timer = setInterval(
    () => {
      if (socket.bufferedAmount <= limits.maxBufferedBytes) {
        slowSince = undefined;
        return;
      }
      const now = Date.now();
      slowSince ??= now;
      if (now - slowSince > limits.slowClientMs) {
        clearInterval(timer);
        socket.close(
          4008,
          `too slow: more than ${limits.maxBufferedBytes} bytes unread for ${limits.slowClientMs} ms`,
        );
      }
    },
    Math.max(50, Math.min(1000, limits.slowClientMs / 4)),
  );
  timer.unref();
  socket.once('close', () => clearInterval(timer));
}

interface Opened<T> {
  readonly filter: LiveFilter;
  readonly slots: ConnectionSlots | undefined;
  readonly deliver: (d: LiveDelivery, push: (item: T) => void) => void;
}

async function open<T, Out>(
  deps: LiveDeps,
  args: FilterArgs,
  slots: ConnectionSlots | undefined,
  weigh: (item: T) => number,
  take: (item: T, dropped: number) => Out,
  deliver: Opened<T>['deliver'],
): Promise<BoundedQueue<T, Out>> {
  const hub = deps.hub;
  if (hub === undefined) {
    throw new NexusError(
      'BAD_REQUEST',
      'subscriptions are not available: this gateway has no live feed',
    );
  }
  const filter = liveFilterOf(args);
  if (slots !== undefined && slots.active >= deps.limits.maxSubscriptions) {
    throw new NexusError(
      'BAD_REQUEST',
      `too many subscriptions on this connection (at most ${deps.limits.maxSubscriptions})`,
    );
  }
  await deps.units.refresh();
  let warned = false;
  const queue = new BoundedQueue<T, Out>(LIVE_BUFFER_READINGS, weigh, take, () => {
    stop();
    if (slots !== undefined) slots.active--;
    if (queue.dropped > 0)
      deps.log.info(
        { dropped: queue.dropped, filter },
        'GraphQL subscription ended; readings were dropped',
      );
  });
  if (slots !== undefined) slots.active++;
  // Declared after the queue: its onClose runs only once the consumer ends the stream.
  const stop = hub.add({
    filter,
    missed: (n) => queue.skip(n),
    deliver: (d) => {
      deliver(d, (item) => queue.push(item));
      if (queue.dropped > 0 && !warned) {
        warned = true;
        deps.log.warn(
          { filter, capacity: LIVE_BUFFER_READINGS },
          'GraphQL subscriber too slow: dropping its oldest readings',
        );
      }
    },
  });
  return queue;
}

interface Single {
  readonly cluster_id: string;
  readonly record: FeedRecord;
}

/** Subscription.telemetry: one event per reading. */
export function readingStream(
  deps: LiveDeps,
  args: FilterArgs,
  slots: ConnectionSlots | undefined,
): Promise<BoundedQueue<Single, ReadingNode>> {
  return open<Single, ReadingNode>(
    deps,
    args,
    slots,
    () => 1,
    (s) => readingNode(s.cluster_id, s.record, deps.units),
    (d, push) => {
      for (const record of d.records) push({ cluster_id: d.cluster_id, record });
    },
  );
}

/** Subscription.telemetryBatch: one event per committed batch (its matching readings). */
export function batchStream(
  deps: LiveDeps,
  args: FilterArgs,
  slots: ConnectionSlots | undefined,
): Promise<BoundedQueue<LiveDelivery, BatchNode>> {
  return open<LiveDelivery, BatchNode>(
    deps,
    args,
    slots,
    (d) => d.records.length,
    (d, dropped) => ({
      cluster_id: d.cluster_id,
      committed_at: iso(d.committed_at) ?? '',
      readings: d.records.map((r) => readingNode(d.cluster_id, r, deps.units)),
      count: d.records.length,
      dropped,
    }),
    (d, push) => push(d),
  );
}
