import { NexusError, describeError } from '../core/errors.js';
import type { BackoffPolicy } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import type { Queue } from '../queue/types.js';
import { Batcher } from './batcher.js';
import { readDcgmCsv, readHeader } from './csv/reader.js';
import { fingerprint } from './fingerprint.js';
import { Lanes, type Batch } from './lanes.js';
import { Backpressure, Pacer, type QueueSpace } from './pacing.js';
import { noProgress, type ProgressReporter } from './progress.js';
import { Publisher } from './publisher.js';
import { QueueOutage } from './queue-outage.js';
import { RejectsSink } from './rejects.js';
import { resume } from './resume.js';

export interface StreamerOptions {
  readonly queue: Queue;
  readonly csvFile: string;
  readonly clusterId: string;
  readonly batchSize: number;
  readonly intervalMs: number;
  readonly loop: boolean;
  readonly timestampMode: 'original' | 'live';
  readonly maxQueueDepth: number;
  /** etcd's space (ETCD_QUOTA_BYTES and its alarms): publishing waits while it is short. */
  readonly space?: QueueSpace | undefined;
  readonly concurrency: number;
  readonly streamId: string;
  readonly producerId: string;
  readonly rejectsFile: string;
  /** The rejects file stops growing at this size (REJECTS_MAX_BYTES); default 10 MiB. */
  readonly rejectsMaxBytes?: number;
  /** Ignore a checkpoint left by an interrupted run and start from the top. */
  readonly restart: boolean;
  readonly logger: Logger;
  readonly progress?: ProgressReporter;
  /** Stop after this many passes over the file (loop mode); for tests and benchmarks. */
  readonly maxLoops?: number;
  /** Prometheus metrics of this process, if any. */
  readonly metrics?: NexusMetrics;
  /** Backoff while the queue (etcd) is unreachable; default src/core/outage.ts OUTAGE_BACKOFF. */
  readonly outageBackoff?: BackoffPolicy;
}

export interface StreamSummary {
  /** Records published by this run. */
  records: number;
  /** Records found already published by an earlier, interrupted run. */
  skipped: number;
  batches: number;
  rejects: number;
  rejectsByReason: Record<string, number>;
  sentinels: number;
  loops: number;
  elapsedMs: number;
  resumed: boolean;
  completed: boolean;
  stopped: boolean;
  rejectsFile: string | undefined;
  /** Rejected rows counted but not written to the rejects file, and why. */
  rejectsUnwritten: number;
  rejectsUnwrittenWhy: string | undefined;
  /**
   * Set when a whole pass over the file found no reading to publish: every data row was rejected,
   * or held a "not supported" sentinel, or there was no data row at all. The run stops (even in
   * loop mode) and `nexus streamer` exits 3.
   */
  nothingValid: boolean;
  /** Data rows of that pass (rejects and sentinels included). */
  dataRows: number;
  waitedForQueueMs: number;
}

/**
 * Streams a DCGM CSV into the queue (docs/queue.md, "Exactly-once publish"): batches of
 * BATCH_SIZE records, published on PUBLISH_CONCURRENCY lanes at once, each publish moving its
 * lane's checkpoint in the same atomic step, so a restarted streamer resumes without gaps or
 * duplicates. It waits while the queue holds MAX_QUEUE_DEPTH messages.
 *
 * This file is the run loop: it reads the file pass after pass and sends each batch. The rest:
 * resume.ts (where a run starts), batcher.ts (records into batches), lanes.ts (the publish lanes
 * and the watermark), pacing.ts (STREAM_INTERVAL and MAX_QUEUE_DEPTH), publisher.ts (one fenced
 * publish per batch, traced) and queue-outage.ts (every queue call waits an outage out).
 */
export class Streamer {
  private readonly o: StreamerOptions;
  private readonly logger: Logger;
  private readonly progress: ProgressReporter;
  private readonly abort = new AbortController();
  private readonly summary: StreamSummary;
  private readonly rejects: RejectsSink;
  /** The queue's outages: every call to it waits one out instead of failing the run. */
  private readonly queueOutage: QueueOutage;
  private readonly pacer: Pacer;
  private readonly backpressure: Backpressure;
  private readonly batcher: Batcher;
  private stopping = false;
  private failure: Error | undefined;
  private lanes = new Lanes(0);
  private publisher: Publisher | undefined;
  private bytes = 0;
  private totalBytes = 0;
  private loopNo = 0;
  private running: Promise<StreamSummary> | undefined;

