import { basename } from 'node:path';
import { NexusError, describeError } from '../core/errors.js';
import { sleep } from '../core/lifecycle.js';
import type { BackoffPolicy } from '../core/backoff.js';
import { Outage } from '../core/outage.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { traceContextOf, tracer, type Span } from '../core/tracing.js';
import type { TelemetryRecord } from '../core/record.js';
import { isQueueConflict } from '../queue/conflict.js';
import { ENVELOPE_VERSION, type Envelope } from '../queue/envelope.js';
import type { Queue, StreamHandle } from '../queue/types.js';
import { asLane, asMeta, resumePoint, type StreamMeta, type Watermark } from './checkpoint.js';
import { readDcgmCsv, readHeader } from './csv/reader.js';
import { fingerprint, sameFile, shortHash } from './fingerprint.js';
import { noProgress, type ProgressReporter } from './progress.js';
import { RejectsSink } from './rejects.js';

export interface StreamerOptions {
  readonly queue: Queue;
  readonly csvFile: string;
  readonly clusterId: string;
  readonly batchSize: number;
  readonly intervalMs: number;
  readonly loop: boolean;
  readonly timestampMode: 'original' | 'live';
  readonly maxQueueDepth: number;
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

interface Batch {
  readonly index: number;
  readonly loop: number;
  readonly records: TelemetryRecord[];
  readonly firstLine: number;
  readonly lastLine: number;
  readonly end: number;
}

interface LaneSlot {
  token: string | null;
  /** Last batch published on this lane, and where it ended. */
  last: number;
  lastEnd: number;
  busy: Promise<void> | undefined;
}

/**
 * Streams a DCGM CSV into the queue (docs/queue.md, "Exactly-once publish"): batches of
 * BATCH_SIZE records, published on PUBLISH_CONCURRENCY lanes at once, each publish moving its
 * lane's checkpoint in the same atomic step, so a restarted streamer resumes without gaps or
 * duplicates. It waits while the queue holds MAX_QUEUE_DEPTH messages.
 */
export class Streamer {
  private readonly o: StreamerOptions;
  private readonly logger: Logger;
  private readonly progress: ProgressReporter;
  private readonly abort = new AbortController();
  private readonly summary: StreamSummary;
  private readonly rejects: RejectsSink;
  /** The queue's outages: every call to it waits one out instead of failing the run. */
  private readonly queueOutage: Outage;
  private stopping = false;
  private failure: Error | undefined;
  private lanes: LaneSlot[] = [];
  private handle: StreamHandle | undefined;
  private meta: StreamMeta | undefined;
  /** Batches done (published or found published) above the contiguous watermark. */
  private readonly doneAbove = new Map<number, Watermark>();
  private contiguous: Watermark | null = null;
  /** Queue depth as last read, plus what was published since (in flight included). */
  private depthEstimate = 0;
  /** Publishes sent and not yet answered: a depth read may not include them yet. */
  private publishing = 0;
  private lastDepthCheck = 0;
  private nextSendAt = 0;
  private paused: string | undefined;
  private bytes = 0;
  private totalBytes = 0;
  private loopNo = 0;
  private running: Promise<StreamSummary> | undefined;
  /** Next batch index to form. */
  private nextIndex = 0;
  /** Lines each lane had read when the previous run stopped (rejects there are already reported). */
  private readonly laneLinesRead: number[] = [];

