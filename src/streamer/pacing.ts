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

export interface BackpressureOptions {
  readonly queue: Pick<Queue, 'depth'>;
  /** MAX_QUEUE_DEPTH. */
  readonly maxQueueDepth: number;
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
 * read plus every publish sent since.
 */
export class Backpressure {
  /** Queue depth as last read, plus what was published since (in flight included). */
  private depthEstimate = 0;
  /** Publishes sent and not yet answered: a depth read may not include them yet. */
  private publishing = 0;
  private lastDepthCheck = 0;
  private pausedWhy: string | undefined;
  private waited = 0;

  constructor(private readonly o: BackpressureOptions) {}

  /** Why publishing is paused, while it is. */
  get paused(): string | undefined {
    return this.pausedWhy;
  }

  /** How long publishing waited for a full queue, in all (ms). */
  get waitedMs(): number {
    return this.waited;
  }

  /** A publish was sent: it counts in the depth from now on, and is in flight until answered. */
  sent(): void {
    this.depthEstimate++;
    this.publishing++;
  }

  /** A publish was answered (or failed). */
  answered(): void {
    this.publishing--;
  }

  /** Waits while the queue is at MAX_QUEUE_DEPTH. */
  async wait(): Promise<void> {
    const o = this.o;
    const max = o.maxQueueDepth;
    const now = Date.now();
    if (this.depthEstimate < max && now - this.lastDepthCheck < DEPTH_CHECK_MS) return;
    try {
      this.depthEstimate = await o.untilAnswered('read the queue depth', () => this.readDepth());
    } catch (err) {
      // Stopping with the queue unreachable: publishing what was read will try, and say so.
      if (o.stopping()) return;
      throw err;
    }
    this.lastDepthCheck = now;
    if (this.depthEstimate < max) return;
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

  /** The queue depth counting publishes still in flight. */
  private async readDepth(): Promise<number> {
    const inFlight = this.publishing;
    const depth = await this.o.queue.depth();
    return depth + Math.min(inFlight, this.publishing);
  }
}