  constructor(options: StreamerOptions) {
    this.o = options;
    this.logger = options.logger.child({ component: 'streamer', stream: options.streamId });
    this.progress = options.progress ?? noProgress;
    this.rejects = new RejectsSink(options.rejectsFile, this.logger, {
      maxBytes: options.rejectsMaxBytes ?? 10 * 1024 * 1024,
    });
    const stopping = (): boolean => this.stopping;
    this.queueOutage = new QueueOutage({
      queue: options.queue,
      logger: this.logger,
      backoff: options.outageBackoff,
      metrics: options.metrics,
      onChange: () => this.report(),
      stopping,
      signal: this.abort.signal,
    });
    this.pacer = new Pacer(options.intervalMs, this.abort.signal);
    this.backpressure = new Backpressure({
      queue: options.queue,
      maxQueueDepth: options.maxQueueDepth,
      space: options.space,
      untilAnswered: this.queueOutage.untilAnswered,
      stopping,
      signal: this.abort.signal,
      logger: this.logger,
      metrics: options.metrics,
      onChange: () => this.report(),
    });
    this.batcher = new Batcher(options.batchSize, (index, end) => this.lanes.endsAt(index, end));
    this.summary = {
      records: 0,
      skipped: 0,
      batches: 0,
      rejects: 0,
      rejectsByReason: {},
      sentinels: 0,
      loops: 0,
      elapsedMs: 0,
      resumed: false,
      completed: false,
      stopped: false,
      rejectsFile: undefined,
      rejectsUnwritten: 0,
      rejectsUnwrittenWhy: undefined,
      nothingValid: false,
      dataRows: 0,
      waitedForQueueMs: 0,
    };
  }

  /** The CSV file this streamer reads. */
  get file(): string {
    return this.o.csvFile;
  }

  /** Runs to the end of the file (or forever in loop mode) or until stop(). */
  run(): Promise<StreamSummary> {
    this.running ??= this.execute();
    return this.running;
  }

  /** Ready unless waiting for the queue (etcd) to come back or an etcd alarm: for /readyz. */
  get health(): { ready: boolean; reasons: string[] } {
    const reasons = [this.queueOutage.reason, this.backpressure.alarmed].filter(
      (r): r is string => r !== undefined,
    );
    return { ready: reasons.length === 0, reasons };
  }

