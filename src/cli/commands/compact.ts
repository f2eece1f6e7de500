import { Command, Option } from 'commander';
import { parseDuration } from '../../core/duration.js';
import { createLogger } from '../../core/logger.js';
import { buildStore } from '../backends.js';
import { lockDirectory } from '../lock.js';
import { pgliteDir } from '../paths.js';
import { ResourceStack } from '../stack.js';
import { addSettings, configFrom } from '../settings.js';

/**
 * `nexus compact`: the sealing job's work on demand. Every closed window of the hot tier becomes
 * compressed chunks now, late readings are merged into their chunks, emptied partitions go.
 * Collectors do the same every COMPACT_INTERVAL; this is for a backfill, a test or a benchmark.
 */
export function compactCommand(): Command {
  const cmd = new Command('compact').description(
    'Seal every closed 2-hour window into compressed chunks now (what the collectors do every COMPACT_INTERVAL)',
  );
  addSettings(cmd, ['common', 'database']);
  cmd.addOption(
    new Option(
      '--delay <duration>',
      'seal windows that ended at least this long ago (0: every window that has ended)',
    ).default('0'),
  );
  cmd.addOption(
    new Option(
      '--embedded',
      'the embedded database of nexus up (in NEXUS_DATA_DIR; nexus up must not be running: it seals by itself)',
    ),
  );
  cmd.action(async (opts: { delay: string; embedded?: boolean }) => {
    const config = configFrom(cmd);
    const delayMs = parseDuration(opts.delay, '--delay');
    const logger = createLogger({ level: config.logLevel, base: { component: 'compact' } });
    const stack = new ResourceStack(logger);
    try {
      const embedded = opts.embedded === true;
      if (embedded) lockDirectory(pgliteDir(config.dataDir), 'nexus compact');
      const { store, ready } = await buildStore(
        { config, logger, stack },
        embedded
          ? { kind: 'pglite', dir: pgliteDir(config.dataDir), template: config.pgliteTemplate }
          : { kind: 'postgres' },
        'nexus-compact',
      );
      await ready;
      await store.migrate();
      const res = await store.compact({ delayMs });
      if (res.busy) {
        logger.warn(res, 'another process is running the sealing job: stopped early, nothing lost');
      }
      logger.info(
        res,
        `sealed ${res.readings} readings of ${res.windows} window(s) into ${res.chunks} chunks; dropped ${res.dropped.length} hot partition(s)`,
      );
    } finally {
      await stack.close();
    }
  });
  return cmd;
}
