import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { NexusError } from '../core/errors.js';
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

/**
 * Applies pending migrations, each in its own transaction, holding a transaction-level advisory
 * lock so that many collectors starting at once apply each migration exactly once. A migration
 * whose file changed after it was applied is reported, not re-run.
 */
export async function migrate(
  db: Database,
  logger: Logger,
  migrations = loadMigrations(),
): Promise<MigrationResult> {
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
        if (existing.checksum !== m.checksum) {
          logger.warn(
            { migration: m.name },
            'an applied migration changed since: not re-running it',
          );
        }
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
  const current = migrations.reduce((v, m) => Math.max(v, m.version), 0);
  return { applied, current };
}

/** Throws unless every known migration is applied. */
export async function assertCurrent(db: Database, migrations = loadMigrations()): Promise<void> {
  const want = migrations.reduce((v, m) => Math.max(v, m.version), 0);
  const res = await db
    .query<{ v: number | null }>(`SELECT max(version) AS v FROM nexus_schema_migrations`)
    .catch(() => ({ rows: [{ v: null }], rowCount: 1 }));
  const have = res.rows[0]?.v ?? 0;
  if (have < want) {
    throw new NexusError(
      'STORE_UNAVAILABLE',
      `database schema is at version ${have}, expected ${want}: run nexus migrate`,
      {
        retryable: true,
      },
    );
  }
}