  /** Stops reading, publishes what was read, saves the checkpoint. Resolves when done. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.running?.catch(() => undefined);
  }

  private async execute(): Promise<StreamSummary> {
    const t0 = Date.now();
    const o = this.o;
    const untilAnswered = this.queueOutage.untilAnswered;
    const { header, end: dataStart, line: headerLine } = await readHeader(o.csvFile);
    const fp = await fingerprint(o.csvFile);
    this.totalBytes = fp.size;
    const handle = await untilAnswered('open the stream', () =>
      o.queue.openStream(o.streamId, o.producerId),
    );
    try {
      const { meta, start, lanes, resumed, linesRead } = await resume({
        handle,
        untilAnswered,
        logger: this.logger,
        csvFile: o.csvFile,
        streamId: o.streamId,
        batchSize: o.batchSize,
        concurrency: o.concurrency,
        restart: o.restart,
        fingerprint: fp,
        dataStart,
        headerLine,
      });
      this.lanes = lanes;
      if (resumed) {
        this.summary.resumed = true;
        this.rejects.resume();
      }
      this.publisher = new Publisher({
        handle,
        lanes,
        runTag: meta.runTag,
        streamId: o.streamId,
        producerId: o.producerId,
        clusterId: o.clusterId,
        csvFile: o.csvFile,
        timestampMode: o.timestampMode,
        untilAnswered,
        logger: this.logger,
        metrics: o.metrics,
      });
      const readThroughLine = Math.max(0, ...linesRead);
      for (let loop = start.loop; ; loop++) {
        this.loopNo = loop;
        const first = loop === start.loop;
        this.batcher.startPass(loop, first ? start.nextIndex : undefined);
        const pass = await this.readPass(header, {
          offset: first ? start.offset : dataStart,
          line: first ? start.line : headerLine,
          writeRejectsAfter: loop === 0 ? (first ? readThroughLine : 0) : Number.POSITIVE_INFINITY,
        });
        this.summary.loops = loop - start.loop + 1;
        if (this.failure !== undefined) throw this.failure;
        // A whole pass over the file (from its first data row to its end) that found nothing to
        // publish: say so and stop, rather than publish nothing (forever, in loop mode).
        const whole = !this.stopping && (first ? start.offset : dataStart) === dataStart;
        if (whole && pass.records === 0) {
          this.summary.nothingValid = true;
          this.summary.dataRows = pass.rows;
          break;
        }
        if (this.stopping || !o.loop) break;
        if (o.maxLoops !== undefined && loop + 1 >= o.maxLoops) break;
      }
      await this.drain();
      this.summary.completed = !this.stopping && (!o.loop || this.summary.nothingValid);
      this.summary.stopped = this.stopping;
      const final = { ...meta, completed: this.summary.completed, wm: lanes.contiguous };
      await untilAnswered('save the checkpoint', () => handle.writeMeta(final), 5);
    } finally {
      await Promise.allSettled(this.lanes.inFlight());
      await handle.release();
      await this.rejects.close();
      this.progress.finish();
    }
    this.summary.waitedForQueueMs = this.backpressure.waitedMs;
    this.summary.rejects = this.rejects.total;
    this.summary.rejectsByReason = this.rejects.reasons();
    this.summary.rejectsFile = this.rejects.written ? this.rejects.path : undefined;
    this.summary.rejectsUnwritten = this.rejects.unwritten;
    this.summary.rejectsUnwrittenWhy = this.rejects.unwrittenReason;
    this.summary.elapsedMs = Date.now() - t0;
    return this.summary;
  }

  /** Reads the file once from `pass.offset`, cutting it into batches and sending each. */
  private async readPass(
    header: Awaited<ReturnType<typeof readHeader>>['header'],
    pass: { offset: number; line: number; writeRejectsAfter: number },
  ): Promise<{ records: number; rows: number }> {
    const seen = { records: 0, rows: 0 };
    for await (const chunk of readDcgmCsv(header, {
      path: this.o.csvFile,
      startOffset: pass.offset,
      startLine: pass.line,
      signal: this.abort.signal,
    })) {
      for (const r of chunk.rejects) {
        const unwritten = this.rejects.unwritten;
        this.rejects.add(r, r.line > pass.writeRejectsAfter);
        if (this.rejects.unwritten > unwritten) this.o.metrics?.rejectsUnwritten.inc();
        this.o.metrics?.recordsRejected.inc({ reason: RejectsSink.kind(r.reason) });
      }
      this.summary.sentinels += chunk.sentinels;
      seen.records += chunk.records.length;
      seen.rows += chunk.records.length + chunk.rejects.length + chunk.sentinels;
      if (this.o.metrics !== undefined) {
        this.o.metrics.recordsRead.inc(chunk.records.length);
        this.o.metrics.sentinels.inc(chunk.sentinels);
        this.o.metrics.filePosition.set(this.totalBytes > 0 ? chunk.end / this.totalBytes : 0);
      }
      for (const pr of chunk.records) {
        const batch = this.batcher.add(pr.record, pr.line, pr.end);
        if (batch !== undefined) await this.dispatch(batch);
        if (this.failed()) return seen;
      }
      this.bytes = chunk.end;
      this.report();
      if (this.stopping || this.failed()) break;
    }
    if (this.batcher.pending && !this.failed()) {
      // End of file, or stopping: publish what was read, after everything before it.
      if (this.stopping) await this.drain();
      const rest = this.batcher.rest();
      if (rest !== undefined) await this.dispatch(rest);
    }
    return seen;
  }

  private report(): void {
    this.progress.update({
      bytes: this.bytes,
      totalBytes: this.totalBytes,
      records: this.summary.records + this.summary.skipped,
      rejects: this.rejects.total,
      loop: this.loopNo,
      paused: this.queueOutage.down
        ? 'waiting for the queue to come back'
        : this.backpressure.paused,
    });
  }

  /**
   * Sends a batch on its lane once the lane's previous publish is answered, paced and within
   * MAX_QUEUE_DEPTH; a batch the interrupted run published already is counted and skipped.
   */
  private async dispatch(batch: Batch): Promise<void> {
    const lanes = this.lanes;
    const publisher = this.publisher;
    if (publisher === undefined) throw new NexusError('INTERNAL', 'stream not open');
    if (lanes.alreadyPublished(batch.index)) {
      // Published before the restart.
      this.summary.skipped += batch.size;
      lanes.done(batch);
      return;
    }
    await lanes.idle(batch.index);
    if (this.failed()) return;
    await this.pacer.wait();
    await this.backpressure.wait();
    if (this.failed()) return;
    this.backpressure.sent();
    lanes.sending(
      batch.index,
      publisher
        .publish(batch)
        .then(() => {
          this.summary.records += batch.size;
          this.summary.batches++;
        })
        .catch((err: unknown) => {
          this.failure ??= err instanceof Error ? err : new Error(describeError(err));
          this.abort.abort();
        })
        .finally(() => {
          this.backpressure.answered();
        }),
    );
  }

  private failed(): boolean {
    return this.failure !== undefined;
  }

  private async drain(): Promise<void> {
    await Promise.all(this.lanes.inFlight());
    if (this.failure !== undefined) throw this.failure;
  }
}
