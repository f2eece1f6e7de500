import type { Logger } from '../../core/logger.js';
import { metricNameForms } from '../../core/dcgm-fields.js';
import type { NexusMetrics } from '../../core/metrics.js';
import type { FeedBatch, FeedRecord, LiveFeed } from '../../registry/feed.js';
import { apiReading } from '../presenters.js';

/** What a live subscriber wants. Absent fields match everything. */
export interface LiveFilter {
  readonly cluster_id?: string;
  readonly host_id?: readonly string[];
  readonly gpu_id?: readonly number[];
  readonly uuid?: readonly string[];
  readonly metric?: readonly string[];
  /**
   * MIG GPU instance ids (-1: the whole GPU's own readings). Absent: whole GPUs only, as a REST
   * query without gpu_instance.
   */
  readonly gpu_instance?: readonly number[];
}

export interface LiveDelivery {
  readonly cluster_id: string;
  readonly committed_at: number;
  readonly records: readonly FeedRecord[];
}

/** Most readings in one delivery: a larger committed batch reaches subscribers in parts. */
export const MAX_DELIVERY_READINGS = 2000;

/**
 * One delivery's encodings, made once and shared by every subscriber of the filter: the JSON
 * array of API readings, and whatever else a transport derives from it (`shared`), such as the
 * bytes of a whole message, so that a thousand subscribers of one filter hold one copy.
 */
export class DeliveryEncoding {
  private json: string | undefined;
  private readonly made = new Map<string, unknown>();

  constructor(private readonly delivery: LiveDelivery) {}

  readingsJson(): string {
    this.json ??= JSON.stringify(
      this.delivery.records.map((r) => apiReading(this.delivery.cluster_id, r)),
    );
    return this.json;
  }

  shared<T>(key: string, make: () => T): T {
    if (this.made.has(key)) return this.made.get(key) as T;
    const v = make();
    this.made.set(key, v);
    return v;
  }
}

export interface LiveSubscriber {
  readonly filter: LiveFilter;
  /**
   * Called with the matching records of each committed batch (never with none), in parts of at
   * most MAX_DELIVERY_READINGS; `encoding` is shared by all subscribers of the filter.
   */
  deliver(batch: LiveDelivery, encoding: DeliveryEncoding): void;
  /** Told of readings it missed because the gateway could not fan them out in time. */
  missed?(count: number): void;
}

/** Fan-out work done in one turn of the event loop before yielding to other work (ms). */
const SLICE_MS = 8;
/** Deliveries waiting to be fanned out; beyond, the oldest are dropped (and counted). */
const MAX_PENDING_DELIVERIES = 64;

interface FanOut {
  readonly delivery: LiveDelivery;
  readonly encoding: DeliveryEncoding;
  readonly members: readonly LiveSubscriber[];
  next: number;
}

interface Group {
  readonly filter: LiveFilter;
  readonly match: (clusterId: string, r: FeedRecord) => boolean;
  readonly members: Set<LiveSubscriber>;
}

/** A canonical key: subscribers with equal filters share the matching work and the encoding. */
export function filterKey(f: LiveFilter): string {
  const sorted = <T>(xs: readonly T[] | undefined): T[] | null =>
    xs === undefined ? null : [...xs].sort();
  return JSON.stringify([
    f.cluster_id ?? null,
    sorted(f.host_id),
    sorted(f.gpu_id),
    sorted(f.uuid),
    sorted(f.metric),
    sorted(f.gpu_instance),
  ]);
}

/** Whether a reading of the feed matches a live filter (exported for its tests). */
export function matcher(f: LiveFilter): (clusterId: string, r: FeedRecord) => boolean {
  const hosts = f.host_id === undefined ? undefined : new Set(f.host_id);
  const gpus = f.gpu_id === undefined ? undefined : new Set(f.gpu_id);
  const uuids = f.uuid === undefined ? undefined : new Set(f.uuid);
  const metrics = f.metric === undefined ? undefined : new Set(f.metric.flatMap(metricNameForms));
  // Whole GPUs' readings only, unless the filter names MIG instances (as REST's gpu_instance).
  const instances = f.gpu_instance === undefined ? undefined : new Set(f.gpu_instance);
  return (clusterId, r) =>
    (instances === undefined
      ? r.gpu_instance_id === undefined
      : instances.has(r.gpu_instance_id ?? -1)) &&
    (f.cluster_id === undefined || f.cluster_id === clusterId) &&
    (hosts === undefined || hosts.has(r.hostname)) &&
    (gpus === undefined || gpus.has(r.gpu)) &&
    (uuids === undefined || (r.uuid !== undefined && uuids.has(r.uuid))) &&
    (metrics === undefined || metrics.has(r.metric));
}