  constructor(options: StreamerOptions) {
    this.o = options;
    this.logger = options.logger.child({ component: 'streamer', stream: options.streamId });
    this.progress = options.progress ?? noProgress;
    this.rejects = new RejectsSink(options.rejectsFile, this.logger, {
      maxBytes: options.rejectsMaxBytes ?? 10 * 1024 * 1024,
    });
    const metrics = options.metrics;
    this.queueOutage = new Outage({
      dependency: options.queue.backend === 'etcd' ? 'etcd' : 'queue',
      logger: this.logger,
      ...(options.outageBackoff === undefined ? {} : { backoff: options.outageBackoff }),
      onFailure: () => metrics?.etcdErrors.inc({ component: 'streamer' }),
      onChange: (down) => {
        metrics?.queueUnavailable.set(down ? 1 : 0);
        this.report();
      },
    });
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

  /** Ready unless waiting for the queue (etcd) to come back: for /readyz. */
  get health(): { ready: boolean; reasons: string[] } {
    const why = this.queueOutage.reason;
    return why === undefined ? { ready: true, reasons: [] } : { ready: false, reasons: [why] };
  }

  /**
   * Calls the queue until it answers: an outage is waited out (capped backoff with jitter, logged
   * once), never a failure of the run. Once stopping, it gives up after `attemptsWhenStopping`.
   */
  private untilAnswered<T>(
    what: string,
    fn: () => Promise<T>,
    attemptsWhenStopping = 0,
  ): Promise<T> {
    return this.queueOutage.retry(what, fn, {
      giveUp: (attempt) => this.stopping && attempt > attemptsWhenStopping,
      // With no tries left once stopping, a stop ends the wait at once.
      ...(attemptsWhenStopping === 0 ? { signal: this.abort.signal } : {}),
    });
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
    const { header, end: dataStart, line: headerLine } = await readHeader(o.csvFile);
    const fp = await fingerprint(o.csvFile);
    this.totalBytes = fp.size;
    const handle = await this.untilAnswered('open the stream', () =>
      o.queue.openStream(o.streamId, o.producerId),
    );
    this.handle = handle;
    try {
      const { meta, start } = await this.prepare(handle, fp, dataStart, headerLine);
      this.meta = meta;
      const readThroughLine = Math.max(0, ...this.laneLinesRead);
      for (let loop = start.loop; ; loop++) {
        this.loopNo = loop;
        const first = loop === start.loop;
        const pass = await this.readPass(header, {
          loop,
          offset: first ? start.offset : dataStart,
          line: first ? start.line : headerLine,
          firstIndex: first ? start.nextIndex : -1,
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
      const final = { ...meta, completed: this.summary.completed, wm: this.contiguous };
      await this.untilAnswered('save the checkpoint', () => handle.writeMeta(final), 5);
    } finally {
      await Promise.allSettled(this.inFlight());
      await handle.release();
      await this.rejects.close();
      this.progress.finish();
    }
    this.summary.rejects = this.rejects.total;
    this.summary.rejectsByReason = this.rejects.reasons();
    this.summary.rejectsFile = this.rejects.written ? this.rejects.path : undefined;
    this.summary.rejectsUnwritten = this.rejects.unwritten;
    this.summary.rejectsUnwrittenWhy = this.rejects.unwrittenReason;
    this.summary.elapsedMs = Date.now() - t0;
    return this.summary;
  }

  /** Reads the checkpoint and decides where to start. */
  private async prepare(
    handle: StreamHandle,
    fp: Awaited<ReturnType<typeof fingerprint>>,
    dataStart: number,
    headerLine: number,
  ): Promise<{
    meta: StreamMeta;
    start: { loop: number; offset: number; line: number; nextIndex: number };
  }> {
    const o = this.o;
    const old = asMeta(await this.untilAnswered('read the checkpoint', () => handle.readMeta()));
    let why: string | undefined;
    if (old === undefined) why = undefined;
    else if (o.restart) why = 'restart requested';
    else if (old.completed) why = 'the previous run completed';
    else if (!sameFile(old.fingerprint, fp)) why = 'the file changed since the checkpoint';
    else if (old.batchSize !== o.batchSize)
      why = `BATCH_SIZE changed (${old.batchSize} -> ${o.batchSize})`;
    if (old !== undefined && why === undefined) {
      const lanes = await this.untilAnswered('read the checkpoint', () => handle.readLanes());
      this.lanes = Array.from({ length: old.lanes }, () => ({
        token: null,
        last: -1,
        lastEnd: -1,
        busy: undefined,
      }));
      for (const l of lanes) {
        const rec = asLane(l.state);
        const slot = this.lanes[l.lane];
        if (slot === undefined) continue;
        slot.token = l.token;
        slot.last = rec.batch;
        slot.lastEnd = rec.end;
        this.laneLinesRead.push(rec.line);
      }
      const wm = resumePoint(old, lanes);
      this.contiguous = wm;
      this.summary.resumed = true;
      this.rejects.resume();
      this.logger.info(
        {
          from_batch: wm === null ? 0 : wm.batch + 1,
          from_line: wm?.line ?? headerLine,
          loop: wm?.loop ?? 0,
        },
        'resuming an interrupted stream from its checkpoint',
      );
      return {
        meta: old,
        start: {
          loop: wm?.loop ?? 0,
          offset: wm?.offset ?? dataStart,
          line: wm?.line ?? headerLine,
          nextIndex: wm === null ? 0 : wm.batch + 1,
        },
      };
    }
    if (old !== undefined) {
      this.logger.info({ reason: why }, 'starting the stream from the top');
      await this.untilAnswered('reset the checkpoint', () => handle.reset());
    }
    const meta: StreamMeta = {
      v: 1,
      file: o.csvFile,
      fingerprint: fp,
      batchSize: o.batchSize,
      lanes: o.concurrency,
      runTag: shortHash(`${o.streamId}:${Date.now()}:${Math.random()}`),
      startedAt: Date.now(),
      completed: false,
      wm: null,
    };
    await this.untilAnswered('save the checkpoint', () =>
      handle.writeMeta(meta as unknown as Record<string, unknown>),
    );
    this.lanes = Array.from({ length: meta.lanes }, () => ({
      token: null,
      last: -1,
      lastEnd: -1,
      busy: undefined,
    }));
    return { meta, start: { loop: 0, offset: dataStart, line: headerLine, nextIndex: 0 } };
  }

  private async readPass(
    header: Awaited<ReturnType<typeof readHeader>>['header'],
    pass: {
      loop: number;
      offset: number;
      line: number;
      firstIndex: number;
      writeRejectsAfter: number;
    },
  ): Promise<{ records: number; rows: number }> {
    const seen = { records: 0, rows: 0 };
    if (pass.firstIndex >= 0) this.nextIndex = pass.firstIndex;
    let records: TelemetryRecord[] = [];
    let firstLine = 0;
    let lastLine = 0;
    let lastRecordEnd = 0;
    const emit = async (end: number): Promise<void> => {
      const batch: Batch = {
        index: this.nextIndex++,
        loop: pass.loop,
        records,
        firstLine,
        lastLine,
        end,
      };
      records = [];
      await this.dispatch(batch);
    };
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
        if (records.length === 0) firstLine = pr.line;
        records.push(pr.record);
        lastLine = pr.line;
        lastRecordEnd = pr.end;
        // A batch published by the interrupted run may have been cut short by a clean stop:
        // end this batch where that one ended.
        const slot = this.lanes[this.nextIndex % this.lanes.length];
        const cut = slot !== undefined && slot.last === this.nextIndex && slot.lastEnd === pr.end;
        if (records.length === this.o.batchSize || cut) await emit(pr.end);
        if (this.failed()) return seen;
      }
      this.bytes = chunk.end;
      this.report();
      if (this.stopping || this.failed()) break;
    }
    if (records.length > 0 && !this.failed()) {
      // End of file, or stopping: publish what was read, after everything before it.
      if (this.stopping) await this.drain();
      await emit(lastRecordEnd);
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
      paused: this.queueOutage.down ? 'waiting for the queue to come back' : this.paused,
    });
  }

  private async dispatch(batch: Batch): Promise<void> {
    const slot = this.lanes[batch.index % this.lanes.length];
    if (slot === undefined) throw new NexusError('INTERNAL', 'no lane');
    if (batch.index <= slot.last) {
      // Published before the restart.
      this.summary.skipped += batch.records.length;
      this.markDone(batch);
      return;
    }
    await slot.busy;
    if (this.failed()) return;
    await this.pace();
    await this.backpressure();
    if (this.failed()) return;
    this.depthEstimate++;
    this.publishing++;
    slot.busy = this.publish(batch, slot)
      .catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(describeError(err));
        this.abort.abort();
      })
      .finally(() => {
        this.publishing--;
      });
  }

