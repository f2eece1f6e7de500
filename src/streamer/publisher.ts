import { basename } from 'node:path';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { NexusMetrics } from '../core/metrics.js';
import { traceContextOf, tracer, type Span } from '../core/tracing.js';
import { isQueueConflict } from '../queue/conflict.js';
import { ENVELOPE_VERSION, type Envelope } from '../queue/envelope.js';
import type { LaneState, PreparedMessage, StreamHandle } from '../queue/types.js';
import { asLane, type LaneRecord } from './checkpoint.js';
import type { Batch, Lanes } from './lanes.js';
import type { UntilAnswered } from './queue-outage.js';

export interface PublisherOptions {
  readonly handle: StreamHandle;
  readonly lanes: Lanes;
  /** Makes message ids unique per run of the stream (the checkpoint's runTag). */
  readonly runTag: string;
  readonly streamId: string;
  readonly producerId: string;
  readonly clusterId: string;
  readonly csvFile: string;
  readonly timestampMode: 'original' | 'live';
  readonly untilAnswered: UntilAnswered;
  readonly logger: Logger;
  readonly metrics?: NexusMetrics | undefined;
}

/**
 * Publishes batches, each as one message whose publish moves its lane's checkpoint in the same
 * atomic step (docs/queue.md, "Exactly-once publish"). A queue outage is waited out
 * (queue-outage.ts); once stopping, a few more tries, then the rest stays unread and a restart
 * resumes from the checkpoint. Each publish is a span whose context travels in the envelope.
 */
export class Publisher {
  constructor(private readonly o: PublisherOptions) {}

  /** Publishes `batch` on its lane; the lane and the watermark move on once it is answered. */
  async publish(batch: Batch): Promise<void> {
    const o = this.o;
    const lane = o.lanes.laneOf(batch.index);
    // The publish span's context travels in the envelope, so the collector's spans join the trace.
    await tracer().startActiveSpan(
      'nexus.publish',
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          'messaging.system': 'etcd',
          'nexus.batch.index': batch.index,
          'nexus.batch.records': batch.size,
          'nexus.lane': lane,
        },
      },
      async (span: Span) => {
        const state = {
          batch: batch.index,
          loop: batch.loop,
          end: batch.end,
          line: batch.lastLine,
          records: batch.size,
          wm: o.lanes.contiguous,
        } satisfies LaneRecord;
        const id = this.idOf(batch);
        span.setAttribute('messaging.message.id', id);
        let t0 = 0;
        let token: string;
        let message: PreparedMessage;
        try {
          // Encoded once, here: the records are not held while the publish is in flight.
          message = o.handle.prepare(this.envelope(batch, id, traceContextOf(span)));
          t0 = performance.now();
          token = await o.untilAnswered(
            'publish',
            () => this.attempt(message, batch, lane, state),
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
        o.lanes.published(batch, token);
        const m = o.metrics;
        if (m !== undefined) {
          m.recordsPublished.inc(batch.size);
          m.batchesPublished.inc();
          m.publishDuration.observe(seconds);
          if (message.bytes !== undefined) m.messageBytes.observe(message.bytes);
        }
        // The batch id is the correlation id: the collector logs the same id when it stores it.
        o.logger.debug(
          {
            batch: id,
            lines: [batch.firstLine, batch.lastLine],
            records: batch.size,
            lane,
            ms: Math.round(seconds * 1000),
            trace_id: span.spanContext().traceId,
          },
          'batch published',
        );
      },
    );
  }

  /** One fenced publish; returns the lane's new token. */
  private async attempt(
    message: PreparedMessage,
    batch: Batch,
    lane: number,
    state: LaneState,
  ): Promise<string> {
    const o = this.o;
    try {
      return await o.handle.publish(message, lane, o.lanes.token(batch.index), state);
    } catch (err) {
      o.metrics?.publishErrors.inc();
      if (isQueueConflict(err, 'lane-moved')) {
        // An earlier attempt that timed out may have committed: look.
        const lanes = await o.handle.readLanes();
        const now = lanes.find((l) => l.lane === lane);
        if (now !== undefined && asLane(now.state).batch === batch.index) return now.token;
        throw new NexusError(
          'INTERNAL',
          `lane ${lane} moved under this streamer: is another streamer writing stream ${o.streamId}?`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  /** The message id of `batch`: unique per run of the stream. */
  private idOf(batch: Batch): string {
    return `${batch.index}-${this.o.runTag}`;
  }

  private envelope(batch: Batch, id: string, trace: Envelope['trace']): Envelope {
    const o = this.o;
    let records = batch.take();
    if (o.timestampMode === 'live') {
      let min = Number.POSITIVE_INFINITY;
      for (const r of records) if (r.timestamp < min) min = r.timestamp;
      const shift = Date.now() - min;
      records = records.map((r) => ({ ...r, timestamp: r.timestamp + shift }));
    }
    return {
      v: ENVELOPE_VERSION,
      id,
      producer: o.producerId,
      cluster: o.clusterId,
      createdAt: Date.now(),
      attempt: 0,
      ...(trace === undefined ? {} : { trace }),
      source: {
        file: basename(o.csvFile),
        firstLine: batch.firstLine,
        lastLine: batch.lastLine,
      },
      records,
    };
  }
}
