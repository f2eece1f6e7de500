import type { Logger } from '../core/logger.js';
import { TUNING } from './tuning.js';

export interface ShutdownOptions {
  /** Exit anyway this long after the first signal (default TUNING.forceExitAfterMs, 30 s). */
  readonly forceAfterMs?: number;
  /**
   * What a forced exit now would lose, said in its log line (e.g. records read but not stored);
   * undefined: nothing.
   */
  readonly atRisk?: () => string | undefined;
  /**
   * Once the graceful stop has finished, exit anyway this long after (default
   * TUNING.exitAfterStopMs) if something still holds the process open.
   */
  readonly exitAfterStopMs?: number;
}

/** What holds the process open, counted by kind ("Timeout x2, TCPSocketWrap"). */
function openHandles(): string {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo())
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return [...counts].map(([kind, n]) => (n === 1 ? kind : `${kind} x${n}`)).join(', ');
}

/**
 * Called once a command has finished its work and closed what it opened: the process then ends
 * when nothing is left to run. Should a library leave a handle open all the same (a reconnect timer
 * of the etcd client after a member failed, say), it exits `ms` later with the status the command
 * set, saying what was still open (the timer is unreferenced: it fires only if something else
 * still holds the process).
 */
export function exitIfStillRunning(logger: Logger, ms: number = TUNING.exitAfterStopMs): void {
  setTimeout(() => {
    logger.warn(
      { after_ms: ms, open: openHandles() },
      `stopped, but still running ${ms} ms later: exiting now`,
    );
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  }, ms).unref();
}

/** What the graceful stop is doing now, named so that a forced exit can say what it cut short. */
export interface ShutdownProgress {
  step(what: string): void;
}

/**
 * Two-phase shutdown: the first SIGINT/SIGTERM calls `graceful` (finish in-flight work, save state);
 * a second one, or `forceAfterMs` without the graceful stop finishing, exits at once. Both ways out
 * go through one exit path: a log line that says which step of the graceful stop was not finished
 * and what is lost (`atRisk`), then `process.exit` (pino's destination writes what it holds on
 * exit), 130 after a second signal, 1 after the timeout.
 *
 * Once the graceful stop has finished, the process ends when nothing is left to run, or
 * `exitAfterStopMs` later (`exitIfStillRunning`): a stopped component never lingers, and never
 * exits 1 for a clean stop.
 */
export function onShutdown(
  logger: Logger,
  graceful: (signal: string, progress: ShutdownProgress) => Promise<void>,
  options: ShutdownOptions = {},
): void {
  const forceAfterMs = options.forceAfterMs ?? TUNING.forceExitAfterMs;
  const exitAfterStopMs = options.exitAfterStopMs ?? TUNING.exitAfterStopMs;
  const risk = (): string => {
    const lost = options.atRisk?.();
    return lost === undefined ? '' : `: ${lost}`;
  };
  let stopping = false;
  let current = 'the graceful stop';
  const progress: ShutdownProgress = {
    step: (what) => {
      current = what;
    },
  };
  const exitNow = (code: number, fields: Record<string, unknown>, why: string): void => {
    logger.warn(
      { ...fields, unfinished: current },
      `${why}: exiting now; not finished: ${current}${risk()}`,
    );
    process.exit(code);
  };
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      exitNow(130, { signal }, 'second signal');
      return;
    }
    stopping = true;
    logger.info({ signal }, 'shutting down gracefully (send again to force)');
    const timer = setTimeout(() => {
      exitNow(1, { after_ms: forceAfterMs }, 'graceful shutdown took too long');
    }, forceAfterMs);
    timer.unref();
    graceful(signal, progress)
      .catch((err: unknown) => {
        logger.error({ err }, `error during shutdown${risk()}`);
        process.exitCode = 1;
      })
      .finally(() => {
        clearTimeout(timer);
        exitIfStillRunning(logger, exitAfterStopMs);
      });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
