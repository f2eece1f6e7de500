import type { Logger } from '../core/logger.js';

export interface ShutdownOptions {
  /** Exit anyway this long after the first signal (default 30 s). */
  readonly forceAfterMs?: number;
  /**
   * What a forced exit now would lose, said in its log line (e.g. records read but not stored);
   * undefined: nothing.
   */
  readonly atRisk?: () => string | undefined;
}

/**
 * Two-phase shutdown: the first SIGINT/SIGTERM calls `graceful` (finish in-flight work, save state);
 * a second one, or `forceAfterMs` without the graceful stop finishing, exits at once.
 */
export function onShutdown(
  logger: Logger,
  graceful: (signal: string) => Promise<void>,
  options: ShutdownOptions = {},
): void {
  const forceAfterMs = options.forceAfterMs ?? 30_000;
  const risk = (): string => {
    const lost = options.atRisk?.();
    return lost === undefined ? '' : `: ${lost}`;
  };
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, `second signal: exiting now${risk()}`);
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down gracefully (send again to force)');
    const timer = setTimeout(() => {
      logger.error({ after_ms: forceAfterMs }, `graceful shutdown took too long: exiting${risk()}`);
      process.exit(1);
    }, forceAfterMs);
    timer.unref();
    graceful(signal).catch((err: unknown) => {
      logger.error({ err }, `error during shutdown${risk()}`);
      process.exitCode = 1;
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
