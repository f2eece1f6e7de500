import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { NexusError } from '../core/errors.js';
import { OPTIONAL_RECORD_FIELDS, type TelemetryRecord } from '../core/record.js';
import {
  COMPACT_VERSION,
  compactRecordsJson,
  decodeCompact,
  type CompactEnvelope,
} from './compact.js';
import { ENVELOPE_HEADER, GPU_IDENTITY } from './envelope-fields.js';

/**
 * A queue message (docs/queue.md describes it for other implementations). In memory, and on the
 * wire in its expanded form, it is version 1; producers write the compact form, version 2
 * (compact.ts), and consumers read both.
 */
export const ENVELOPE_VERSION = 1;

const RecordSchema = Type.Object({
  timestamp: Type.Integer(),
  metric: Type.String({ minLength: 1 }),
  value: Type.Number(),
  ...GPU_IDENTITY,
  labels: Type.Record(Type.String(), Type.String()),
});

export const EnvelopeSchema = Type.Object({
  v: Type.Literal(ENVELOPE_VERSION),
  ...ENVELOPE_HEADER,
  records: Type.Array(RecordSchema, { minItems: 1 }),
});

export type Envelope = Static<typeof EnvelopeSchema>;

const check = TypeCompiler.Compile(EnvelopeSchema);

// A compile-time check that the wire record and the record model agree.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const WIRE_RECORD_MATCHES_MODEL: Same<Envelope['records'][number], TelemetryRecord> = true;

/**
 * The message body of an envelope of records made by this process (the streamer's), in the compact
 * wire form (version 2, src/queue/compact.ts). Fields of a record outside the record model are not
 * written: use encodeEnvelopeVerbatim for an envelope read from the queue, which may come from
 * another producer.
 */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const { records, v: _v, ...head } = envelope;
  const h = JSON.stringify({ v: COMPACT_VERSION, ...head });
  return Buffer.from(`${h.slice(0, -1)},${compactRecordsJson(records)}}`);
}

/** encodeEnvelope, for a queue that takes messages of up to `maxBytes` (QUEUE_MESSAGE_TOO_LARGE). */
export function encodeEnvelopeWithin(envelope: Envelope, maxBytes: number): Buffer {
  const body = encodeEnvelope(envelope);
  if (body.length > maxBytes) {
    throw new NexusError(
      'QUEUE_MESSAGE_TOO_LARGE',
      `message of ${body.length} bytes exceeds the ${maxBytes}-byte limit: lower BATCH_SIZE`,
    );
  }
  return body;
}

const MODEL_FIELDS = new Set<string>([
  'timestamp',
  'metric',
  'gpu',
  'hostname',
  'value',
  'labels',
  ...OPTIONAL_RECORD_FIELDS,
]);

/** Whether every record holds only fields of the record model (the compact form keeps them all). */
function inModel(records: readonly TelemetryRecord[]): boolean {
  for (const r of records) for (const k in r) if (!MODEL_FIELDS.has(k)) return false;
  return true;
}

/**
 * The message body of an envelope exactly as it is, unknown fields included: for an envelope read
 * from the queue and published again (retry, dead letter, replay). It is the compact form unless a
 * record carries fields outside the record model (another producer's), which only the expanded
 * form (version 1) keeps.
 */
export function encodeEnvelopeVerbatim(envelope: Envelope): Buffer {
  if (inModel(envelope.records)) return encodeEnvelope(envelope);
  return Buffer.from(JSON.stringify(envelope));
}

/** Decodes and validates a message body; throws ENVELOPE_INVALID saying what is wrong. */
export function decodeEnvelope(bytes: Buffer | string): Envelope {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
  } catch (err) {
    throw new NexusError('ENVELOPE_INVALID', `message is not JSON: ${(err as Error).message}`);
  }
  if (isCompact(parsed)) {
    const read = decodeCompact(parsed);
    if ('problem' in read)
      throw new NexusError(
        'ENVELOPE_INVALID',
        `message is not a valid envelope (v=2)${read.problem}`,
      );
    const { metrics: _m, labelSets: _l, series: _s, records: _r, v: _v, ...head } = parsed;
    return { v: ENVELOPE_VERSION, ...head, records: read.records };
  }
  const problem = envelopeProblem(parsed);
  if (problem !== undefined) throw new NexusError('ENVELOPE_INVALID', problem);
  return parsed as Envelope;
}

function isCompact(value: unknown): value is CompactEnvelope {
  return typeof value === 'object' && value !== null && 'v' in value && value.v === COMPACT_VERSION;
}

/** Why a value is not a valid envelope, or undefined when it is one. */
export function envelopeProblem(value: unknown): string | undefined {
  if (check.Check(value)) return undefined;
  const first = check.Errors(value).First();
  const where = first === undefined ? '' : ` at ${first.path || '/'}: ${first.message}`;
  const version =
    typeof value === 'object' && value !== null && 'v' in value ? ` (v=${String(value.v)})` : '';
  return `message is not a valid envelope${version}${where}`;
}
