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

/**
 * The JSON of each frozen label set, written once however many records share it. The CSV reader
 * shares one frozen object between the rows of a series, so a batch's labels cost a lookup each.
 */
const labelsJson = new WeakMap<object, string>();

function labelsToJson(labels: Readonly<Record<string, string>>): string {
  if (!Object.isFrozen(labels)) return JSON.stringify(labels);
  let json = labelsJson.get(labels);
  if (json === undefined) {
    json = JSON.stringify(labels);
    labelsJson.set(labels, json);
  }
  return json;
}

/** A number as JSON.stringify writes it (non-finite values are null). */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

function recordJson(r: TelemetryRecord): string {
  let s = `{"timestamp":${num(r.timestamp)},"metric":${JSON.stringify(r.metric)},"gpu":${num(r.gpu)},"hostname":${JSON.stringify(r.hostname)},"value":${num(r.value)}`;
  if (r.device !== undefined) s += `,"device":${JSON.stringify(r.device)}`;
  if (r.uuid !== undefined) s += `,"uuid":${JSON.stringify(r.uuid)}`;
  if (r.model !== undefined) s += `,"model":${JSON.stringify(r.model)}`;
  if (r.container !== undefined) s += `,"container":${JSON.stringify(r.container)}`;
  if (r.pod !== undefined) s += `,"pod":${JSON.stringify(r.pod)}`;
  if (r.namespace !== undefined) s += `,"namespace":${JSON.stringify(r.namespace)}`;
  return `${s},"labels":${labelsToJson(r.labels)}}`;
}

/**
 * The message body of an envelope of records made by this process (the streamer's): the same JSON
 * as JSON.stringify gives, written field by field, with each shared label set serialised once.
 * Fields of a record outside the record model are not written: use encodeEnvelopeVerbatim for an
 * envelope read from the queue, which may come from another producer.
 */
export function encodeEnvelope(envelope: Envelope): Buffer {
  const { records, ...head } = envelope;
  const h = JSON.stringify(head);
  const parts: string[] = new Array<string>(records.length);
  for (let i = 0; i < records.length; i++) parts[i] = recordJson(records[i] as TelemetryRecord);
  return Buffer.from(`${h.slice(0, -1)}${h.length > 2 ? ',' : ''}"records":[${parts.join(',')}]}`);
}

/** The message body of an envelope exactly as it is, unknown fields included. */
export function encodeEnvelopeVerbatim(envelope: Envelope): Buffer {
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
