import type { BackoffPolicy } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import { Outage } from '../core/outage.js';
import type { Queue } from '../queue/types.js';

/**
 * Calls the queue until it answers. Once the streamer is stopping, it gives up after
 * `attemptsWhenStopping` more attempts (0: none, and a stop ends a backoff wait at once).
 */
export type UntilAnswered = <T>(
  what: string,
  fn: () => Promise<T>,
  attemptsWhenStopping?: number,
) => Promise<T>;

export interface QueueOutageOptions {
  readonly queue: Pick<Queue, 'backend'>;
  readonly logger: Logger;
  /** Default src/core/outage.ts OUTAGE_BACKOFF. */
  readonly backoff?: BackoffPolicy | undefined;
  readonly metrics?: NexusMetrics | undefined;
  /** Called when an outage begins and when it ends. */
  readonly onChange: () => void;
  /** True once the streamer is stopping. */
  readonly stopping: () => boolean;
  /** Aborted when the streamer stops. */
  readonly signal: AbortSignal;
}

/**
 * The queue's outages as the streamer sees them. Every call the streamer makes to the queue
 * (opening the stream, the checkpoint, the depth read for backpressure, each publish) goes through
 * `untilAnswered`: an outage is waited out with the backoff of src/core/backoff.ts (through
 * src/core/outage.ts, logged once when it begins and once when it ends), never a failure of the
 * run.
 */
export class QueueOutage {
  private readonly outage: Outage;

  constructor(private readonly o: QueueOutageOptions) {
    const metrics = o.metrics;
    this.outage = new Outage({
      dependency: o.queue.backend === 'etcd' ? 'etcd' : 'queue',
      logger: o.logger,
      ...(o.backoff === undefined ? {} : { backoff: o.backoff }),
      onFailure: () => metrics?.etcdErrors.inc({ component: 'streamer' }),
      onChange: (down) => {
        metrics?.queueUnavailable.set(down ? 1 : 0);
        o.onChange();
      },
    });
  }

  /** True while the queue is unreachable. */
  get down(): boolean {
    return this.outage.down;
  }

  /** What the streamer is waiting for, while the queue is unreachable (for /readyz). */
  get reason(): string | undefined {
    return this.outage.reason;
  }

  readonly untilAnswered: UntilAnswered = <T>(
    what: string,
    fn: () => Promise<T>,
    attemptsWhenStopping = 0,
  ): Promise<T> =>
    this.outage.retry(what, fn, {
      giveUp: (attempt) => this.o.stopping() && attempt > attemptsWhenStopping,
      // With no tries left once stopping, a stop ends the wait at once.
      ...(attemptsWhenStopping === 0 ? { signal: this.o.signal } : {}),
    });
}
