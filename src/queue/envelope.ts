import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { deflateSync, inflateSync } from 'node:zlib';
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
 * The JSON of an envelope of records made by this process (the streamer's), in the compact wire
 * form (version 2, src/queue/compact.ts); encodeEnvelopeWithin makes the body a queue writes
 * (compressed, unless QUEUE_COMPRESSION=none). Fields of a record outside the record model are not
 * written: use encodeEnvelopeVerbatim for an envelope read from the queue, which may come from
 * another producer.
 */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const { records, v: _v, ...head } = envelope;
  const h = JSON.stringify({ v: COMPACT_VERSION, ...head });
  return Buffer.from(`${h.slice(0, -1)},${compactRecordsJson(records)}}`);
}

/**
 * How a queue writes message bodies (QUEUE_COMPRESSION, docs/queue.md "Compression"): `zlib`
 * compresses each body of COMPRESS_FROM_BYTES or more (zlib, RFC 1950, level 1), `none` writes the
 * JSON as it is. Consumers read both, whatever their own setting.
 */
export type QueueCompression = 'zlib' | 'none';

/**
 * Bodies shorter than this are written as JSON: a few readings gain little, and a message that
 * small is rare (the streamer's batches are hundreds of readings).
 */
const COMPRESS_FROM_BYTES = 1024;
/**
 * Level 1: on DCGM batches of 500 readings it keeps 15-20 % of the bytes (278 -> 43 a reading at
 * 100,000 GPUs, 66 -> 13 at 80) for about 0.9 µs a reading to compress and 0.3 to inflate; level 6
 * saves 10 % more bytes for twice the time.
 */
const COMPRESS_LEVEL = 1;
/**
 * Largest body a compressed message may inflate to (ENVELOPE_INVALID past it): etcd takes 1.5 MiB
 * a request, and a DCGM batch inflates 3-7 times, so a message past this is not one of ours.
 */
export const MAX_INFLATED_BYTES = 64 * 1024 * 1024;
/** The first byte of a zlib stream with deflate's 32 KiB window (never the first of JSON). */
const ZLIB_FIRST_BYTE = 0x78;

/** The message body for `json` (an envelope's JSON) under `compression`. */
function wireBody(json: Buffer, compression: QueueCompression): Buffer {
  if (compression === 'none' || json.length < COMPRESS_FROM_BYTES) return json;
  const z = deflateSync(json, { level: COMPRESS_LEVEL });
  return z.length < json.length ? z : json;
}

/** Whether a message body is compressed (a zlib stream) rather than JSON. */
export function isCompressedBody(bytes: Buffer): boolean {
  return bytes[0] === ZLIB_FIRST_BYTE;
}

/**
 * encodeEnvelope as a queue writes it, for a queue that takes messages of up to `maxBytes`
 * (QUEUE_MESSAGE_TOO_LARGE): the limit is on the body as written, compressed or not.
 */
export function encodeEnvelopeWithin(
  envelope: Envelope,
  maxBytes: number,
  compression: QueueCompression,
): Buffer {
  const body = wireBody(encodeEnvelope(envelope), compression);
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
 * form (version 1) keeps. Compressed as `compression` says.
 */
export function encodeEnvelopeVerbatim(
  envelope: Envelope,
  compression: QueueCompression = 'none',
): Buffer {
  return wireBody(verbatimJson(envelope), compression);
}

/** The JSON encodeEnvelopeVerbatim writes, before compression. */
function verbatimJson(envelope: Envelope): Buffer {
  return inModel(envelope.records)
    ? encodeEnvelope(envelope)
    : Buffer.from(JSON.stringify(envelope));
}

/**
 * encodeEnvelopeVerbatim for a message written again (a retry, a replay) by a queue that takes
 * messages of up to `maxBytes`: compressed as `compression` says, or compressed all the same when
 * its JSON is larger than that (a message published compressed can only be written compressed).
 */
export function encodeEnvelopeAgain(
  envelope: Envelope,
  compression: QueueCompression,
  maxBytes: number,
): Buffer {
  const json = verbatimJson(envelope);
  const body = wireBody(json, compression);
  return body.length > maxBytes && compression === 'none' ? wireBody(json, 'zlib') : body;
}

/** The JSON text of a message body, inflated if it is compressed. */
function bodyText(bytes: Buffer | string): string {
  if (typeof bytes === 'string') return bytes;
  if (!isCompressedBody(bytes)) return bytes.toString('utf8');
  let json: Buffer;
  try {
    json = inflateSync(bytes, { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (err) {
    const past =
      err instanceof RangeError || (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE';
    throw new NexusError(
      'ENVELOPE_INVALID',
      past
        ? `compressed message inflates past ${MAX_INFLATED_BYTES} bytes`
        : `compressed message does not inflate: ${(err as Error).message}`,
    );
  }
  return json.toString('utf8');
}

/**
 * Decodes and validates a message body (JSON, or a zlib stream of it); throws ENVELOPE_INVALID
 * saying what is wrong.
 */
export function decodeEnvelope(bytes: Buffer | string): Envelope {
  const text = bodyText(bytes);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
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