/**
 * Fans the commit feed out to live subscribers (WebSocket and GraphQL). One feed subscription per
 * gateway; subscribers with the same filter form a group, matched and encoded once per batch.
 */
export class LiveHub {
  private readonly groups = new Map<string, Group>();
  private readonly pending: FanOut[] = [];
  private pumping = false;
  private pumpScheduled = false;
  private unsubscribe: (() => Promise<void>) | undefined;
  private starting: Promise<void> | undefined;
  batches = 0;
  records = 0;
  /** Readings per second over the last minute, in 5-second slots. */
  private readonly slots = new Array<number>(12).fill(0);
  private slotAt = 0;

  constructor(
    private readonly feed: LiveFeed,
    private readonly logger: Logger,
    private readonly metrics?: NexusMetrics,
  ) {}

  /** Subscribes to the feed (idempotent). */
  start(): Promise<void> {
    this.starting ??= this.feed
      .subscribe('*', (b) => this.dispatch(b))
      .then((stop) => {
        this.unsubscribe = stop;
      });
    return this.starting;
  }

  get subscribers(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.members.size;
    return n;
  }

  add(sub: LiveSubscriber): () => void {
    const key = filterKey(sub.filter);
    let g = this.groups.get(key);
    if (g === undefined) {
      g = { filter: sub.filter, match: matcher(sub.filter), members: new Set() };
      this.groups.set(key, g);
    }
    g.members.add(sub);
    const group = g;
    return () => {
      group.members.delete(sub);
      if (group.members.size === 0) this.groups.delete(key);
    };
  }

  private advance(now: number): void {
    const slot = Math.floor(now / 5000);
    if (this.slotAt === 0) this.slotAt = slot;
    for (let s = this.slotAt + 1; s <= Math.min(slot, this.slotAt + 12); s++)
      this.slots[s % 12] = 0;
    this.slotAt = Math.max(this.slotAt, slot);
  }

  /** Readings committed per second, averaged over the last minute. */
  rate(now = Date.now()): number {
    this.advance(now);
    return this.slots.reduce((a, b) => a + b, 0) / 60;
  }

  private dispatch(batch: FeedBatch): void {
    this.batches++;
    this.records += batch.records.length;
    this.metrics?.liveReadings.inc(batch.records.length);
    const now = Date.now();
    this.advance(now);
    const i = Math.floor(now / 5000) % 12;
    this.slots[i] = (this.slots[i] ?? 0) + batch.records.length;
    for (const g of this.groups.values()) {
      const matching = batch.records.filter((r) => g.match(batch.cluster_id, r));
      for (let i = 0; i < matching.length; i += MAX_DELIVERY_READINGS) {
        const delivery: LiveDelivery = {
          cluster_id: batch.cluster_id,
          committed_at: batch.committed_at,
          records:
            matching.length <= MAX_DELIVERY_READINGS
              ? matching
              : matching.slice(i, i + MAX_DELIVERY_READINGS),
        };
        this.pending.push({
          delivery,
          encoding: new DeliveryEncoding(delivery),
          members: [...g.members],
          next: 0,
        });
      }
    }
    while (this.pending.length > MAX_PENDING_DELIVERIES) {
      const old = this.pending.shift();
      if (old === undefined) break;
      const n = old.delivery.records.length;
      for (let k = old.next; k < old.members.length; k++) old.members[k]?.missed?.(n);
    }
    this.pump();
  }

  /**
   * Fans the pending deliveries out, in slices of SLICE_MS: writing one message to a thousand
   * sockets can take a second of CPU (the kernel copies it a thousand times), and health checks
   * and API requests must not wait behind it.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const started = performance.now();
    try {
      let count = 0;
      for (;;) {
        const job = this.pending[0];
        if (job === undefined) return;
        const m = job.members[job.next++];
        if (job.next >= job.members.length) this.pending.shift();
        if (m !== undefined) {
          try {
            m.deliver(job.delivery, job.encoding);
          } catch (err) {
            this.logger.warn({ err }, 'live subscriber failed');
          }
        }
        if (++count % 16 === 0 && performance.now() - started > SLICE_MS) {
          if (!this.pumpScheduled) {
            this.pumpScheduled = true;
            setImmediate(() => {
              this.pumpScheduled = false;
              this.pump();
            });
          }
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    await this.unsubscribe?.();
    this.groups.clear();
    this.pending.length = 0;
  }
}
