import type { Envelope } from '../envelope.js';

/** The value stored under the dead-letter prefix (docs/queue.md, "Dead letters"). */
export interface DeadLetterRecord {
  readonly reason: string;
  readonly attempts: number;
  readonly deadAt: number;
  readonly consumer?: string;
  /** The message, when it could be decoded. */
  readonly envelope?: Envelope;
  /** The undecodable message body, base64. */
  readonly raw?: string;
}

export function deadLetterValue(input: {
  reason: string;
  attempts: number;
  deadAt: number;
  consumer?: string;
  envelope: Envelope | undefined;
  raw: Buffer | undefined;
}): string {
  const out: DeadLetterRecord = {
    reason: input.reason,
    attempts: input.attempts,
    deadAt: input.deadAt,
    ...(input.consumer === undefined ? {} : { consumer: input.consumer }),
    ...(input.envelope === undefined ? {} : { envelope: input.envelope }),
    ...(input.raw === undefined ? {} : { raw: input.raw.toString('base64') }),
  };
  return JSON.stringify(out);
}
