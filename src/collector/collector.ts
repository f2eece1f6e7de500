import { SpanStatusCode } from '@opentelemetry/api';
import { sleep, type BackoffPolicy } from '../core/backoff.js';
import { NexusError, concernOf, describeError, isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import { OUTAGE_BACKOFF, Outage, isRetryable, type RetryOptions } from '../core/outage.js';
import type { TelemetryRecord } from '../core/record.js';
import { ACK_BATCH_MAX, type Consumer, type Delivery, type Queue } from '../queue/types.js';
import type { LiveFeed } from '../registry/feed.js';
import type { FleetRegistry } from '../registry/types.js';
import type { TelemetryStore } from '../store/types.js';
import {
  addRefused,
  checkBatch,
  cleanDeliveries,
  startBatchSpans,
  type Batch,
  type BatchSpans,
} from './batch.js';
import { writeIsolating, type IsolatedWrite } from './isolate.js';

export interface CollectorOptions {
  readonly queue: Queue;
  readonly store: TelemetryStore;
  /** Fleet registry and live values (ENABLE_NEXUS); optional. */
  readonly registry?: FleetRegistry;
  /** The commit feed to the gateways' live subscribers; optional. */
  readonly feed?: LiveFeed;
  readonly clusterId: string;
  /** Batches in flight at once (WORKERS). */
  readonly workers: number;
  /** Messages claimed, written in one transaction and acked together. */
  readonly batchMessages: number;
  /** How long a claim waits for messages before looking around again (POLL_TIMEOUT). */
  readonly pollTimeoutMs: number;
  /** Backoff while PostgreSQL or etcd is unreachable (default OUTAGE_BACKOFF, src/core/outage.ts). */
  readonly outageBackoff?: BackoffPolicy;
  /** Partition creation and retention, this often (0: never). */
  readonly maintenanceIntervalMs: number;
  /**
   * The rollup job (pending readings into the 1-minute rollup and the latest values), this often
   * (ROLLUP_INTERVAL; 0: only when the collector stops). Every collector runs it; one at a time
   * does the work. Not at all when the store folds on write (nothing is ever pending).
   */
  readonly rollupIntervalMs: number;
  /**
   * The sealing job (closed windows into compressed chunks), this often (COMPACT_INTERVAL; 0:
   * never). Every collector runs it; one at a time does the work.
   */
  readonly compactIntervalMs?: number;
  /**
   * The retirement job (stopped/reappeared GPUs, docs/fleet.md), this often (0 or absent: never),
   * with STALE_AFTER. Every collector runs it; one at a time does the work.
   */
  readonly retireIntervalMs?: number;
  readonly staleAfterMs?: number;
  readonly logger: Logger;
  /** Prometheus metrics of this process, if any. */
  readonly metrics?: NexusMetrics;
  /** Called after every committed and acknowledged batch (metrics, live feed). */
  readonly onCommitted?: (info: CommittedBatch) => void;
  /**
   * The queue dies with this process (`nexus up`'s in-process queue): stop() first stores
   * everything the queue holds (its producer must have stopped), instead of leaving it for
   * another collector.
   */
  readonly drainOnStop?: boolean;
}

export interface CommittedBatch {
  readonly deliveries: readonly Delivery[];
  readonly records: readonly TelemetryRecord[];
  /** The records stored for the first time by this batch. */
  readonly fresh: readonly TelemetryRecord[];
  readonly inserted: number;
  readonly duplicates: number;
  readonly rejected: number;
  readonly commitMs: number;
  readonly transactions: number;
}

export interface CollectorStats {
  messages: number;
  records: number;
  inserted: number;
  duplicates: number;
  rejected: number;
  lostAcks: number;
  storeErrors: number;
  queueErrors: number;
}

const always = (): boolean => true;

/** What acking a batch came to: acks lost (claims that had lapsed), messages dead-lettered. */
interface AckCounts {
  readonly lost: number;
  readonly dead: number;
}

/**
 * A failure no wait can fix: the configuration (an etcd role that does not allow what the
 * collector does, ETCD_ACCESS_DENIED). The collector stops on it instead of retrying.
 */
function isFatal(err: unknown): boolean {
  return concernOf(err) === 'config';
}

/**
 * Consumes batches from the queue and stores them (docs/storage.md, "What the collector
 * guarantees"): claim up to `batchMessages` messages, write all their records in one transaction
 * (idempotent on the natural key), ack after the commit and only then. A record the database
 * refuses is isolated by splitting the batch and dead-lettered with the database's reason; its
 * neighbours are stored. While PostgreSQL or etcd is unreachable, each worker holds its batch and
 * retries with exponential backoff (one Outage per dependency, src/core/outage.ts), never
 * dead-lettering for an outage; the collector reports not ready meanwhile and carries on when
 * they return.
 */
export class Collector {
  readonly stats: CollectorStats = {
    messages: 0,
    records: 0,
    inserted: 0,
    duplicates: 0,
    rejected: 0,
    lostAcks: 0,
    storeErrors: 0,
    queueErrors: 0,
  };
  private consumer: Consumer | undefined;
  private readonly abort = new AbortController();
  private workers: Promise<void>[] = [];
  private stopping = false;
  /** stop() was called; with drainOnStop, the workers are storing what is left. */
  private draining = false;
  private stopped: Promise<void> | undefined;
  private migrated = false;
  /** PostgreSQL's outages: migrating and writing wait them out. */
  private readonly storeOutage: Outage;
  /** The queue's (etcd's): connecting, claiming and acking wait them out. */
  private readonly queueOutage: Outage;
  /**
   * Retries whatever fails until the collector stops (a backoff sleep ends early on stop), except
   * a configuration error.
   */
  private readonly untilStop: RetryOptions = {
    signal: this.abort.signal,
    retryIf: (err) => !this.isStopping() && !isFatal(err),
  };

  private maintenanceTimer: NodeJS.Timeout | undefined;
  private rollupLoop: Promise<void> | undefined;
  private rollupFailures = 0;
  private compactLoop: Promise<void> | undefined;
  private compactFailures = 0;
  private retireLoop: Promise<void> | undefined;
  private retireFailures = 0;
  private running: Promise<void> | undefined;
  private readonly logger: Logger;
  /** What stopped the collector on its own (a configuration error), if anything did. */
  private fatal: NexusError | undefined;

  constructor(private readonly o: CollectorOptions) {
    this.logger = o.logger.child({ component: 'collector' });
    const backoff = o.outageBackoff ?? OUTAGE_BACKOFF;
    const down = (what: string): string => `${what} failed; backing off and retrying`;
    this.storeOutage = new Outage({
      dependency: 'PostgreSQL',
      logger: this.logger,
      backoff,
      wording: { down, back: () => 'PostgreSQL back: resuming' },
      onFailure: (err) => {
        this.stats.storeErrors++;
        this.o.metrics?.storeErrors.inc({
          kind: isNexusError(err, 'STORE_REJECTED') ? 'refused' : 'unavailable',
        });
      },
    });
    this.queueOutage = new Outage({
      dependency: 'etcd',
      logger: this.logger,
      backoff,
      wording: { down, back: () => 'etcd back' },
      onFailure: () => {
        this.stats.queueErrors++;
        this.o.metrics?.etcdErrors.inc({ component: 'collector' });
      },
    });
  }

  /** Read through a method: the flag changes while async code awaits. */
  private isStopping(): boolean {
    return this.stopping;
  }

  /** Ready: the schema is current, PostgreSQL and etcd answer, and it is not shutting down. */
  get ready(): boolean {
    return (
      this.migrated &&
      !this.stopping &&
      !this.draining &&
      !this.storeOutage.down &&
      !this.queueOutage.down &&
      this.consumer?.healthy === true
    );
  }

  /** Why it is not ready, for /readyz. */
  get health(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (this.fatal !== undefined) reasons.push(this.fatal.message);
    if (!this.migrated) reasons.push('schema not migrated yet');
    if (this.stopping || this.draining) reasons.push('shutting down');
    for (const outage of [this.storeOutage, this.queueOutage])
      if (outage.reason !== undefined) reasons.push(outage.reason);
    if (this.consumer !== undefined && !this.consumer.healthy) reasons.push('queue session lost');
    return { ready: reasons.length === 0 && this.consumer !== undefined, reasons };
  }

  /** Starts in the background: migrations (retried until the database answers), then the workers. */
  start(): Promise<void> {
    this.running ??= this.run();
    return Promise.resolve();
  }

  /** Resolves when the collector has stopped (after stop(), or on a configuration error). */
  get done(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  /** The configuration error that stopped the collector on its own, if one did. */
  get failure(): NexusError | undefined {
    return this.fatal;
  }

  /**
   * A configuration error (etcd refused this collector's user): retrying cannot help, so it is
   * logged once, loudly, and the collector stops (claims released, batches in flight stored).
   */
  private failed(err: unknown): void {
    if (this.fatal !== undefined || !isNexusError(err)) return;
    this.fatal = err;
    this.logger.error(
      { err: err.message, code: err.code },
      `${err.message}: the collector cannot work this way and stops (a configuration error)`,
    );
    void this.stop();
  }

  private async run(): Promise<void> {
    const migrated = await this.untilUp(this.storeOutage, 'migrate', async () => {
      await this.o.store.migrate();
      return true;
    });
    if (migrated !== true || this.isStopping()) return;
    this.migrated = true;
    const consumer = await this.untilUp(this.queueOutage, 'connect to the queue', () =>
      this.o.queue.consumer({ name: 'collector' }),
    );
    if (this.fatal !== undefined) return;
    this.consumer = consumer;
    if (this.isStopping() || consumer === undefined) return;
    this.logger.info(
      { consumer: consumer.id, workers: this.o.workers, batch_messages: this.o.batchMessages },
      'collector started',
    );
    if (this.o.maintenanceIntervalMs > 0) {
      void this.maintain();
      this.maintenanceTimer = setInterval(() => void this.maintain(), this.o.maintenanceIntervalMs);
      this.maintenanceTimer.unref();
    }
    if (this.o.rollupIntervalMs > 0 && !this.o.store.foldsOnWrite)
      this.rollupLoop = this.rollUpEvery(this.o.rollupIntervalMs);
    if ((this.o.compactIntervalMs ?? 0) > 0)
      this.compactLoop = this.compactEvery(this.o.compactIntervalMs ?? 0);
    if ((this.o.retireIntervalMs ?? 0) > 0 && this.o.staleAfterMs !== undefined)
      this.retireLoop = this.retireEvery(this.o.retireIntervalMs ?? 0, this.o.staleAfterMs);
    this.workers = Array.from({ length: this.o.workers }, (_, i) => this.work(consumer, i));
    await Promise.all(this.workers);
    await consumer
      .close()
      .catch((err: unknown) =>
        this.logger.warn({ err: describeError(err) }, 'closing the consumer failed'),
      );
  }

  /**
   * Runs `fn` until it succeeds, waiting out the dependency's outage whatever the error; gives up
   * (undefined) only on stop.
   */
  private async untilUp<T>(
    outage: Outage,
    what: string,
    fn: () => Promise<T>,
  ): Promise<T | undefined> {
    return outage.retry(what, this.unlessStopping(fn), this.untilStop).catch((err: unknown) => {
      if (isFatal(err)) this.failed(err);
      return undefined;
    });
  }

  /** `fn`, unless the collector is stopping: then SHUTTING_DOWN, which no retry waits out. */
  private unlessStopping<T>(fn: () => Promise<T>): () => Promise<T> {
    return () =>
      this.isStopping()
        ? Promise.reject(new NexusError('SHUTTING_DOWN', 'the collector is stopping'))
        : fn();
  }

  private async work(consumer: Consumer, worker: number): Promise<void> {
    while (!this.stopping) {
      const claimStart = performance.now();
      let deliveries: Delivery[];
      try {
        deliveries = await this.claim(consumer);
      } catch (err) {
        if (isFatal(err)) this.failed(err);
        break; // stopping
      }
      if (deliveries.length === 0) continue;
      await this.process(consumer, deliveries, worker, performance.now() - claimStart);
    }
  }

  /** Claims the next messages, waiting out an etcd outage; throws only once stopping. */
  private claim(consumer: Consumer): Promise<Delivery[]> {
    return this.queueOutage.retry(
      'claim',
      this.unlessStopping(() =>
        consumer.claim(this.o.batchMessages, {
          waitMs: this.o.pollTimeoutMs,
          signal: this.abort.signal,
        }),
      ),
      this.untilStop,
    );
  }

  /**
   * Stores a claimed batch and acks it; returns only when both are done (or, stopping during an
   * outage, with the claims given back).
   */
  private async process(
    consumer: Consumer,
    deliveries: readonly Delivery[],
    worker: number,
    claimMs: number,
  ): Promise<void> {
    const batch = checkBatch(deliveries);
    const m = this.o.metrics;
    m?.recordsConsumed.inc(batch.consumed);
    const redelivered = deliveries.filter((d) => d.attempt > 1).length;
    if (redelivered > 0) m?.messagesRetried.inc(redelivered);
    const spans = startBatchSpans(batch);
    const t0 = performance.now();
    const result = await this.write(batch, spans);
    if (result === undefined) return;
    const commitMs = performance.now() - t0;
    addRefused(batch, result.rejected);
    this.announce(result.fresh);
    const ackStart = performance.now();
    const acked = await this.ack(consumer, batch);
    const ackMs = performance.now() - ackStart;
    for (const sp of spans.consume) sp.end();
    this.account(batch, result, acked, commitMs);
    // The batch ids are the correlation ids the streamer logged when it published them.
    this.logger.debug(
      {
        worker,
        batches: deliveries.map((d) => d.envelope.id),
        lines: deliveries.map((d) =>
          d.envelope.source === undefined
            ? null
            : [d.envelope.source.firstLine, d.envelope.source.lastLine],
        ),
        records: batch.records.length,
        inserted: result.inserted,
        duplicates: result.duplicates,
        refused: result.rejected.length + batch.outOfBounds,
        transactions: result.transactions,
        claim_ms: Math.round(claimMs),
        commit_ms: Math.round(commitMs),
        ack_ms: Math.round(ackMs),
        trace_id: spans.store.spanContext().traceId,
      },
      'batch stored',
    );
  }

  /**
   * Writes the batch, isolating the records the database refuses, while PostgreSQL is down
   * holding the claims (the session lease is kept alive) and retrying. Stopping during an outage,
   * it gives the claims back instead (undefined) so another collector can take them.
   */
  private async write(batch: Batch, spans: BatchSpans): Promise<IsolatedWrite | undefined> {
    let result: IsolatedWrite | undefined;
    try {
      result = await this.storeOutage.retry(
        'store',
        () => writeIsolating((part) => this.o.store.write(this.o.clusterId, part), batch.records),
        {
          signal: this.abort.signal,
          retryIf: always,
          giveUp: (attempt) => this.stopping && attempt > 1,
        },
      );
      spans.store.setAttributes({
        'nexus.inserted': result.inserted,
        'nexus.duplicates': result.duplicates,
        'nexus.refused': result.rejected.length,
      });
      return result;
    } catch (err) {
      spans.store.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
      return undefined;
    } finally {
      spans.store.end();
      if (result === undefined) for (const sp of spans.consume) sp.end();
    }
  }

  /**
   * Announces what was stored for the first time, right after the commit (the live feed is best
   * effort: a failure is logged, the data is safe in PostgreSQL).
   */
  private announce(fresh: readonly TelemetryRecord[]): void {
    if (this.o.feed === undefined || fresh.length === 0) return;
    this.o.feed.publish(this.o.clusterId, fresh).catch((err: unknown) => {
      this.o.metrics?.etcdErrors.inc({ component: 'feed' });
      this.logger.warn(
        { err: describeError(err), records: fresh.length },
        'live feed publish failed',
      );
    });
  }

  /**
   * Acks after the commit: the clean messages in steps of at most ACK_BATCH_MAX (what one ack takes
   * in one transaction), then each message with refused records settled on its own (its records to
   * the dead letters). Each step is retried while etcd is unreachable (a retryable error), and a
   * step done is not done again. A lapsed claim ends a step (counted as lost: the batch is stored
   * and will be redelivered, then skipped as duplicates). A failure no later attempt can fix (an
   * error not marked retryable: a request over etcd's size limit, a fault of this code) gives the
   * step's messages back instead of retrying it for ever: see `giveBack`.
   */
  private async ack(consumer: Consumer, batch: Batch): Promise<AckCounts> {
    const steps: { readonly deliveries: readonly Delivery[]; run(): Promise<AckCounts> }[] = [];
    const clean = cleanDeliveries(batch);
    for (let i = 0; i < clean.length; i += ACK_BATCH_MAX) {
      const part = clean.slice(i, i + ACK_BATCH_MAX);
      steps.push({
        deliveries: part,
        run: async () => ({ lost: (await consumer.ack(part)).lost.length, dead: 0 }),
      });
    }
    for (const [d, rejected] of batch.refused) {
      steps.push({
        deliveries: [d],
        run: async () =>
          (await consumer.settle(d, rejected)) === 'lost'
            ? { lost: 1, dead: 0 }
            : { lost: 0, dead: 1 },
      });
    }
    const counts = { lost: 0, dead: 0 };
    const add = (c: AckCounts): void => {
      counts.lost += c.lost;
      counts.dead += c.dead;
    };
    for (const step of steps) {
      try {
        add(await this.queueOutage.retry('ack', () => step.run(), this.ackRetry));
      } catch (err) {
        if (isFatal(err)) {
          this.failed(err);
          return counts;
        }
        if (isNexusError(err, 'QUEUE_CLOSED')) return counts;
        if (isRetryable(err)) {
          this.logger.error(
            { err: describeError(err) },
            'giving up acking on shutdown: the batch is stored and will be redelivered, then skipped as duplicates',
          );
          return counts;
        }
        add(await this.giveBack(consumer, step.deliveries, err));
      }
    }
    return counts;
  }

  /** How acking waits out etcd: retryable errors only; while stopping, 20 attempts at most. */
  private readonly ackRetry: RetryOptions = {
    retryIf: isRetryable,
    giveUp: (attempt) => this.isStopping() && attempt > 20,
  };

  /**
   * Gives back messages whose ack failed with an error no retry can fix (nack, retried while etcd
   * is unreachable): the batch is stored, so each comes back after its retry delay and its records
   * are skipped as duplicates; one whose ack fails this way at every delivery is dead-lettered
   * whole after MAX_ATTEMPTS deliveries, with the error as its reason. A message whose claim had
   * lapsed is counted as a lost ack; one that cannot be given back either stays claimed by this
   * collector until its message TTL or the collector's restart.
   */
  private async giveBack(
    consumer: Consumer,
    deliveries: readonly Delivery[],
    err: unknown,
  ): Promise<AckCounts> {
    const reason = `ack failed: ${describeError(err)}`;
    this.stats.queueErrors++;
    this.o.metrics?.etcdErrors.inc({ component: 'collector' });
    this.logger.error(
      { err: describeError(err), messages: deliveries.map((d) => d.id) },
      'ack failed with an error a retry cannot fix: the batch is stored; its messages are given back, to be redelivered and skipped as duplicates (dead-lettered after MAX_ATTEMPTS such deliveries)',
    );
    const counts = { lost: 0, dead: 0 };
    for (const d of deliveries) {
      try {
        const outcome = await this.queueOutage.retry(
          'nack',
          () => consumer.nack(d, reason),
          this.ackRetry,
        );
        if (outcome === 'lost') counts.lost++;
        else if (outcome === 'dead') counts.dead++;
      } catch (nackErr) {
        this.logger.error(
          { err: describeError(nackErr), message: d.id },
          'could not give the message back either: it stays claimed by this collector until its message TTL or a restart, then is redelivered and skipped as duplicates',
        );
      }
    }
    return counts;
  }

  /** Counts a stored batch (stats, metrics), tells the registry, then `onCommitted`. */
  private account(batch: Batch, result: IsolatedWrite, acked: AckCounts, commitMs: number): void {
    const refused = result.rejected.length + batch.outOfBounds;
    this.stats.lostAcks += acked.lost;
    this.stats.messages += batch.deliveries.length;
    this.stats.records += batch.consumed;
    this.stats.inserted += result.inserted;
    this.stats.duplicates += result.duplicates;
    this.stats.rejected += refused;
    const m = this.o.metrics;
    if (m !== undefined) {
      m.recordsStored.inc(result.inserted);
      m.recordsDuplicate.inc(result.duplicates);
      m.eventsRecorded.inc(result.events.recorded);
      m.eventReadingsIgnored.inc(result.events.ignored);
      m.recordsRefused.inc(refused);
      if (acked.dead > 0) m.messagesDeadLettered.inc(acked.dead);
      m.lostAcks.inc(acked.lost);
      m.batchRecords.observe(batch.records.length);
      m.commitDuration.observe(commitMs / 1000);
    }
    this.o.registry?.observe(this.o.clusterId, batch.records);
    this.o.onCommitted?.({
      deliveries: batch.deliveries,
      records: batch.records,
      fresh: result.fresh,
      inserted: result.inserted,
      duplicates: result.duplicates,
      rejected: refused,
      commitMs,
      transactions: result.transactions,
    });
  }

  /**
   * Waits until the queue holds nothing, ready, claimed or waiting for a retry: the workers go on
   * claiming and storing meanwhile. (While the store is down this waits; a forced exit then
   * loses what is left, and says so.)
   */
  private async drainQueue(): Promise<void> {
    let logged = false;
    for (;;) {
      const s = await this.o.queue.stats().catch(() => undefined);
      const left = s === undefined ? 1 : s.ready + s.inFlight + s.delayed;
      if (left === 0) return;
      if (!logged && s !== undefined) {
        logged = true;
        this.logger.info(
          { messages: left },
          'storing what the in-process queue holds before stopping',
        );
      }
      await sleep(20);
    }
  }

  private async maintain(): Promise<void> {
    try {
      const res = await this.o.store.maintain();
      if (res.created > 0 || res.dropped.length > 0) this.logger.info(res, 'partitions maintained');
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, 'partition maintenance failed; will retry');
    }
  }

  private async rollUpEvery(ms: number): Promise<void> {
    while (!this.stopping) {
      await sleep(ms, this.abort.signal);
      if (!this.isStopping()) await this.rollUp();
    }
  }

  /** One run of the rollup job; a failure is logged and counted, and the next run retries. */
  private async rollUp(): Promise<void> {
    try {
      const res = await this.o.store.rollUp();
      if (this.rollupFailures > 0) this.logger.info('rollup job back');
      this.rollupFailures = 0;
      if (res.busy) return;
      this.o.metrics?.rollupRuns.inc();
      this.o.metrics?.rollupDuration.observe(res.ms / 1000);
      if (res.moved > 0) {
        this.o.metrics?.rollupReadings.inc(res.moved);
        this.logger.debug(res, 'rollup job');
      }
    } catch (err) {
      this.rollupFailures++;
      this.o.metrics?.rollupErrors.inc();
      if (this.rollupFailures === 1 || this.rollupFailures % 60 === 0) {
        this.logger.warn(
          { err: describeError(err), failures: this.rollupFailures },
          'rollup job failed; the readings stay pending (reads still see them) and the next run retries',
        );
      }
    }
  }

  private async retireEvery(ms: number, staleAfterMs: number): Promise<void> {
    while (!this.stopping) {
      await sleep(ms, this.abort.signal);
      if (!this.isStopping()) await this.retire(staleAfterMs);
    }
  }

  /** One run of the retirement job; a failure is logged and counted, and the next run retries. */
  private async retire(staleAfterMs: number): Promise<void> {
    try {
      const res = await this.o.store.retire(staleAfterMs);
      // The usage job (docs/fleet.md) on the same beat: slices written into are recomputed, then
      // their hours, days and months.
      const usage = await this.o.store.rollUpUsage();
      if (usage.slices > 0 || usage.peaks > 0) this.logger.debug(usage, 'usage slices recomputed');
      if (this.retireFailures > 0) this.logger.info('retirement job back');
      this.retireFailures = 0;
      if (res.stopped > 0) this.o.metrics?.retirements.inc({ change: 'stopped' }, res.stopped);
      if (res.reappeared > 0)
        this.o.metrics?.retirements.inc({ change: 'reappeared' }, res.reappeared);
      if (res.stopped > 0 || res.reappeared > 0) this.logger.info(res, 'GPUs retired or back');
    } catch (err) {
      this.retireFailures++;
      this.o.metrics?.retireErrors.inc();
      if (this.retireFailures === 1 || this.retireFailures % 60 === 0) {
        this.logger.warn(
          { err: describeError(err), failures: this.retireFailures },
          'retirement job failed; the next run retries',
        );
      }
    }
  }

  private async compactEvery(ms: number): Promise<void> {
    while (!this.stopping) {
      await sleep(ms, this.abort.signal);
      if (!this.isStopping()) await this.compact();
    }
  }

  /** One run of the sealing job; a failure is logged and counted, and the next run retries. */
  private async compact(): Promise<void> {
    try {
      const res = await this.o.store.compact({ quiet: true });
      if (this.compactFailures > 0) this.logger.info('sealing job back');
      this.compactFailures = 0;
      if (res.windows > 0) {
        this.o.metrics?.compactWindows.inc(res.windows);
        this.o.metrics?.compactReadings.inc(res.readings);
        this.o.metrics?.compactDuration.observe(res.ms / 1000);
        this.logger.info(res, 'sealed closed windows into chunks');
      }
    } catch (err) {
      this.compactFailures++;
      this.o.metrics?.compactErrors.inc();
      if (this.compactFailures === 1 || this.compactFailures % 60 === 0) {
        this.logger.warn(
          { err: describeError(err), failures: this.compactFailures },
          'sealing job failed; the readings stay in the hot tier (reads still see them) and the next run retries',
        );
      }
    }
  }

  /**
   * Graceful stop: no new claims; batches in flight are written and acked; claims still held are
   * released for other collectors. With `drainOnStop`, everything the queue holds is stored
   * first. Every call returns the same promise, settled when the stop is complete.
   */
  stop(): Promise<void> {
    this.stopped ??= this.halt();
    return this.stopped;
  }

  private async halt(): Promise<void> {
    this.draining = true;
    if (this.o.drainOnStop === true && this.running !== undefined) await this.drainQueue();
    this.stopping = true;
    this.abort.abort();
    if (this.maintenanceTimer !== undefined) clearInterval(this.maintenanceTimer);
    await this.done;
    await this.rollupLoop;
    await this.compactLoop;
    await this.retireLoop;
    // Fold in what this collector stored last (once the schema is there).
    if (this.migrated && !this.o.store.foldsOnWrite) await this.rollUp();
    await this.o.registry
      ?.flush()
      .catch((err: unknown) =>
        this.logger.warn({ err: describeError(err) }, 'last registry flush failed'),
      );
    this.logger.info({ stats: this.stats }, 'collector stopped');
  }
}
