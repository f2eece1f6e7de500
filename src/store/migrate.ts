import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { NexusError, describeError, isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Database, MigrationResult } from './types.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

const SQL_DIR = new URL('./sql/', import.meta.url);

/** The numbered migrations in src/store/sql (copied next to the build in dist/store/sql). */
export function loadMigrations(): Migration[] {
  return readdirSync(SQL_DIR)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(new URL(file, SQL_DIR), 'utf8');
      return {
        version: Number(file.slice(0, 3)),
        name: file.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex').slice(0, 16),
      };
    });
}

/** Key of the advisory lock that serialises migrations across processes. */
const MIGRATION_LOCK = 7_362_001;

/** The versions applied, with their checksums; undefined when no migration ever ran here. */
async function appliedVersions(db: Database): Promise<Map<number, string> | undefined> {
  const exists = await db.query<{ t: string | null }>(
    `SELECT to_regclass('nexus_schema_migrations')::text AS t`,
  );
  if ((exists.rows[0]?.t ?? null) === null) return undefined;
  const res = await db.query<{ version: number; checksum: string }>(
    'SELECT version, checksum FROM nexus_schema_migrations',
  );
  return new Map(res.rows.map((r) => [r.version, r.checksum]));
}

function warnChanged(logger: Logger, m: Migration, checksum: string): void {
  if (checksum !== m.checksum) {
    logger.warn({ migration: m.name }, 'an applied migration changed since: not re-running it');
  }
}

/** SQLSTATE insufficient_privilege. */
const NOT_ALLOWED = '42501';

/**
 * Applies pending migrations, each in its own transaction, holding a transaction-level advisory
 * lock so that many collectors starting at once apply each migration exactly once. A migration
 * whose file changed after it was applied is reported, not re-run. When every migration is
 * applied it only reads (a collector or gateway role that may not change the schema starts); a
 * role that may not apply a pending one gets an error saying who can.
 */
export async function migrate(
  db: Database,
  logger: Logger,
  migrations = loadMigrations(),
): Promise<MigrationResult> {
  const current = migrations.reduce((v, m) => Math.max(v, m.version), 0);
  const known = await appliedVersions(db);
  if (known !== undefined && migrations.every((m) => known.has(m.version))) {
    for (const m of migrations) warnChanged(logger, m, known.get(m.version) ?? m.checksum);
    return { applied: [], current };
  }
  try {
    return { applied: await apply(db, logger, migrations), current };
  } catch (err) {
    if (!isNexusError(err) || err.details?.sqlstate !== NOT_ALLOWED) throw err;
    const pending = migrations.find((m) => known?.has(m.version) !== true);
    throw new NexusError(
      'STORE_UNAVAILABLE',
      `the database schema needs migration ${pending?.name ?? current} and this database user may not apply it (${describeError(err)}): run nexus migrate as the schema's owner (with roles: DB_USER=<prefix>_owner, or nexus migrate --create-roles as an administrator)`,
      { retryable: true, cause: err, details: { sqlstate: NOT_ALLOWED } },
    );
  }
}

async function apply(
  db: Database,
  logger: Logger,
  migrations: readonly Migration[],
): Promise<string[]> {
  await db
    .query(
      `CREATE TABLE IF NOT EXISTS nexus_schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
  )`,
    )
    .catch(async (err: unknown) => {
      // Two sessions creating the table at the same instant: one wins, the other sees it exist.
      const again = await db.query(`SELECT to_regclass('nexus_schema_migrations') AS t`);
      if (again.rows[0]?.t === null) throw err;
    });
  const applied: string[] = [];
  for (const m of migrations) {
    const done = await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const row = await tx.query<{ checksum: string }>(
        'SELECT checksum FROM nexus_schema_migrations WHERE version = $1',
        [m.version],
      );
      const existing = row.rows[0];
      if (existing !== undefined) {
        warnChanged(logger, m, existing.checksum);
        return false;
      }
      await tx.query(m.sql);
      await tx.query(
        'INSERT INTO nexus_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
        [m.version, m.name, m.checksum],
      );
      return true;
    });
    if (done) {
      applied.push(m.name);
      logger.info({ migration: m.name }, 'applied migration');
    }
  }
  return applied;
}

/** Throws unless every known migration is applied. */
export async function assertCurrent(db: Database, migrations = loadMigrations()): Promise<void> {
  const want = migrations.reduce((v, m) => Math.max(v, m.version), 0);
  const res = await db
    .query<{ versions: number[] | null }>(
      `SELECT array_agg(version) AS versions FROM nexus_schema_migrations`,
    )
    .catch(() => ({ rows: [{ versions: null }], rowCount: 1 }));
  const have = new Set(res.rows[0]?.versions ?? []);
  // Every version, not only the highest: migrations of branches developed side by side may be
  // applied out of order.
  const missing = migrations.find((m) => !have.has(m.version));
  if (missing !== undefined) {
    const at = Math.max(0, ...have);
    throw new NexusError(
      'STORE_UNAVAILABLE',
      at >= want
        ? `database schema lacks migration ${missing.name}: run nexus migrate`
        : `database schema is at version ${at}, expected ${want}: run nexus migrate`,
      {
        retryable: true,
      },
    );
  }
}
