import { randomBytes } from 'node:crypto';
import { backoffDelay, sleep } from '../core/backoff.js';
import { NexusError } from '../core/errors.js';
import type { TelemetryRecord } from '../core/record.js';
import { isQueueConflict } from './conflict.js';
import { ENVELOPE_VERSION, type Envelope } from './envelope.js';
import type { Queue } from './types.js';

export interface RecordPublisherOptions {
  readonly queue: Queue;
  /** The producer named in every envelope (e.g. `scrape-<host>-<pid>`, `remote-write-<host>-<pid>`). */
  readonly producer: string;
  /** Records per message (the streamer's BATCH_SIZE). */
  readonly batchSize: number;
  /** Messages in the queue at which room() says no (MAX_QUEUE_DEPTH; 0: no bound). */
  readonly maxDepth: number;
  /** How old a depth reading room() may answer from (default 1 s: one cheap read a second). */
  readonly depthTtlMs?: number;
  /** Messages in flight at once for one publish() (default 8). */
  readonly concurrency?: number;
  /** Tries of one message on a retryable error, the same message each time (default 3). */
  readonly attempts?: number;
}

/** Where a message's records came from, for correlation (an exporter, a remote_write request). */
export interface RecordSource {
  readonly file: string;
  readonly firstLine: number;
  readonly lastLine: number;
}

/**
 * Publishes records that arrive live (a scrape, a remote_write request) into the queue of one
 * cluster, as messages of at most `batchSize` records: the streamer's envelope, without its
 * checkpoints (a live source cannot be re-read: what a caller was told is queued, is). publish()
 * resolves once every message is in the queue; a message whose publish timed out but had landed
 * is found there on the retry and counts as published, so a retry never doubles it. Backpressure
 * is the caller's: room() before taking more in.
 */
export class RecordPublisher {
  private readonly run = randomBytes(5).toString('hex');
  private seq = 0;
  private depth = 0;
  private depthAt = Number.NEGATIVE_INFINITY;
  private depthRead: Promise<number> | undefined;

  constructor(private readonly o: RecordPublisherOptions) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1) {
      throw new NexusError('CONFIG_INVALID', `batch size must be a whole number >= 1`);
    }
  }

  get clusterId(): string {
    return this.o.queue.clusterId;
  }

  /** Messages in the queue, read at most depthTtlMs ago (one read at a time). */
  async queueDepth(): Promise<number> {
    if (performance.now() - this.depthAt < (this.o.depthTtlMs ?? 1000)) return this.depth;
    this.depthRead ??= this.o.queue
      .depth()
      .then((d) => {
        this.depth = d;
        this.depthAt = performance.now();
        return d;
      })
      .finally(() => {
        this.depthRead = undefined;
      });
    return this.depthRead;
  }

  /** Whether the queue is below maxDepth (always, with no bound). */
  async room(): Promise<boolean> {
    if (this.o.maxDepth <= 0) return true;
    return (await this.queueDepth()) < this.o.maxDepth;
  }

  /**
   * Publishes the records in messages of at most batchSize; resolves with the number of messages
   * once all are in the queue. Throws the queue's error if any message could not be published
   * (the others may be in: a caller that retries the whole call may store some readings twice in
   * the queue, which the store's natural key absorbs).
   */
  async publish(
    records: readonly TelemetryRecord[],
    source?: RecordSource,
    trace?: Envelope['trace'],
  ): Promise<number> {
    const envelopes: Envelope[] = [];
    for (let i = 0; i < records.length; i += this.o.batchSize) {
      envelopes.push({
        v: ENVELOPE_VERSION,
        id: `${this.run}-${(this.seq++).toString(36)}`,
        producer: this.o.producer,
        cluster: this.o.queue.clusterId,
        createdAt: Date.now(),
        attempt: 0,
        ...(trace === undefined ? {} : { trace }),
        ...(source === undefined ? {} : { source }),
        records: records.slice(i, i + this.o.batchSize),
      });
    }
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < envelopes.length) {
        const envelope = envelopes[next++] as Envelope;
        await this.publishOne(envelope);
      }
    };
    const lanes = Math.min(this.o.concurrency ?? 8, envelopes.length);
    const results = await Promise.allSettled(Array.from({ length: lanes }, worker));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    this.depth += envelopes.length;
    return envelopes.length;
  }

  /** One message, tried again (as the same message) on a retryable error. */
  private async publishOne(envelope: Envelope): Promise<void> {
    const attempts = this.o.attempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.o.queue.publish(envelope);
        return;
      } catch (err) {
        // The same message is already there: an earlier attempt landed after all.
        if (attempt > 1 && isQueueConflict(err, 'exists')) return;
        const retryable = err instanceof NexusError && err.retryable;
        if (!retryable || attempt >= attempts) throw err;
        await sleep(backoffDelay({ baseMs: 100, capMs: 1000 }, attempt));
      }
    }
  }
}
