/** Every long-lived component starts and stops through this interface. */
export interface Lifecycle {
  start(): Promise<void>;
  /** Idempotent: the second and later calls return the first call's promise. */
  stop(): Promise<void>;
}

/**
 * Wraps a shutdown routine so that it runs once and every caller gets the same promise
 * (the OpenTelemetry habit).
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let result: Promise<T> | undefined;
  return () => {
    result ??= fn();
    return result;
  };
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
