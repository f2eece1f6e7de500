import { backoffDelay, type BackoffPolicy } from '../core/backoff.js';
import { describeError, isNexusError } from '../core/errors.js';
import { sleep } from '../core/lifecycle.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { context, contextFrom, trace, tracer } from '../core/tracing.js';
import { recordProblem, type TelemetryRecord } from '../core/record.js';
import type { Consumer, Delivery, Queue, RejectedRecord } from '../queue/types.js';
import type { LiveFeed } from '../registry/feed.js';
import type { FleetRegistry } from '../registry/types.js';
import type { TelemetryStore } from '../store/types.js';
import { writeIsolating } from './isolate.js';

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
  /** Backoff while PostgreSQL or etcd is unreachable. */
  readonly outageBackoff: BackoffPolicy;
  /** Partition creation and retention, this often (0: never). */
  readonly maintenanceIntervalMs: number;
  /**
   * The rollup job (pending readings into the 1-minute rollup and the latest values), this often
   * (ROLLUP_INTERVAL; 0: only when the collector stops). Every collector runs it; one at a time
   * does the work. Not at all when the store folds on write (nothing is ever pending).
   */
  readonly rollupIntervalMs: number;
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

/**
 * Consumes batches from the queue and stores them (docs/storage.md, "What the collector
 * guarantees"): claim up to `batchMessages` messages, write all their records in one transaction
 * (idempotent on the natural key), ack after the commit and only then. A record the database
 * refuses is isolated by splitting the batch and dead-lettered with the database's reason; its
 * neighbours are stored. While PostgreSQL or etcd is unreachable, each worker holds its batch and
 * retries with exponential backoff, never dead-lettering for an outage; the collector reports not
 * ready meanwhile and carries on when they return.
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
  private storeDown: string | undefined;
  private queueDown: string | undefined;
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private rollupLoop: Promise<void> | undefined;
  private rollupFailures = 0;
  private running: Promise<void> | undefined;
  private readonly logger: Logger;

  constructor(private readonly o: CollectorOptions) {
    this.logger = o.logger.child({ component: 'collector' });
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
      this.storeDown === undefined &&
      this.queueDown === undefined &&
      this.consumer?.healthy === true
    );
  }

  /** Why it is not ready, for /readyz. */
  get health(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.migrated) reasons.push('schema not migrated yet');
    if (this.stopping || this.draining) reasons.push('shutting down');
    if (this.storeDown !== undefined) reasons.push(`PostgreSQL: ${this.storeDown}`);
    if (this.queueDown !== undefined) reasons.push(`etcd: ${this.queueDown}`);
    if (this.consumer !== undefined && !this.consumer.healthy) reasons.push('queue session lost');
    return { ready: reasons.length === 0 && this.consumer !== undefined, reasons };
  }

  /** Starts in the background: migrations (retried until the database answers), then the workers. */
  start(): Promise<void> {
    this.running ??= this.run();
    return Promise.resolve();
  }

  /** Resolves when the collector has stopped (after stop()). */
  get done(): Promise<void> {
    return this.running ?? Promise.resolve();
  }

  private async run(): Promise<void> {
    await this.untilUp('migrate', async () => {
      await this.o.store.migrate();
    });
    if (this.stopping) return;
    this.migrated = true;
    await this.untilUp('connect to the queue', async () => {
      this.consumer = await this.o.queue.consumer({ name: 'collector' });
    });
    const consumer = this.consumer;
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
    this.workers = Array.from({ length: this.o.workers }, (_, i) => this.work(consumer, i));
    await Promise.all(this.workers);
    await consumer
      .close()
      .catch((err: unknown) =>
        this.logger.warn({ err: describeError(err) }, 'closing the consumer failed'),
      );
  }

  /** Runs `fn` until it succeeds, backing off while a dependency is down; gives up only on stop. */
  private async untilUp(what: string, fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; !this.stopping; attempt++) {
      try {
        await fn();
        if (this.storeDown !== undefined || this.queueDown !== undefined)
          this.logger.info({ what }, 'dependency back');
        this.storeDown = undefined;
        this.queueDown = undefined;
        return;
      } catch (err) {
        this.noteDown(err, what, attempt);
        await sleep(backoffDelay(this.o.outageBackoff, attempt), this.abort.signal);
      }
    }
  }

  private noteDown(err: unknown, what: string, attempt: number): void {
    const message = describeError(err);
    if (isNexusError(err) && err.code.startsWith('STORE')) {
      this.stats.storeErrors++;
      this.o.metrics?.storeErrors.inc({
        kind: err.code === 'STORE_REJECTED' ? 'refused' : 'unavailable',
      });
      this.storeDown = message;
    } else {
      this.stats.queueErrors++;
      this.o.metrics?.etcdErrors.inc({ component: 'collector' });
      this.queueDown = message;
    }
    if (attempt === 1 || attempt % 10 === 0) {
      this.logger.warn({ err: message, attempt, what }, `${what} failed; backing off and retrying`);
    }
  }

  private async work(consumer: Consumer, worker: number): Promise<void> {
    let idleErrors = 0;
    while (!this.stopping) {
      let deliveries: Delivery[];
      const claimStart = performance.now();
      try {
        deliveries = await consumer.claim(this.o.batchMessages, {
          waitMs: this.o.pollTimeoutMs,
          signal: this.abort.signal,
        });
        if (this.queueDown !== undefined) this.logger.info('etcd back');
        this.queueDown = undefined;
        idleErrors = 0;
      } catch (err) {
        if (this.isStopping()) break;
        idleErrors++;
        this.noteDown(err, 'claim', idleErrors);
        await sleep(backoffDelay(this.o.outageBackoff, idleErrors), this.abort.signal);
        continue;
      }
      if (deliveries.length === 0) continue;
      await this.process(consumer, deliveries, worker, performance.now() - claimStart);
    }
  }

  /** Stores a claimed batch and acks it; returns only when both are done (or on a forced stop). */
  private async process(
    consumer: Consumer,
    deliveries: readonly Delivery[],
    worker: number,
    claimMs: number,
  ): Promise<void> {
    const records: TelemetryRecord[] = [];
    const owner: { delivery: Delivery; index: number }[] = [];
    // A record outside the bounds of every record (src/core/record.ts: identifier lengths and
    // characters, labels, the timestamp window) is refused like one the database refuses: to the
    // dead letters with its reason, its neighbours stored. Any producer's message gets this check.
    const rejectedBy = new Map<Delivery, RejectedRecord[]>();
    const now = Date.now();
    let consumed = 0;
    for (const d of deliveries) {
      d.envelope.records.forEach((r, index) => {
        consumed++;
        const problem = recordProblem(r, now);
        if (problem !== undefined) {
          const list = rejectedBy.get(d) ?? [];
          list.push({ index, reason: `record out of bounds: ${problem}` });
          rejectedBy.set(d, list);
          return;
        }
        records.push(r);
        owner.push({ delivery: d, index });
      });
    }
    const outOfBounds = consumed - records.length;
    const m = this.o.metrics;
    m?.recordsConsumed.inc(consumed);
    const redelivered = deliveries.filter((d) => d.attempt > 1).length;
    if (redelivered > 0) m?.messagesRetried.inc(redelivered);
    // One consume span per message, continuing the trace its streamer started; the store span
    // (the transaction) is a child of the first and links the others.
    const consumeSpans = deliveries.map((d) =>
      tracer().startSpan(
        'nexus.consume',
        {
          kind: SpanKind.CONSUMER,
          attributes: {
            'messaging.system': 'etcd',
            'messaging.message.id': d.envelope.id,
            'nexus.delivery.attempt': d.attempt,
            'nexus.batch.records': d.envelope.records.length,
          },
        },
        contextFrom(d.envelope.trace),
      ),
    );
    const first = consumeSpans[0];
    const storeSpan = tracer().startSpan(
      'nexus.store',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'db.system': 'postgresql',
          'nexus.records': records.length,
          'nexus.messages': deliveries.length,
        },
        links: consumeSpans.slice(1).map((sp) => ({ context: sp.spanContext() })),
      },
      first === undefined ? undefined : trace.setSpan(context.active(), first),
    );
    const t0 = performance.now();
    let result;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          result = await writeIsolating(
            (part) => this.o.store.write(this.o.clusterId, part),
            records,
          );
          if (this.storeDown !== undefined) this.logger.info('PostgreSQL back: resuming');
          this.storeDown = undefined;
          break;
        } catch (err) {
          this.noteDown(err, 'store', attempt);
          // Held claims stay ours while we wait (the session lease is kept alive); if we are
          // stopping, give them back instead so another collector can take them.
          if (this.stopping && attempt > 1) {
            storeSpan.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
            return;
          }
          await sleep(backoffDelay(this.o.outageBackoff, attempt), this.abort.signal);
        }
      }
      storeSpan.setAttributes({
        'nexus.inserted': result.inserted,
        'nexus.duplicates': result.duplicates,
        'nexus.refused': result.rejected.length,
      });
    } finally {
      storeSpan.end();
      if (result === undefined) for (const sp of consumeSpans) sp.end();
    }
    const commitMs = performance.now() - t0;
    // Group refused records by message.
    for (const r of result.rejected) {
      const o = owner[r.index];
      if (o === undefined) continue;
      const list = rejectedBy.get(o.delivery) ?? [];
      list.push({ index: o.index, reason: r.reason });
      rejectedBy.set(o.delivery, list);
    }
    const clean = deliveries.filter((d) => !rejectedBy.has(d));
    // Announce what was stored for the first time, right after the commit (the live feed is
    // best effort: a failure is logged, the data is safe in PostgreSQL).
    if (this.o.feed !== undefined && result.fresh.length > 0) {
      this.o.feed.publish(this.o.clusterId, result.fresh).catch((err: unknown) => {
        m?.etcdErrors.inc({ component: 'feed' });
        this.logger.warn(
          { err: describeError(err), records: result.fresh.length },
          'live feed publish failed',
        );
      });
    }
    let lost = 0;
    const ackStart = performance.now();
    await this.untilAcked(async () => {
      if (clean.length > 0) {
        const res = await consumer.ack(clean);
        lost += res.lost.length;
      }
      for (const [d, rejected] of rejectedBy) {
        if ((await consumer.settle(d, rejected)) === 'lost') lost++;
      }
    });
    const ackMs = performance.now() - ackStart;
    for (const sp of consumeSpans) sp.end();
    this.stats.lostAcks += lost;
    this.stats.messages += deliveries.length;
    const refused = result.rejected.length + outOfBounds;
    this.stats.records += consumed;
    this.stats.inserted += result.inserted;
    this.stats.duplicates += result.duplicates;
    this.stats.rejected += refused;
    if (m !== undefined) {
      m.recordsStored.inc(result.inserted);
      m.recordsDuplicate.inc(result.duplicates);
      m.recordsRefused.inc(refused);
      if (rejectedBy.size > 0) m.messagesDeadLettered.inc(rejectedBy.size);
      m.lostAcks.inc(lost);
      m.batchRecords.observe(records.length);
      m.commitDuration.observe(commitMs / 1000);
    }
    this.o.registry?.observe(this.o.clusterId, records);
    this.o.onCommitted?.({
      deliveries,
      records,
      fresh: result.fresh,
      inserted: result.inserted,
      duplicates: result.duplicates,
      rejected: refused,
      commitMs,
      transactions: result.transactions,
    });
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
        records: records.length,
        inserted: result.inserted,
        duplicates: result.duplicates,
        refused,
        transactions: result.transactions,
        claim_ms: Math.round(claimMs),
        commit_ms: Math.round(commitMs),
        ack_ms: Math.round(ackMs),
        trace_id: storeSpan.spanContext().traceId,
      },
      'batch stored',
    );
  }

  /** Acks after the commit, retrying while etcd is unreachable; a lapsed claim ends the attempt. */
  private async untilAcked(fn: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        this.queueDown = undefined;
        return;
      } catch (err) {
        if (isNexusError(err, 'QUEUE_CLOSED')) return;
        this.noteDown(err, 'ack', attempt);
        if (this.stopping && attempt > 20) {
          this.logger.error(
            { err: describeError(err) },
            'giving up acking on shutdown: the batch is stored and will be redelivered, then skipped as duplicates',
          );
          return;
        }
        await sleep(backoffDelay(this.o.outageBackoff, attempt));
      }
    }
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
