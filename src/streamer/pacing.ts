import { sleep } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import type { Queue } from '../queue/types.js';
import type { UntilAnswered } from './queue-outage.js';

/** Spaces publishes STREAM_INTERVAL apart (0: as fast as the queue takes them). */
export class Pacer {
  private nextSendAt = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly signal: AbortSignal,
  ) {}

  /** Waits for the next publish's turn. */
  async wait(): Promise<void> {
    if (this.intervalMs <= 0) return;
    const now = Date.now();
    if (this.nextSendAt > now) await sleep(this.nextSendAt - now, this.signal);
    this.nextSendAt = Math.max(now, this.nextSendAt) + this.intervalMs;
  }
}

/** While the queue is full, its depth is read this often until consumers have made room. */
const FULL_QUEUE_POLL_MS = 250;

/** The queue depth is read at least this often while it is below MAX_QUEUE_DEPTH. */
const DEPTH_CHECK_MS = 1000;

/** While etcd's space is short, it is read this often until there is room again. */
const SPACE_POLL_MS = 1000;

/**
 * etcd commits its writes to disk in batches (every 100 ms by default): the in-use figure it
 * reports may not count what it answered this long ago.
 */
const COMMIT_LAG_MS = 250;

/** Publishing pauses at this share of ETCD_QUOTA_BYTES in use, and resumes below RESUME. */
export const SPACE_PAUSE_RATIO = 0.8;
const SPACE_RESUME_RATIO = 0.75;

/** The space of the queue's store (etcd): what it holds and the alarms it raised. */
export interface QueueSpace {
  /** ETCD_QUOTA_BYTES (0: only alarms pause publishing). */
  readonly quotaBytes: number;
  /** Bytes in use (dbSizeInUse), the database's size (dbSize) and the alarms raised ("NOSPACE"). */
  read(): Promise<{ inUse: number; dbSize: number; alarms: readonly string[] }>;
}

export interface BackpressureOptions {
  readonly queue: Pick<Queue, 'depth'>;
  /** MAX_QUEUE_DEPTH. */
  readonly maxQueueDepth: number;
  /** etcd's space, read with the depth: publishing waits while it is short. */
  readonly space?: QueueSpace | undefined;
  readonly untilAnswered: UntilAnswered;
  /** True once the streamer is stopping. */
  readonly stopping: () => boolean;
  /** Aborted when the streamer stops. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics?: NexusMetrics | undefined;
  /** Called when a wait for a full queue begins, and at each look while it lasts. */
  readonly onChange: () => void;
}

/**
 * Keeps the queue under MAX_QUEUE_DEPTH: before each publish, waits while the queue is full, until
 * consumers have brought it down to 90% of it. Between reads, the depth is estimated: the last
 * read plus every publish sent since. With `space` (etcd), it also waits, at each depth read,
 * while etcd's database in use is at 80% of ETCD_QUOTA_BYTES or above (until compaction brings it
 * under 75%) or an etcd alarm (NOSPACE) is raised: a count of messages cannot keep a small quota
 * safe, whatever the messages weigh and however much history etcd keeps.
 */
export class Backpressure {
  /** Queue depth as last read, plus what was published since (in flight included). */
  private depthEstimate = 0;
  /** Publishes sent and not yet answered: a depth read may not include them yet. */
  private publishing = 0;
  private lastDepthCheck = 0;
  private pausedWhy: string | undefined;
  private alarmedWhy: string | undefined;
  private waited = 0;
  /** etcd's space: when it was last read, what was in use, publishes sent since. */
  private lastSpaceCheck = 0;
  private lastInUse = 0;
  private sinceSpaceCheck = 0;
  /** The growth of etcd's in-use bytes per publish (a moving average). */
  private growthPerPublish: number | undefined;
  /** Publishes sent in all, and where the growth per publish was last measured from. */
  private totalSent = 0;
  private growthBase: { at: number; used: number; sent: number } | undefined;
  /** When recent publishes were answered: etcd's in-use figure may not count them yet. */
  private answeredAt: number[] = [];

  constructor(private readonly o: BackpressureOptions) {}

  /** Why publishing is paused, while it is. */
  get paused(): string | undefined {
    return this.pausedWhy;
  }

  /** Why publishing is paused, while it is because etcd raised an alarm (for /readyz). */
  get alarmed(): string | undefined {
    return this.alarmedWhy;
  }

