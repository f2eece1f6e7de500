import { Command } from 'commander';
import type { Config } from '../../core/config.js';
import { parseDuration } from '../../core/duration.js';
import { NexusError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import {
  checkName,
  checkScope,
  type TokenRecord,
  type TokenStore,
} from '../../gateway/auth/tokens.js';
import { openTokenStore, tokenFile } from '../auth.js';
import { addSettings, configFrom } from '../settings.js';

const EMBEDDED =
  'the embedded mode of nexus up: NEXUS_DATA_DIR/tokens.json (default: PostgreSQL, the DB_* settings)';

/**
 * Opens the token store (PostgreSQL after applying pending migrations, or the embedded mode's
 * file), runs `fn` on it and closes it.
 */
async function withStore(
  cmd: Command,
  embedded: boolean,
  fn: (store: TokenStore, config: Config) => Promise<void>,
): Promise<void> {
  const config = configFrom(cmd);
  // Quiet: the output is for a person (and the token the last line, for a script).
  const logger = createLogger({
    level: config.logLevel === 'info' ? 'warn' : config.logLevel,
    destination: process.stderr,
  });
  if (!embedded) {
    // The table may not exist yet on a fresh database: migrations first, as nexus compact does.
    const [{ PostgresDatabase }, { migrate }, { postgresConnection }] = await Promise.all([
      import('../../store/postgres/database.js'),
      import('../../store/migrate.js'),
      import('../backends.js'),
    ]);
    const db = new PostgresDatabase(
      { ...postgresConnection(config, 'nexus-token'), poolSize: 1 },
      logger,
    );
    try {
      await migrate(db, logger);
    } finally {
      await db.close();
    }
  }
  const store = await openTokenStore(config, logger, embedded ? 'file' : 'postgres', 'nexus-token');
  try {
    await fn(store, config);
  } finally {
    await store.close();
  }
}

const when = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());

function row(t: TokenRecord): Record<string, string> {
  return {
    id: t.id,
    name: t.name,
    scope: t.scope,
    created: when(t.createdAt),
    expires: when(t.expiresAt),
    revoked: when(t.revokedAt),
    'last used': when(t.lastUsedAt),
  };
}

function table(rows: readonly Record<string, string>[]): string {
  const first = rows[0];
  if (first === undefined) return '';
  const cols = Object.keys(first);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(width[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(cols), ...rows.map((r) => line(cols.map((c) => r[c] ?? '')))].join('\n');
}

/**
 * `nexus token create|list|revoke`: the gateway's bearer tokens (AUTH_MODE=token). Only a token's
 * SHA-256 is stored; `create` prints the token once, on the last line of its output.
 */
export function tokenCommand(): Command {
  const token = new Command('token').description(
    'Bearer tokens of the API (AUTH_MODE=token): create, list, revoke',
  );

  const create = new Command('create')
    .description('Make a new token; it is printed once, on the last line (only its hash is kept)')
    .option(
      '--scope <scope>',
      'read (every read API), write (ingest only: Prometheus remote_write) or admin (everything); required',
    )
    .option('--name <name>', 'a name to list and revoke it by (default: its id)')
    .option('--expires <duration>', 'refused after this long, e.g. 30d, 12h (default: never)')
    .option('--embedded', EMBEDDED);
  addSettings(create, ['common', 'database']);
  create.action(
    async (o: { scope?: string; name?: string; expires?: string; embedded?: boolean }) => {
      if (o.scope === undefined)
        throw new NexusError('CONFIG_INVALID', '--scope is required: read, write or admin');
      const scope = checkScope(o.scope);
      if (o.name !== undefined) checkName(o.name);
      let expiresAt: number | null = null;
      if (o.expires !== undefined) {
        const ms = parseDuration(o.expires, '--expires');
        if (ms <= 0) throw new NexusError('CONFIG_INVALID', '--expires: must be longer than 0');
        expiresAt = Date.now() + ms;
      }
      await withStore(create, o.embedded === true, async (store) => {
        const { token: secret, record } = await store.create({ name: o.name, scope, expiresAt });
        process.stdout.write(
          `Created token ${record.id} "${record.name}": scope ${record.scope}, expires ${record.expiresAt === null ? 'never' : when(record.expiresAt)}, in ${store.where}.\n` +
            `Send it as "Authorization: Bearer <token>". It is shown only now (only its SHA-256 is stored); revoke it with: nexus token revoke ${record.id}\n` +
            `${secret}\n`,
        );
      });
    },
  );

  const list = new Command('list')
    .description(
      'Every token: id, name, scope, created, expires, revoked, last used (never the token)',
    )
    .option('--json', 'print JSON')
    .option('--embedded', EMBEDDED);
  addSettings(list, ['common', 'database']);
  list.action(async (o: { json?: boolean; embedded?: boolean }) => {
    await withStore(list, o.embedded === true, async (store) => {
      const tokens = await store.list();
      if (o.json === true) {
        const out = tokens.map((t) => ({
          id: t.id,
          name: t.name,
          scope: t.scope,
          created_at: when(t.createdAt),
          expires_at: t.expiresAt === null ? null : when(t.expiresAt),
          revoked_at: t.revokedAt === null ? null : when(t.revokedAt),
          last_used_at: t.lastUsedAt === null ? null : when(t.lastUsedAt),
        }));
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        tokens.length === 0
          ? `no tokens in ${store.where}: nexus token create --scope read makes one\n`
          : `${table(tokens.map(row))}\n`,
      );
    });
  });

  const revoke = new Command('revoke')
    .description('Refuse a token from now on (gateways within TOKEN_CACHE_TTL); by id or name')
    .argument('<id-or-name>', "the token's id, or the name of a token not yet revoked")
    .option('--embedded', EMBEDDED);
  addSettings(revoke, ['common', 'database']);
  revoke.action(async (idOrName: string, o: { embedded?: boolean }) => {
    await withStore(revoke, o.embedded === true, async (store, config) => {
      const now = Date.now();
      const t = await store.revoke(idOrName, now);
      if (t === undefined) {
        throw new NexusError(
          'NOT_FOUND',
          `no token with the id or name "${idOrName}" in ${o.embedded === true ? tokenFile(config) : store.where} (nexus token list shows them)`,
        );
      }
      process.stdout.write(
        t.revokedAt !== null && t.revokedAt < now
          ? `Token ${t.id} "${t.name}" was already revoked at ${when(t.revokedAt)}.\n`
          : `Revoked token ${t.id} "${t.name}" (scope ${t.scope}); gateways refuse it within their TOKEN_CACHE_TTL (5 s by default).\n`,
      );
    });
  });

  token.addCommand(create);
  token.addCommand(list);
  token.addCommand(revoke);
  return token;
}
