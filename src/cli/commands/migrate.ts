import { Command, Option } from 'commander';
import { createLogger } from '../../core/logger.js';
import { buildStore } from '../backends.js';
import { ResourceStack } from '../stack.js';
import { addSettings, configFrom } from '../settings.js';

export function migrateCommand(): Command {
  const cmd = new Command('migrate').description(
    'Apply the database migrations (safe to run from many processes at once); --create-roles: a PostgreSQL role per component, least privilege',
  );
  addSettings(cmd, ['common', 'database', 'roles']);
  cmd.addOption(
    new Option(
      '--create-roles',
      'as an administrator (a superuser, or a user with CREATEROLE owning the database): create or update the roles <DB_ROLE_PREFIX>_owner, _collector and _gateway, hand the schema to the owner, apply the migrations as it and grant each role what its component runs (docs/operations.md, "PostgreSQL roles and TLS")',
    ),
  );
  cmd.action(async (opts: { createRoles?: boolean }) => {
    const config = configFrom(cmd);
    const logger = createLogger({ level: config.logLevel, base: { component: 'migrate' } });
    const stack = new ResourceStack(logger);
    try {
      const { createRoles, grantRoles, isOwner, roleNames } =
        await import('../../store/postgres/roles.js');
      const names = roleNames(config.dbRolePrefix);
      const root = { config, logger, stack };
      let owner: string | undefined;
      if (opts.createRoles === true) {
        const admin = await buildStore(root, { kind: 'postgres' }, 'nexus-migrate');
        const made = await createRoles(admin.db, names, {
          owner: config.dbOwnerPassword,
          collector: config.dbCollectorPassword,
          gateway: config.dbGatewayPassword,
        });
        await admin.store.close();
        for (const w of made.warnings) logger.warn(w);
        logger.info(
          {
            created: made.created,
            passwords_set: made.passwords,
            no_login: made.noLogin,
            handed_over: made.handedOver,
          },
          `roles ${names.owner}, ${names.collector} and ${names.gateway} ready; ${made.handedOver} object(s) handed over to ${names.owner}`,
        );
        // The owner need not log in (this command acts as it); the others must, to be used.
        const locked = made.noLogin.filter((r) => r !== names.owner);
        if (locked.length > 0) {
          logger.warn(
            { roles: locked },
            `${locked.join(' and ')} cannot log in yet: run this again with DB_COLLECTOR_PASSWORD_FILE / DB_GATEWAY_PASSWORD_FILE, or ALTER ROLE ... LOGIN for certificate authentication`,
          );
        }
        owner = names.owner;
      }
      // With --create-roles the schema is the owner's: its objects are made as the owner.
      const { store, db } = await buildStore(
        root,
        owner === undefined ? { kind: 'postgres' } : { kind: 'postgres', role: owner },
        'nexus-migrate',
      );
      const res = await store.migrate();
      const maintained = await store.maintain();
      logger.info(
        { ...res, partitions_created: maintained.created },
        `schema at version ${res.current} (${res.applied.length} migration(s) applied now)`,
      );
      // The owner refreshes the grants after each migration (a new table gets its own).
      if (owner !== undefined || (await isOwner(db, names))) {
        const granted = await grantRoles(db, names);
        logger.info(
          { tables: granted.tables.length, skipped: granted.skipped },
          `granted ${names.collector} and ${names.gateway} what their components run`,
        );
      }
    } finally {
      await stack.close();
    }
  });
  return cmd;
}
