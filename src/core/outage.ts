import { backoffDelay, sleep, type BackoffPolicy } from './backoff.js';
import { describeError, isNexusError } from './errors.js';
import type { Logger } from './logger.js';

/** The backoff the services use while a dependency (etcd, PostgreSQL) is unreachable. */
export const OUTAGE_BACKOFF: BackoffPolicy = { baseMs: 200, capMs: 10_000, jitter: 0.5 };

export interface OutageOptions {
  /** What may be unreachable, as logs and /readyz name it: "etcd". */
  readonly dependency: string;
  readonly logger: Logger;
  readonly backoff?: BackoffPolicy;
  /** Called on every failed attempt (to count it). */
  readonly onFailure?: (err: unknown) => void;
  /** Called when an outage begins (true) and when it ends (false). */
  readonly onChange?: (down: boolean) => void;
  /** The log lines of an outage's beginning and end, when the component words them its own way. */
  readonly wording?: OutageWording;
}

export interface OutageWording {
  /** The warning when an outage begins, from the operation that failed. */
  down(what: string): string;
  /** The line when it ends, from how long it lasted. */
  back(downMs: number): string;
}

export interface RetryOptions {
  /** Wakes a backoff sleep early (the next attempt runs at once). */
  readonly signal?: AbortSignal;
  /** Stop retrying and throw the last error (e.g. when shutting down). */
  readonly giveUp?: (attempt: number) => boolean;
  /**
   * Which failures are waited out (default: those the adapters mark retryable, `isRetryable`);
   * any other is thrown at once, without counting as an outage.
   */
  readonly retryIf?: (err: unknown) => boolean;
}

/** An error worth waiting out: the adapters mark what a later attempt may fix. */
export function isRetryable(err: unknown): boolean {
  return isNexusError(err) && err.retryable;
}

/**
 * A dependency's outages as one component sees them: a wait, never an exit. `retry` runs an
 * operation until it succeeds, sleeping with capped exponential backoff and jitter
 * (src/core/backoff.ts) while it fails with a retryable error. However many operations wait at
 * once, an outage is logged once when it begins (warn) and once when it ends (info, with its
 * length), and `reason` says what the component is waiting for (for /readyz) meanwhile.
 */
export class Outage {
  private since: number | undefined;
  private lastError = '';
  private readonly backoff: BackoffPolicy;

  constructor(private readonly o: OutageOptions) {
    this.backoff = o.backoff ?? OUTAGE_BACKOFF;
  }

  /** True while the dependency is unavailable (since a failure, until the next success). */
  get down(): boolean {
    return this.since !== undefined;
  }

  /** Why the component is waiting, or undefined when it is not. */
  get reason(): string | undefined {
    if (this.since === undefined) return undefined;
    const s = Math.round((Date.now() - this.since) / 1000);
    return `${this.o.dependency} unavailable for ${s} s: ${this.lastError}`;
  }

  /** Notes a failed attempt at `what`; the first of an outage is logged. */
  failed(err: unknown, what: string): void {
    this.lastError = describeError(err);
    this.o.onFailure?.(err);
    if (this.since !== undefined) {
      this.o.logger.debug({ err: this.lastError, what }, `${what} failed; still waiting`);
      return;
    }
    this.since = Date.now();
    this.o.logger.warn(
      { err: this.lastError, what, dependency: this.o.dependency },
      this.o.wording?.down(what) ??
        `${this.o.dependency} unavailable: waiting for it to come back (${what} failed)`,
    );
    this.o.onChange?.(true);
  }

  /** Notes a success: ends the outage, if there was one. */
  recovered(): void {
    if (this.since === undefined) return;
    const ms = Date.now() - this.since;
    this.since = undefined;
    this.o.logger.info(
      { down_ms: ms, dependency: this.o.dependency },
      this.o.wording?.back(ms) ??
        `${this.o.dependency} available again after ${(ms / 1000).toFixed(1)} s; carrying on`,
    );
    this.o.onChange?.(false);
  }

  /**
   * Runs `fn` until it succeeds. A retryable failure (`retryIf`) is waited out with backoff;
   * anything else, or a failure once `giveUp` says so, is thrown.
   */
  async retry<T>(what: string, fn: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        const value = await fn();
        this.recovered();
        return value;
      } catch (err) {
        if (!(options.retryIf ?? isRetryable)(err)) throw err;
        this.failed(err, what);
        if (options.giveUp?.(attempt) === true) throw err;
        await sleep(backoffDelay(this.backoff, attempt), options.signal);
      }
    }
  }
}