  private markDone(batch: Batch): void {
    this.doneAbove.set(batch.index, {
      batch: batch.index,
      loop: batch.loop,
      offset: batch.end,
      line: batch.lastLine,
    });
    let next = (this.contiguous?.batch ?? -1) + 1;
    for (;;) {
      const wm = this.doneAbove.get(next);
      if (wm === undefined) break;
      this.doneAbove.delete(next);
      this.contiguous = wm;
      next++;
    }
  }

  private envelope(batch: Batch, trace: Envelope['trace']): Envelope {
    const meta = this.meta;
    let records = batch.records;
    if (this.o.timestampMode === 'live') {
      let min = Number.POSITIVE_INFINITY;
      for (const r of records) if (r.timestamp < min) min = r.timestamp;
      const shift = Date.now() - min;
      records = records.map((r) => ({ ...r, timestamp: r.timestamp + shift }));
    }
    return {
      v: ENVELOPE_VERSION,
      id: `${batch.index}-${meta?.runTag ?? 'x'}`,
      producer: this.o.producerId,
      cluster: this.o.clusterId,
      createdAt: Date.now(),
      attempt: 0,
      ...(trace === undefined ? {} : { trace }),
      source: {
        file: basename(this.o.csvFile),
        firstLine: batch.firstLine,
        lastLine: batch.lastLine,
      },
      records,
    };
  }

