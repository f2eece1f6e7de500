import { SpanKind, type Span } from '@opentelemetry/api';
import { recordProblem, type TelemetryRecord } from '../core/record.js';
import { context, contextFrom, trace, tracer } from '../core/tracing.js';
import { labelsInBounds } from '../queue/compact.js';
import type { Delivery, RejectedRecord } from '../queue/types.js';
import type { Rejection } from './isolate.js';

/** A claimed batch, checked: what is written, and what each message has had refused. */
export interface Batch {
  readonly deliveries: readonly Delivery[];
  /** The records to write, each with the message it came from and its position there. */
  readonly records: readonly TelemetryRecord[];
  readonly owner: readonly { readonly delivery: Delivery; readonly index: number }[];
  /** Records refused, by message: out of bounds here, then refused by the database. */
  readonly refused: Map<Delivery, RejectedRecord[]>;
  /** Records in the claimed messages, written or refused. */
  readonly consumed: number;
  /** Records refused here, before the database saw them. */
  readonly outOfBounds: number;
}

/**
 * Decodes claimed messages into the records to write. A record outside the bounds of every record
 * (src/core/record.ts: identifier lengths and characters, labels, the timestamp window) is refused
 * like one the database refuses: to the dead letters with its reason, its neighbours stored. Any
 * producer's message gets this check.
 */
export function checkBatch(deliveries: readonly Delivery[], now = Date.now()): Batch {
  const records: TelemetryRecord[] = [];
  const owner: { delivery: Delivery; index: number }[] = [];
  const refused = new Map<Delivery, RejectedRecord[]>();
  let consumed = 0;
  for (const d of deliveries) {
    const labelsChecked = labelsInBounds(d.envelope.records);
    d.envelope.records.forEach((r, index) => {
      consumed++;
      const problem = recordProblem(r, now, labelsChecked);
      if (problem !== undefined) {
        refuseIn(refused, d, { index, reason: `record out of bounds: ${problem}` });
        return;
      }
      records.push(r);
      owner.push({ delivery: d, index });
    });
  }
  return { deliveries, records, owner, refused, consumed, outOfBounds: consumed - records.length };
}

/** Adds the records the database refused (positions in `batch.records`) to their messages'. */
export function addRefused(batch: Batch, rejected: readonly Rejection[]): void {
  for (const r of rejected) {
    const o = batch.owner[r.index];
    if (o !== undefined) refuseIn(batch.refused, o.delivery, { index: o.index, reason: r.reason });
  }
}

/** The messages with nothing refused: acked together. */
export function cleanDeliveries(batch: Batch): Delivery[] {
  return batch.deliveries.filter((d) => !batch.refused.has(d));
}

/** The trace of a batch: one consume span per message, and the store span (the transaction). */
export interface BatchSpans {
  readonly consume: readonly Span[];
  readonly store: Span;
}

/**
 * One consume span per message, continuing the trace its streamer started; the store span (the
 * transaction) is a child of the first and links the others.
 */
export function startBatchSpans(batch: Batch): BatchSpans {
  const consume = batch.deliveries.map((d) =>
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
  const first = consume[0];
  const store = tracer().startSpan(
    'nexus.store',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'db.system': 'postgresql',
        'nexus.records': batch.records.length,
        'nexus.messages': batch.deliveries.length,
      },
      links: consume.slice(1).map((sp) => ({ context: sp.spanContext() })),
    },
    first === undefined ? undefined : trace.setSpan(context.active(), first),
  );
  return { consume, store };
}

function refuseIn(
  refused: Map<Delivery, RejectedRecord[]>,
  delivery: Delivery,
  rejection: RejectedRecord,
): void {
  const list = refused.get(delivery) ?? [];
  list.push(rejection);
  refused.set(delivery, list);
}