  /** How long publishing waited for a full queue, in all (ms). */
  get waitedMs(): number {
    return this.waited;
  }

  /** A publish was sent: it counts in the depth from now on, and is in flight until answered. */
  sent(): void {
    this.depthEstimate++;
    this.publishing++;
    this.sinceSpaceCheck++;
    this.totalSent++;
  }

  /** A publish was answered (or failed). */
  answered(): void {
    this.publishing--;
    if (this.o.space === undefined) return;
    const now = Date.now();
    this.answeredAt.push(now);
    if (this.answeredAt.length > 4096) this.answeredAt = this.recentlyAnswered(now);
  }

  /** When the publishes answered within the last COMMIT_LAG_MS were answered. */
  private recentlyAnswered(now: number): number[] {
    return this.answeredAt.filter((t) => now - t < COMMIT_LAG_MS);
  }

  /** Waits while the queue is at MAX_QUEUE_DEPTH. */
  async wait(): Promise<void> {
    const o = this.o;
    const max = o.maxQueueDepth;
    const now = Date.now();
    if (this.depthEstimate >= max || now - this.lastDepthCheck >= DEPTH_CHECK_MS) {
      try {
        this.depthEstimate = await o.untilAnswered('read the queue depth', () => this.readDepth());
      } catch (err) {
        // Stopping with the queue unreachable: publishing what was read will try, and say so.
        if (o.stopping()) return;
        throw err;
      }
      this.lastDepthCheck = now;
      if (this.depthEstimate >= max) await this.waitForConsumers();
    }
    if (this.spaceDue(Date.now())) await this.waitForSpace();
  }

  /**
   * Whether etcd's space is to be read before this publish: every second, and sooner when the
   * publishes since the last read may have brought it near the pause (at the largest growth per
   * publish seen so far; every 8 publishes until one is seen).
   */
  private spaceDue(now: number): boolean {
    const space = this.o.space;
    if (space === undefined) return false;
    if (now - this.lastSpaceCheck >= SPACE_POLL_MS) return true;
    if (this.growthPerPublish === undefined) return this.sinceSpaceCheck >= 8;
    const projected = this.lastInUse + this.growthPerPublish * this.sinceSpaceCheck;
    return projected >= space.quotaBytes * SPACE_PAUSE_RATIO * 0.9;
  }

  /** Waits while the queue holds MAX_QUEUE_DEPTH, until it is down to 90% of it. */
  private async waitForConsumers(): Promise<void> {
    const o = this.o;
    const max = o.maxQueueDepth;
    const t0 = Date.now();
    this.pausedWhy = `queue full (${this.depthEstimate} >= MAX_QUEUE_DEPTH ${max})`;
    o.metrics?.backpressure.set(1);
    o.logger.info(
      { depth: this.depthEstimate, max_queue_depth: max },
      'queue is full; waiting for consumers',
    );
    o.onChange();
    const resumeAt = Math.max(0, Math.floor(max * 0.9));
    while (!o.stopping()) {
      await sleep(FULL_QUEUE_POLL_MS, o.signal);
      try {
        this.depthEstimate = await o.untilAnswered('read the queue depth', () => this.readDepth());
      } catch {
        break; // stopping
      }
      this.lastDepthCheck = Date.now();
      if (this.depthEstimate <= resumeAt) break;
      o.onChange();
    }
    this.waited += Date.now() - t0;
    this.pausedWhy = undefined;
    o.metrics?.backpressure.set(0);
    o.logger.info(
      { depth: this.depthEstimate, waited_ms: Date.now() - t0 },
      'queue drained; resuming',
    );
  }

