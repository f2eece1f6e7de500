import { encodeEnvelopeVerbatim, type Envelope } from '../envelope.js';

/**
 * A dead letter keeps its message's envelope as JSON up to this size; a larger one as the message
 * body a queue writes (compact and compressed, base64 `body`): a batch that was a few hundred KB
 * compressed is several MB as expanded JSON, past what one etcd request takes.
 */
const INLINE_ENVELOPE_MAX = 64 * 1024;

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
}

/**
 * The value of a dead letter. `compressed` keeps the envelope as its compressed body whatever its
 * size: for several dead letters written in one transaction, which must fit one etcd request.
 */
export function deadLetterValue(input: {
  reason: string;
  attempts: number;
  deadAt: number;
  consumer?: string;
  envelope: Envelope | undefined;
  raw: Buffer | undefined;
  compressed?: boolean;
}): string {
  const out: DeadLetterRecord = {
    reason: input.reason,
    attempts: input.attempts,
    deadAt: input.deadAt,
    ...(input.consumer === undefined ? {} : { consumer: input.consumer }),
    ...(input.raw === undefined ? {} : { raw: input.raw.toString('base64') }),
  };
  if (input.envelope === undefined) return JSON.stringify(out);
  if (input.compressed !== true) {
    const json = JSON.stringify({ ...out, envelope: input.envelope });
    if (Buffer.byteLength(json) <= INLINE_ENVELOPE_MAX) return json;
  }
  return JSON.stringify({
    ...out,
    body: encodeEnvelopeVerbatim(input.envelope, 'zlib').toString('base64'),
  });
}
