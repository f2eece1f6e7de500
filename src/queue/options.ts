import type { BackoffPolicy } from '../core/backoff.js';
import type { Logger } from '../core/logger.js';

/** Behaviour shared by every queue backend. */
export interface QueueOptions {
  readonly clusterId: string;
  /** Deliveries of a failing message before it is dead-lettered. */
  readonly maxAttempts: number;
  readonly retry: BackoffPolicy;
  /** How long a message may wait in the queue (ms). */
  readonly messageTtlMs: number;
  /** A consumer's session lease (ms): its claims lapse this long after it dies. */
  readonly leaseTtlMs: number;
  /** Longest wait between polls when no wake-up arrives (ms). */
  readonly pollTimeoutMs: number;
  readonly logger: Logger;
}

export const DEFAULT_QUEUE_OPTIONS = {
  maxAttempts: 5,
  retry: { baseMs: 1000, capMs: 300_000, jitter: 0.5 },
  messageTtlMs: 7 * 86_400_000,
  leaseTtlMs: 10_000,
  pollTimeoutMs: 5000,
} as const;

/** Produces a short random suffix for consumer and producer ids. */
export function randomSuffix(): string {
  return Math.random().toString(36).slice(2, 8).padEnd(6, '0');
}

/** The size of a listing's page (dead letters, messages): 1 to 1,000, 100 when not given. */
export function pageLimit(limit: number | undefined): number {
  return Math.max(1, Math.min(limit ?? 100, 1000));
}
