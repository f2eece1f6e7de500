/**
 * Child process for test/unit/cli/signals.test.ts: installs the CLI's two-phase shutdown, says
 * "ready" on stdout, and waits (an interval holds it open). Its graceful stop names its step and
 * then never finishes, or with `linger` finishes at once, leaving the interval behind.
 *
 *   tsx test/helpers/shutdown-child.ts <forceAfterMs> [linger <exitAfterStopMs>]
 *
 * With `done <ms>` instead, no signal is needed: it is a command that has finished its work on its
 * own (exit status 3 set) while the interval still holds the process, and calls
 * `exitIfStillRunning`.
 */
import { createLogger } from '../../src/core/logger.js';
import { exitIfStillRunning, onShutdown } from '../../src/cli/signals.js';

const logger = createLogger({ level: 'info' });
const linger = process.argv[3] === 'linger';
if (process.argv[2] === 'done') {
  process.exitCode = 3;
  exitIfStillRunning(logger, Number(process.argv[3] ?? 2000));
} else
  onShutdown(
    logger,
    async (_signal, progress) => {
      progress.step('writing the last batch');
      if (linger) return;
      await new Promise(() => undefined);
    },
    {
      forceAfterMs: Number(process.argv[2] ?? 30_000),
      ...(linger ? { exitAfterStopMs: Number(process.argv[4] ?? 2000) } : {}),
    },
  );
process.stdout.write('ready\n');
setInterval(() => undefined, 1 << 30);
