import { Command } from 'commander';
import { createLogger } from '../../core/logger.js';
import { buildStore } from '../backends.js';
import { ResourceStack } from '../stack.js';
import { addSettings, configFrom } from '../settings.js';

export function migrateCommand(): Command {
  const cmd = new Command('migrate').description(
    'Apply the database migrations (safe to run from many processes at once)',
  );
  addSettings(cmd, ['common', 'database']);
  cmd.action(async () => {
    const config = configFrom(cmd);
    const logger = createLogger({ level: config.logLevel, base: { component: 'migrate' } });
    const stack = new ResourceStack(logger);
    try {
      const { store } = await buildStore(
        { config, logger, stack },
        { kind: 'postgres' },
        'nexus-migrate',
      );
      const res = await store.migrate();
      const maintained = await store.maintain();
      logger.info(
        { ...res, partitions_created: maintained.created },
        `schema at version ${res.current} (${res.applied.length} migration(s) applied now)`,
      );
    } finally {
      await stack.close();
    }
  });
  return cmd;
}