  private async publish(batch: Batch, slot: LaneSlot): Promise<void> {
    const handle = this.handle;
    if (handle === undefined) throw new NexusError('INTERNAL', 'stream not open');
    const lane = batch.index % this.lanes.length;
    // The publish span's context travels in the envelope, so the collector's spans join the trace.
    await tracer().startActiveSpan(
      'nexus.publish',
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'etcd',
          'nexus.batch.index': batch.index,
          'nexus.batch.records': batch.records.length,
          'nexus.lane': lane,
        },
      },
      async (span: Span) => {
        const envelope = this.envelope(batch, traceContextOf(span));
        span.setAttribute('messaging.message.id', envelope.id);
        const state = {
          batch: batch.index,
          loop: batch.loop,
          end: batch.end,
          line: batch.lastLine,
          records: batch.records.length,
          wm: this.contiguous,
        };
        const t0 = performance.now();
        try {
          // An outage is waited out; once stopping, a few more tries, then the rest stays unread
          // and a restart resumes from the checkpoint.
          slot.token = await this.untilAnswered(
            'publish',
            async () => {
              try {
                return await handle.publish(envelope, lane, slot.token, state);
              } catch (err) {
                this.o.metrics?.publishErrors.inc();
                if (isQueueConflict(err, 'lane-moved')) {
                  // An earlier attempt that timed out may have committed: look.
                  const lanes = await handle.readLanes();
                  const now = lanes.find((l) => l.lane === lane);
                  if (now !== undefined && asLane(now.state).batch === batch.index)
                    return now.token;
                  throw new NexusError(
                    'INTERNAL',
                    `lane ${lane} moved under this streamer: is another streamer writing stream ${this.o.streamId}?`,
                    { cause: err },
                  );
                }
                throw err;
              }
            },
            5,
          );
        } catch (err) {
          span.recordException(err instanceof Error ? err : new Error(describeError(err)));
          span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(err) });
          throw err;
        } finally {
          span.end();
        }
        const seconds = (performance.now() - t0) / 1000;
        slot.last = batch.index;
        slot.lastEnd = batch.end;
        this.summary.records += batch.records.length;
        this.summary.batches++;
        this.markDone(batch);
        const m = this.o.metrics;
        if (m !== undefined) {
          m.recordsPublished.inc(batch.records.length);
          m.batchesPublished.inc();
          m.publishDuration.observe(seconds);
        }
        // The batch id is the correlation id: the collector logs the same id when it stores it.
        this.logger.debug(
          {
            batch: envelope.id,
            lines: [batch.firstLine, batch.lastLine],
            records: batch.records.length,
            lane,
            ms: Math.round(seconds * 1000),
            trace_id: span.spanContext().traceId,
          },
          'batch published',
        );
      },
    );
  }

  private async pace(): Promise<void> {
    if (this.o.intervalMs <= 0) return;
    const now = Date.now();
    if (this.nextSendAt > now) await sleep(this.nextSendAt - now, this.abort.signal);
    this.nextSendAt = Math.max(now, this.nextSendAt) + this.o.intervalMs;
  }

  /** Waits while the queue is at MAX_QUEUE_DEPTH. */
  private async backpressure(): Promise<void> {
    const max = this.o.maxQueueDepth;
    const now = Date.now();
    if (this.depthEstimate < max && now - this.lastDepthCheck < 1000) return;
    try {
      this.depthEstimate = await this.untilAnswered('read the queue depth', () => this.readDepth());
    } catch (err) {
      // Stopping with the queue unreachable: publishing what was read will try, and say so.
      if (this.stopping) return;
      throw err;
    }
    this.lastDepthCheck = now;
    if (this.depthEstimate < max) return;
    const t0 = Date.now();
    this.paused = `queue full (${this.depthEstimate} >= MAX_QUEUE_DEPTH ${max})`;
    this.o.metrics?.backpressure.set(1);
    this.logger.info(
      { depth: this.depthEstimate, max_queue_depth: max },
      'queue is full; waiting for consumers',
    );
    this.report();
    const resumeAt = Math.max(0, Math.floor(max * 0.9));
    while (!this.stopping) {
      await sleep(250, this.abort.signal);
      try {
        this.depthEstimate = await this.untilAnswered('read the queue depth', () =>
          this.readDepth(),
        );
      } catch {
        break; // stopping
      }
      this.lastDepthCheck = Date.now();
      if (this.depthEstimate <= resumeAt) break;
      this.report();
    }
    this.summary.waitedForQueueMs += Date.now() - t0;
    this.paused = undefined;
    this.o.metrics?.backpressure.set(0);
    this.logger.info(
      { depth: this.depthEstimate, waited_ms: Date.now() - t0 },
      'queue drained; resuming',
    );
  }

  private inFlight(): Promise<void>[] {
    return this.lanes.map((l) => l.busy).filter((p): p is Promise<void> => p !== undefined);
  }

  private failed(): boolean {
    return this.failure !== undefined;
  }

  /** The queue depth counting publishes still in flight. */
  private async readDepth(): Promise<number> {
    const inFlight = this.publishing;
    const depth = await this.o.queue.depth();
    return depth + Math.min(inFlight, this.publishing);
  }

  private async drain(): Promise<void> {
    await Promise.all(this.inFlight());
    if (this.failure !== undefined) throw this.failure;
  }
}
