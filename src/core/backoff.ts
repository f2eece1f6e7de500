export interface BackoffPolicy {
  /** Delay before the first retry, in milliseconds. */
  readonly baseMs: number;
  /** Upper bound of any delay, in milliseconds. */
  readonly capMs: number;
  /**
   * Fraction of the delay that is randomised: 0 gives a fixed exponential delay, 1 gives "full
   * jitter" (uniform between 0 and the exponential delay). Default 0.5 ("equal jitter").
   */
  readonly jitter?: number;
}

/**
 * Capped exponential backoff with jitter. `attempt` counts from 1 (the first retry).
 * The result always lies in [exp * (1 - jitter), exp] where exp = min(cap, base * 2^(attempt-1)).
 */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, Math.floor(attempt));
  const exp = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(n - 1, 52));
  const jitter = Math.min(1, Math.max(0, policy.jitter ?? 0.5));
  return Math.round(exp * (1 - jitter) + exp * jitter * random());
}

/** Resolves after `ms` milliseconds, or early (without error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true || ms <= 0) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