  /** etcd's space, or undefined when it cannot be read now (an outage: the depth read waits). */
  private async readSpace(): Promise<
    { inUse: number; read: number; file: number; alarms: readonly string[] } | undefined
  > {
    const started = Date.now();
    this.answeredAt = this.recentlyAnswered(started);
    // Publishes in flight, or answered within etcd's commit interval, may not be in the reading.
    const unlanded = this.publishing + this.answeredAt.length;
    const sent = this.totalSent;
    let s;
    try {
      s = await this.o.space?.read();
    } catch {
      return undefined;
    }
    if (s === undefined) return undefined;
    // What etcd's quota counts is the database file (dbSize); what compaction frees is in use.
    const used = Math.max(s.dbSize, s.inUse);
    // Growth per publish, over half a second at least (etcd's figures move at each commit).
    if (this.growthBase === undefined) {
      this.growthBase = { at: started, used, sent };
    } else if (started - this.growthBase.at >= 500 && sent - this.growthBase.sent >= 8) {
      const growth = Math.max(0, used - this.growthBase.used) / (sent - this.growthBase.sent);
      this.growthPerPublish =
        this.growthPerPublish === undefined ? growth : 0.5 * this.growthPerPublish + 0.5 * growth;
      this.growthBase = { at: started, used, sent };
    }
    this.lastSpaceCheck = Date.now();
    this.lastInUse = used;
    this.sinceSpaceCheck = Math.max(0, unlanded);
    // What is used once those land too.
    return {
      inUse: used + (this.growthPerPublish ?? 0) * unlanded,
      read: s.inUse,
      file: s.dbSize,
      alarms: s.alarms,
    };
  }

  /** Why etcd's space stops publishing, or undefined when there is room. */
  private shortOfSpace(
    s: { inUse: number; read: number; file: number; alarms: readonly string[] },
    limit: number,
  ): string | undefined {
    if (s.alarms.length > 0) return `etcd alarm ${s.alarms.join(', ')} raised`;
    const quota = this.o.space?.quotaBytes ?? 0;
    if (quota > 0 && s.inUse >= limit) {
      const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`;
      // Which figure is large says what helps: a large file with little in use needs only a
      // defragmentation; much in use needs compaction (or consumers) first.
      return `etcd database ${mb(s.inUse)} (file ${mb(s.file)}, in use ${mb(s.read)}), ${Math.round((s.inUse / quota) * 100)}% of ETCD_QUOTA_BYTES ${mb(quota)} (pauses at ${Math.round(SPACE_PAUSE_RATIO * 100)}%)`;
    }
    return undefined;
  }

  /**
   * Waits while etcd is short of space: an alarm raised, or its database in use at 80% of
   * ETCD_QUOTA_BYTES; resumes once the alarms are disarmed and it is under 75% (compaction frees
   * what consumers deleted). etcd unreachable meanwhile: still waiting.
   */
  private async waitForSpace(): Promise<void> {
    const o = this.o;
    if (o.space === undefined || o.stopping()) return;
    const quota = o.space.quotaBytes;
    const first = await this.readSpace();
    let why = first === undefined ? undefined : this.shortOfSpace(first, quota * SPACE_PAUSE_RATIO);
    if (why === undefined) return;
    // Resume once compaction has freed room: under 75%.
    const resumeBelow = quota * SPACE_RESUME_RATIO;
    const t0 = Date.now();
    const pause = (reason: string, alarms: readonly string[]): void => {
      const runbook = alarms.includes('NOSPACE') ? 'The NOSPACE alarm' : 'Quota sizing';
      this.pausedWhy = `${reason}: waiting for space (docs/operations.md "${runbook}")`;
      this.alarmedWhy = alarms.length > 0 ? this.pausedWhy : undefined;
    };
    pause(why, first?.alarms ?? []);
    o.metrics?.backpressure.set(1);
    o.logger.warn(
      { in_use: first?.inUse, quota: o.space.quotaBytes, alarms: first?.alarms },
      `${why}: publishing paused until etcd has room (compaction and defragmentation: docs/operations.md "Quota sizing")`,
    );
    o.onChange();
    while (!o.stopping()) {
      await sleep(SPACE_POLL_MS, o.signal);
      const now = await this.readSpace();
      if (now === undefined) continue;
      why = this.shortOfSpace(now, resumeBelow);
      if (why === undefined) break;
      pause(why, now.alarms);
      o.onChange();
    }
    this.waited += Date.now() - t0;
    this.pausedWhy = undefined;
    this.alarmedWhy = undefined;
    o.metrics?.backpressure.set(0);
    o.logger.info({ waited_ms: Date.now() - t0 }, 'etcd has room again; resuming');
  }

  /** The queue depth counting publishes still in flight. */
  private async readDepth(): Promise<number> {
    const inFlight = this.publishing;
    const depth = await this.o.queue.depth();
    return depth + Math.min(inFlight, this.publishing);
  }
}
