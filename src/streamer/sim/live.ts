/**
 * The simulated fleet, live (`nexus up` without a CSV): the fleet model's readings of each
 * interval, stamped with the time they are made, published into the queue through
 * RecordPublisher (the streamer's envelope, no checkpoints: a simulation is not re-read).
 *
 * - The model's clock is the wall clock: an instant is made when its time comes, so readings
 *   arrive with live timestamps and the energy counter integrates real seconds. Jobs and incidents
 *   run `speed` times faster (docs/fleet.md, "The simulated fleet").
 * - Backpressure: while the queue holds `maxDepth` messages or more an instant is not published
 *   (counted as skipped, as a scrape is); the model still advances, so its counters carry on.
 * - Late (the process was stopped, or the event loop stalled): the instants missed are made and
 *   published in order, at most `maxCatchUp` of them; older ones are skipped.
 * - stop(): no new instant; the publish in flight finishes.
 */
import { describeError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { NexusMetrics } from '../../core/metrics.js';
import type { RecordPublisher } from '../../queue/record-publisher.js';
import { FleetModel, describeFleet, type FleetOptions } from './fleet.js';

export interface LiveFleetOptions {
  readonly fleet: FleetOptions;
  readonly publisher: RecordPublisher;
  readonly logger: Logger;
  readonly metrics?: NexusMetrics | undefined;
  /** Instants published to catch up after a stall (older ones are skipped). Default 30. */
  readonly maxCatchUp?: number;
  /** The clock (tests). */
  readonly now?: () => number;
}

export interface LiveFleetStats {
  readonly instants: number;
  readonly published: number;
  readonly skipped: number;
  readonly records: number;
}

export class LiveFleet {
  readonly model: FleetModel;
  readonly description: string;
  private readonly state = { stopped: false };
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private running: Promise<void> | undefined;
  private counts = { instants: 0, published: 0, skipped: 0, records: 0 };

  constructor(private readonly o: LiveFleetOptions) {
    this.model = new FleetModel(o.fleet);
    this.description = describeFleet(o.fleet);
  }

  get stats(): LiveFleetStats {
    return { ...this.counts };
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      this.o.logger.error({ err: describeError(err) }, 'simulated fleet stopped');
    });
  }

  async stop(): Promise<void> {
    this.state.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.wake?.();
    await this.running;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private sleepUntil(t: number): Promise<void> {
    const ms = t - this.now();
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  private async loop(): Promise<void> {
    const maxCatchUp = this.o.maxCatchUp ?? 30;
    const interval = this.o.fleet.intervalMs;
    // Read through a function: stop() changes the flag while the loop awaits.
    const stopped = (): boolean => this.state.stopped;
    while (!stopped()) {
      await this.sleepUntil(this.model.nextTime);
      if (stopped()) return;
      const late = this.now() - this.model.nextTime;
      const records = this.model.next();
      this.counts.instants++;
      if (late > maxCatchUp * interval) {
        this.skip('late');
        continue;
      }
      if (!(await this.o.publisher.room().catch(() => false))) {
        this.skip('backpressure');
        continue;
      }
      try {
        const messages = await this.o.publisher.publish(records, {
          file: 'simulated-fleet',
          firstLine: this.counts.instants,
          lastLine: this.counts.instants,
        });
        this.counts.published++;
        this.counts.records += records.length;
        this.o.metrics?.recordsPublished.inc(records.length);
        this.o.metrics?.batchesPublished.inc(messages);
        this.o.metrics?.simulatedInstants.inc({ result: 'published' });
        this.o.metrics?.backpressure.set(0);
      } catch (err) {
        // The queue refused (an outage): this instant is lost, the next one is tried.
        this.o.metrics?.publishErrors.inc();
        this.skip('error');
        this.o.logger.warn(
          { err: describeError(err) },
          'simulated fleet: an instant not published',
        );
      }
    }
  }

  private skip(reason: 'late' | 'backpressure' | 'error'): void {
    this.counts.skipped++;
    this.o.metrics?.simulatedInstants.inc({ result: `skipped_${reason}` });
    if (reason === 'backpressure') this.o.metrics?.backpressure.set(1);
  }
}
