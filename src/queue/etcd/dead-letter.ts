import { createHash } from 'node:crypto';
import type { Logger } from '../../core/logger.js';
import { encodeEnvelopeVerbatim, type Envelope } from '../envelope.js';
import type { OmittedBody } from '../types.js';

/**
 * A dead letter keeps its message's envelope as JSON up to this size; a larger one as the message
 * body a queue writes (compact and compressed, base64 `body`): a batch that was a few hundred KB
 * compressed is several MB as expanded JSON, past what one etcd request takes.
 */
const INLINE_ENVELOPE_MAX = 64 * 1024;

/**
 * Largest dead letter written. etcd takes 1.5 MiB (1,572,864 bytes) a request, and the transaction
 * that writes a dead letter also deletes the message and its claim (their keys, well under the
 * 12 KB left; a settle, which writes several, counts their keys as well). Every message this release
 * publishes fits whole (MAX_MESSAGE_BYTES, base64: 1,533,336 bytes, and the reason); a larger body
 * (another producer's, or an earlier release's up to 1.4 MB) is not kept: the dead letter says how
 * large it was and its SHA-256 (`omitted`), instead of a write that could never succeed.
 */
export const DEAD_LETTER_MAX_BYTES = 1_560_000;

/** Characters of a reason kept (error messages; a longer one is cut, saying how much was). */
const REASON_MAX = 1000;

/** The value stored under the dead-letter prefix (docs/queue.md, "Dead letters"). */
export interface DeadLetterRecord {
  readonly reason: string;
  readonly attempts: number;
  readonly deadAt: number;
  readonly consumer?: string;
  /** The message, when it could be decoded and is small (INLINE_ENVELOPE_MAX as JSON). */
  readonly envelope?: Envelope;
  /** The message, when it could be decoded and is larger: its body, compressed, base64. */
  readonly body?: string;
  /** The undecodable message body, base64. */
  readonly raw?: string;
  /** The body (`raw` or `body`) too large to keep in one etcd request, described instead. */
  readonly omitted?: OmittedBody;
}

function boundedReason(reason: string): string {
  return reason.length <= REASON_MAX
    ? reason
    : `${reason.slice(0, REASON_MAX)}... (${reason.length - REASON_MAX} more characters)`;
}

/**
 * The value of a dead letter, at most DEAD_LETTER_MAX_BYTES, and the body it could not keep, if
 * any (its writer logs that as an error). `compressed` keeps the envelope as its compressed body
 * whatever its size: for several dead letters written in one transaction, which must fit one etcd
 * request.
 */
export function deadLetterValue(input: {
  reason: string;
  attempts: number;
  deadAt: number;
  consumer?: string;
  envelope: Envelope | undefined;
  raw: Buffer | undefined;
  compressed?: boolean;
}): { readonly value: string; readonly omitted?: OmittedBody } {
  const head = {
    reason: boundedReason(input.reason),
    attempts: input.attempts,
    deadAt: input.deadAt,
    ...(input.consumer === undefined ? {} : { consumer: input.consumer }),
  };
  if (input.raw !== undefined) return kept(head, 'raw', input.raw);
  if (input.envelope === undefined) return { value: JSON.stringify(head) };
  if (input.compressed !== true) {
    const json = JSON.stringify({ ...head, envelope: input.envelope });
    if (Buffer.byteLength(json) <= INLINE_ENVELOPE_MAX) return { value: json };
  }
  return kept(head, 'body', encodeEnvelopeVerbatim(input.envelope, 'zlib'));
}

/** A dead letter keeping `bytes` (base64) as `field`, or describing them when too large. */
function kept(
  head: DeadLetterRecord,
  field: 'raw' | 'body',
  bytes: Buffer,
): { readonly value: string; readonly omitted?: OmittedBody } {
  const value = JSON.stringify({ ...head, [field]: bytes.toString('base64') });
  if (Buffer.byteLength(value) <= DEAD_LETTER_MAX_BYTES) return { value };
  const omitted: OmittedBody = {
    field,
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
  const reason = `${head.reason} (its ${bytes.length}-byte body was too large to keep in one etcd request and was not kept)`;
  return { value: JSON.stringify({ ...head, reason, omitted }), omitted };
}

/** Says, as an error, that a dead letter was written without its message's body. */
export function logOmitted(logger: Logger, message: string, omitted: OmittedBody): void {
  logger.error(
    { message, bytes: omitted.bytes, sha256: omitted.sha256 },
    'dead letter written without its message body: too large to keep in one etcd request (a message of another producer, or of a release before 1.15 MB messages)',
  );
}
