import type { Logger } from '../core/logger.js';

/**
 * Two-phase shutdown: the first SIGINT/SIGTERM calls `graceful` (finish in-flight work, save state);
 * a second one, or `forceAfterMs` without the graceful stop finishing, exits at once.
 */
export function onShutdown(
  logger: Logger,
  graceful: (signal: string) => Promise<void>,
  forceAfterMs = 30_000,
): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down gracefully (send again to force)');
    const timer = setTimeout(() => {
      logger.error({ after_ms: forceAfterMs }, 'graceful shutdown took too long: exiting');
      process.exit(1);
    }, forceAfterMs);
    timer.unref();
    graceful(signal).catch((err: unknown) => {
      logger.error({ err }, 'error during shutdown');
      process.exitCode = 1;
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
