/**
 * Child process for test/unit/cli/signals.test.ts: installs the CLI's two-phase shutdown with a
 * graceful stop that names its step and then never finishes, says "ready" on stdout, and waits.
 *
 *   tsx test/helpers/shutdown-child.ts <forceAfterMs>
 */
import { createLogger } from '../../src/core/logger.js';
import { onShutdown } from '../../src/cli/signals.js';

const logger = createLogger({ level: 'info' });
onShutdown(
  logger,
  async (_signal, progress) => {
    progress.step('writing the last batch');
    await new Promise(() => undefined);
  },
  { forceAfterMs: Number(process.argv[2] ?? 30_000) },
);
process.stdout.write('ready\n');
setInterval(() => undefined, 1 << 30);
