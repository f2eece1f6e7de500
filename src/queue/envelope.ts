import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { NexusError } from '../core/errors.js';
import type { TelemetryRecord } from '../core/record.js';

/** The wire schema of a queue message. docs/queue.md describes it for other implementations. */
export const ENVELOPE_VERSION = 1;

const RecordSchema = Type.Object({
  timestamp: Type.Integer(),
  metric: Type.String({ minLength: 1 }),
  gpu: Type.Integer({ minimum: 0 }),
  hostname: Type.String({ minLength: 1 }),
  value: Type.Number(),
  device: Type.Optional(Type.String()),
  uuid: Type.Optional(Type.String()),
  model: Type.Optional(Type.String()),
  container: Type.Optional(Type.String()),
  pod: Type.Optional(Type.String()),
  namespace: Type.Optional(Type.String()),
  labels: Type.Record(Type.String(), Type.String()),
});

export const EnvelopeSchema = Type.Object({
  v: Type.Literal(ENVELOPE_VERSION),
  /** Batch id, unique per producer; also the sequence part of the message key. */
  id: Type.String({ pattern: '^[A-Za-z0-9.-]{1,64}$' }),
  producer: Type.String({ minLength: 1 }),
  cluster: Type.String({ minLength: 1 }),
  /** Epoch ms of the first publish. */
  createdAt: Type.Integer(),
  /** Failed deliveries so far. */
  attempt: Type.Integer({ minimum: 0 }),
  /** W3C trace context of the publish span. */
  trace: Type.Optional(
    Type.Object({ traceparent: Type.String(), tracestate: Type.Optional(Type.String()) }),
  ),
  /** Where the records came from: file and line range, for correlation. */
  source: Type.Optional(
    Type.Object({
      file: Type.String(),
      firstLine: Type.Integer(),
      lastLine: Type.Integer(),
    }),
  ),
  /** Why the last delivery failed. */
  lastError: Type.Optional(Type.String()),
  records: Type.Array(RecordSchema, { minItems: 1 }),
});

export type Envelope = Static<typeof EnvelopeSchema>;

const check = TypeCompiler.Compile(EnvelopeSchema);

// A compile-time check that the wire record and the record model agree.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const WIRE_RECORD_MATCHES_MODEL: Same<Envelope['records'][number], TelemetryRecord> = true;

export function encodeEnvelope(envelope: Envelope): Buffer {
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
  const problem = envelopeProblem(parsed);
  if (problem !== undefined) throw new NexusError('ENVELOPE_INVALID', problem);
  return parsed as Envelope;
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
