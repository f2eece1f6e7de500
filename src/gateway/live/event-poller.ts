import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { EventType, GpuEvent } from '../../store/event-reads.js';
import type { TelemetryReader } from '../../store/reader.js';

/** What an events subscription asks for (absent: any). */
export interface EventFilter {
  readonly cluster_id?: string;
  readonly types?: readonly EventType[];
  readonly host_id?: readonly string[];
  readonly gpu_id?: readonly number[];
}

export function eventMatches(f: EventFilter, e: GpuEvent): boolean {
  return (
    (f.cluster_id === undefined || f.cluster_id === e.cluster_id) &&
    (f.types === undefined || f.types.includes(e.type)) &&
    (f.host_id === undefined || f.host_id.includes(e.host_id)) &&
    (f.gpu_id === undefined || f.gpu_id.includes(e.gpu_id))
  );
}

export interface EventPollerOptions {
  /** How often the events table is read (ms). */
  readonly intervalMs: number;
  /**
   * How far back each poll reads again (ms): an event stamped by a transaction that committed
   * later than a poll is still seen by the next ones, within this window.
   */
  readonly overlapMs: number;
  /** Events read per statement (a poll reads pages until it has them all). */
  readonly pageSize: number;
  /** Ids remembered to drop the overlap's repeats (the oldest go first beyond it). */
  readonly maxRemembered: number;
  readonly logger: Logger;
}

export const EVENT_POLLER_DEFAULTS = {
  intervalMs: 2000,
  overlapMs: 60_000,
  pageSize: 1000,
  maxRemembered: 100_000,
} as const;

/**
 * The gateway's live feed of GPU events (docs/fleet.md, "Events"): the collectors record events in
 * the database, and every gateway polls the events table, so that it works embedded and
 * distributed, with any number of gateways. Ids are assigned at insert and become visible at
 * commit, in another order: each poll reads again from `overlapMs` before the database time of
 * the previous one and drops the ids it has delivered (bounded). Runs only while someone listens.
 */
export class EventPoller {
  private readonly listeners = new Set<(e: GpuEvent) => void>();
  /** id -> recorded_at of the events delivered. */
  private readonly seen = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  /** Database time of the previous poll; undefined until the first. */
  private lastNow: number | undefined;
  private running: Promise<void> | undefined;
  private failures = 0;
  /** Counts stop()s: a poll started before the last one is void. */
  private generation = 0;
  /** When the first listener came (this process's clock): the first poll delivers from there. */
  private startedAt = 0;

  constructor(
    private readonly reader: Pick<TelemetryReader, 'events'>,
    private readonly o: EventPollerOptions,
  ) {}

  /** Listens to events recorded from now on; returns the function that stops it. */
  add(listener: (e: GpuEvent) => void): () => void {
    this.listeners.add(listener);
    if (this.timer === undefined) {
      this.startedAt = Date.now();
      this.timer = setInterval(() => void this.poll(), this.o.intervalMs);
      this.timer.unref();
      void this.poll();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  get listening(): number {
    return this.listeners.size;
  }

  /** One poll (concurrent calls share it): what is new since the previous one, delivered. */
  poll(): Promise<void> {
    if (this.running === undefined) {
      const run: Promise<void> = this.pollOnce().finally(() => {
        if (this.running === run) this.running = undefined;
      });
      this.running = run;
    }
    return this.running;
  }

  private async pollOnce(): Promise<void> {
    // A poll that outlives stop() (the last listener left while it read) delivers nothing and
    // leaves the state alone: listeners that come next start afresh.
    const generation = this.generation;
    try {
      const first = this.lastNow === undefined;
      let since = (first ? this.startedAt : (this.lastNow ?? 0)) - this.o.overlapMs;
      let afterId = '0';
      let now: number | undefined;
      for (let page = 0; page < 1000; page++) {
        const res = await this.reader.events.recordedSince(since, afterId, this.o.pageSize);
        if (generation !== this.generation) return;
        now ??= res.now;
        for (const { event, recorded } of res.events) {
          if (this.seen.has(event.id)) continue;
          this.seen.set(event.id, recorded);
          // The first poll delivers what was recorded since the first listener came.
          if (!first || recorded >= this.startedAt) for (const l of this.listeners) l(event);
        }
        const last = res.events.at(-1);
        if (!res.more || last === undefined) break;
        since = last.recorded;
        afterId = last.event.id;
      }
      if (now !== undefined) this.lastNow = now;
      this.forget();
      if (this.failures > 0) this.o.logger.info('event poll back');
      this.failures = 0;
    } catch (err) {
      if (generation !== this.generation) return;
      this.failures++;
      if (this.failures === 1 || this.failures % 30 === 0)
        this.o.logger.warn(
          { err: describeError(err), failures: this.failures },
          'reading new GPU events failed; the next poll retries (nothing is skipped within the overlap)',
        );
    }
  }

  /** Drops ids older than the overlap (no poll reads them again), and the oldest beyond the cap. */
  private forget(): void {
    const horizon = (this.lastNow ?? 0) - 2 * this.o.overlapMs;
    for (const [id, recorded] of this.seen) {
      if (recorded < horizon || this.seen.size > this.o.maxRemembered) this.seen.delete(id);
      else break; // insertion order is (about) recorded order
    }
  }

  stop(): void {
    this.generation++;
    this.running = undefined;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.lastNow = undefined;
    this.seen.clear();
  }
}
