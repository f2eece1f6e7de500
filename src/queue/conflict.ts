import { NexusError } from '../core/errors.js';

/**
 * Why a queue refused a write with QUEUE_CONFLICT:
 * - `lane-moved`: a fenced stream publish found its lane at another token than the one it expected
 *   (the batch, or a later one, was published on that lane already);
 * - `exists`: a message of that name is already in the queue.
 */
export type QueueConflictReason = 'lane-moved' | 'exists';

/**
 * A QUEUE_CONFLICT with its reason as a typed field. `details.reason` carries the same value, so
 * logs and callers that read the details see no difference.
 */
export class QueueConflict extends NexusError {
  readonly reason: QueueConflictReason;

  constructor(
    reason: QueueConflictReason,
    message: string,
    details: Readonly<Record<string, unknown>> = {},
  ) {
    super('QUEUE_CONFLICT', message, { details: { reason, ...details } });
    this.reason = reason;
  }
}

/** True for a QUEUE_CONFLICT of the given reason (of any reason, without one). */
export function isQueueConflict(err: unknown, reason?: QueueConflictReason): err is QueueConflict {
  return err instanceof QueueConflict && (reason === undefined || err.reason === reason);
}
