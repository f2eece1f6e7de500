import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { NexusError, describeError, isNexusError } from '../../core/errors.js';
import type { Database, SqlClient } from '../types.js';

/**
 * PostgreSQL roles per component, least privilege (`nexus migrate --create-roles`;
 * docs/operations.md, "PostgreSQL roles and TLS"):
 *
 * - `<prefix>_owner` owns the schema's tables, views and functions and applies the migrations;
 *   the partition functions run as it (SECURITY DEFINER, migration 006), so no other role needs
 *   to own anything;
 * - `<prefix>_collector` writes: exactly the statements of the writer, the rollup job, the sealing
 *   job and retention (src/store/sql-store.ts, compactor.ts, dimensions.ts), partitions through
 *   the owner's functions;
 * - `<prefix>_gateway` reads what the reader reads (read-queries.ts, series-reads.ts), nothing
 *   else, and may write one column of the API tokens (when that table exists).
 *
 * Partitions need no grant: PostgreSQL checks a partitioned table's privileges on the parent for
 * every statement that goes through it, and no role but the owner touches a partition directly.
 */

export interface RoleNames {
  readonly owner: string;
  readonly collector: string;
  readonly gateway: string;
}

/** The roles of a prefix (DB_ROLE_PREFIX): lowercase SQL identifiers, so that none is quoted. */
export function roleNames(prefix: string): RoleNames {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
    throw new NexusError(
      'CONFIG_INVALID',
      `DB_ROLE_PREFIX: "${prefix}" is not a lowercase SQL name (letters, digits, _; at most 41)`,
    );
  }
  return {
    owner: `${prefix}_owner`,
    collector: `${prefix}_collector`,
    gateway: `${prefix}_gateway`,
  };
}

type Grantee = 'collector' | 'gateway';

interface TableGrant {
  readonly table: string;
  readonly collector?: readonly string[];
  readonly gateway?: readonly string[];
}

const WRITE_DIMENSION = ['SELECT', 'INSERT', 'UPDATE'];

/**
 * What each role may do on each table and view (a view's reads run with its owner's rights). A
 * table that does not exist (yet) is skipped: running --create-roles again after a migration
 * that adds one grants it.
 */
export const TABLE_GRANTS: readonly TableGrant[] = [
  { table: 'clusters', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  { table: 'hosts', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  { table: 'gpus', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  // New metrics only (INSERT ... WHERE NOT EXISTS): a metric's row never changes.
  { table: 'metrics', collector: ['SELECT', 'INSERT'], gateway: ['SELECT'] },
  { table: 'gpu_workloads', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  // Written ON CONFLICT DO NOTHING; DELETE ... RETURNING by the sealing job.
  { table: 'samples', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  { table: 'samples_pending', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  { table: 'samples_latest', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  { table: 'samples_1m', collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] },
  // Migration 009: kept for the fleet features, deleted by retention (maintain()).
  { table: 'gpu_allocations', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  { table: 'fleet_1m', collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'], gateway: ['SELECT'] },
  { table: 'usage_1h', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  {
    table: 'usage_dirty',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  // Migration 015: usage by the 10-minute slice, the day and the month, and their marks.
  { table: 'usage_10m', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  {
    table: 'usage_slices',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  { table: 'usage_1d', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  {
    table: 'usage_days',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  { table: 'usage_1mo', collector: ['SELECT', 'INSERT', 'DELETE'], gateway: ['SELECT'] },
  {
    table: 'usage_months',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  // Migration 016: per GPU and utilisation metric, the slices above every later one (idle report).
  {
    table: 'util_peaks',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  {
    table: 'sample_chunks',
    collector: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
    gateway: ['SELECT'],
  },
  { table: 'sealed_windows', collector: WRITE_DIMENSION },
  // Event detection (migration 008): the state moved forward and the events written by the
  // collector's write path and retirement job; the gateway reads the events.
  { table: 'gpu_event_state', collector: WRITE_DIMENSION },
  { table: 'gpu_events', collector: WRITE_DIMENSION, gateway: ['SELECT'] },
  { table: 'nexus_identity', collector: ['SELECT'], gateway: ['SELECT'] },
  { table: 'nexus_schema_migrations', collector: ['SELECT'], gateway: ['SELECT'] },
  { table: 'samples_1m_all', gateway: ['SELECT'] },
  { table: 'samples_latest_all', gateway: ['SELECT'] },
  // The fleet reports (src/store/fleet-reads.ts): the gateway's, and the collector's usage job.
  { table: 'fleet_1m_all', collector: ['SELECT'], gateway: ['SELECT'] },
  { table: 'fleet_1m_folded', collector: ['SELECT'], gateway: ['SELECT'] },
  { table: 'nexus_hot_partitions', collector: ['SELECT'] },
  // The gateway's API tokens (gateway authentication, migration 005): it looks a token up and
  // notes when it was last used; tokens are made and revoked by `nexus token` as the owner.
  { table: 'api_tokens', gateway: ['SELECT', 'UPDATE (last_used_at)'] },
];

/** The owner's functions a role may call (not PUBLIC's: migration 006 revoked them). */
export const FUNCTION_GRANTS: Readonly<Record<Grantee, readonly string[]>> = {
  collector: [
    'nexus_ensure_window_partitions(bigint[])',
    'nexus_drop_partitions(timestamptz, timestamptz)',
    'nexus_drop_empty_partition(text, text)',
  ],
  gateway: [],
};

/** Everything of Nexus's in the schema, besides the hot partitions, that the owner owns. */
const OWNED_RELATIONS = TABLE_GRANTS.map((g) => g.table);

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`;

/**
 * SASLprep as node-postgres applies it before SCRAM (non-ASCII spaces to spaces, characters
 * mapped to nothing removed, NFKC), so that the verifier matches what it sends.
 */
function saslprep(password: string): string {
  return (
    password
      .replace(/[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g, ' ')
      // eslint-disable-next-line no-misleading-character-class
      .replace(/[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g, '')
      .normalize('NFKC')
  );
}

/**
 * A SCRAM-SHA-256 verifier of a password (RFC 5802/7677, as PostgreSQL stores it and libpq's
 * PQencryptPasswordConn makes it): ALTER ROLE ... PASSWORD with it sends no password to the
 * server, where a statement can end up in a log.
 */
export function scramVerifier(password: string, salt = randomBytes(16), iterations = 4096): string {
  const salted = pbkdf2Sync(saslprep(password), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

export interface RolePasswords {
  /** '' or undefined: the role cannot log in (new), or keeps its password (existing). */
  readonly owner?: string;
  readonly collector?: string;
  readonly gateway?: string;
}

export interface RolesMade {
  readonly created: readonly string[];
  /** Roles whose password was set (and which may log in). */
  readonly passwords: readonly string[];
  /** Roles that cannot log in. */
  readonly noLogin: readonly string[];
  /** Tables, views and functions handed over to the owner. */
  readonly handedOver: number;
  /** Something an administrator should know (a schema anyone may create objects in). */
  readonly warnings: readonly string[];
}

const PRIVILEGED = ['rolsuper', 'rolcreaterole', 'rolcreatedb', 'rolreplication', 'rolbypassrls'];

/** The admin may not do something --create-roles needs: say what it needs. */
function needsAdmin(err: unknown): unknown {
  if (!isNexusError(err) || err.details?.sqlstate !== '42501') return err;
  return new NexusError(
    'CONFIG_INVALID',
    `nexus migrate --create-roles needs an administrator (a superuser, or a user with CREATEROLE that owns the database, its schema and the Nexus tables): ${describeError(err)}`,
    { cause: err },
  );
}

/**
 * Creates the roles (or updates their passwords), lets them connect, gives the owner the schema
 * and hands it every Nexus table, view and function already there. Idempotent; in one
 * transaction. Run as an administrator, before the migrations (which then run as the owner).
 */
export async function createRoles(
  db: Database,
  names: RoleNames,
  passwords: RolePasswords,
): Promise<RolesMade> {
  try {
    return await db.transaction((tx) => makeRoles(tx, names, passwords));
  } catch (err) {
    throw needsAdmin(err);
  }
}

async function makeRoles(
  tx: SqlClient,
  names: RoleNames,
  passwords: RolePasswords,
): Promise<RolesMade> {
  const created: string[] = [];
  const withPassword: string[] = [];
  const noLogin: string[] = [];
  const warnings: string[] = [];
  for (const kind of ['owner', 'collector', 'gateway'] as const) {
    const name = names[kind];
    const password = passwords[kind] ?? '';
    const res = await tx.query<Record<string, boolean>>(
      `SELECT ${PRIVILEGED.join(', ')}, rolcanlogin FROM pg_roles WHERE rolname = $1`,
      [name],
    );
    const row = res.rows[0];
    const login = password === '' ? '' : ` LOGIN PASSWORD ${literal(scramVerifier(password))}`;
    if (row === undefined) {
      await tx.query(
        `CREATE ROLE ${ident(name)}${login === '' ? ' NOLOGIN' : login} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`,
      );
      created.push(name);
    } else {
      const privileged = PRIVILEGED.filter((p) => row[p] === true);
      if (privileged.length > 0) {
        throw new NexusError(
          'CONFIG_INVALID',
          `role ${name} exists with ${privileged.map((p) => p.slice(3).toUpperCase()).join(', ')}: not a least-privilege role; drop it, or take these away (ALTER ROLE ${name} NO...), or choose another DB_ROLE_PREFIX`,
        );
      }
      if (login !== '') await tx.query(`ALTER ROLE ${ident(name)}${login}`);
    }
    if (login !== '') withPassword.push(name);
    else if (row?.rolcanlogin !== true) noLogin.push(name);
  }

  // The administrator acts as the owner (hand-over, migrations): a member of it, allowed to SET
  // ROLE (PostgreSQL 16 gives a CREATEROLE user's own roles without that option).
  const me = await tx.query<{ rolsuper: boolean; member: boolean; v: number }>(
    `SELECT rolsuper, pg_has_role(current_user, $1, 'MEMBER') AS member,
            current_setting('server_version_num')::int AS v
     FROM pg_roles WHERE rolname = current_user`,
    [names.owner],
  );
  const admin = me.rows[0];
  if (admin?.rolsuper !== true) {
    if ((admin?.v ?? 0) >= 160000)
      await tx.query(`GRANT ${ident(names.owner)} TO CURRENT_USER WITH SET TRUE`);
    else if (admin?.member !== true) await tx.query(`GRANT ${ident(names.owner)} TO CURRENT_USER`);
  }

  const all = [names.owner, names.collector, names.gateway].map(ident).join(', ');
  await tx.query(`DO $$ BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ${all.replaceAll("'", "''")}', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO ${ident(names.collector)}', current_database());
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO ${ident(names.owner)}', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ${ident(names.collector)}, ${ident(names.gateway)}', current_schema());
  END $$`);
  const open = await tx.query<{ schema: string; anyone: boolean }>(
    `SELECT current_schema() AS schema, has_schema_privilege('public', current_schema(), 'CREATE') AS anyone`,
  );
  const schema = open.rows[0];
  if (schema?.anyone === true) {
    warnings.push(
      `every role may create objects in schema ${schema.schema} (PUBLIC has CREATE on it, the default before PostgreSQL 15): REVOKE CREATE ON SCHEMA ${schema.schema} FROM PUBLIC, unless something else needs it`,
    );
  }

  // Hand over what is there: the tables (their identity sequences and indexes follow), views,
  // hot partitions and functions not the owner's yet.
  const relations = await tx.query<{ name: string; kind: string }>(
    `SELECT c.oid::regclass::text AS name, c.relkind::text AS kind FROM pg_class c
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v')
       AND c.relowner <> $1::regrole
       AND (c.relname = ANY($2::text[]) OR EXISTS (
         SELECT FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
         WHERE i.inhrelid = c.oid AND p.relname IN ('samples', 'samples_1m')
           AND p.relnamespace = c.relnamespace))
     ORDER BY c.relkind = 'v' DESC, c.relname`,
    [names.owner, OWNED_RELATIONS],
  );
  for (const r of relations.rows) {
    await tx.query(
      `ALTER ${r.kind === 'v' ? 'VIEW' : 'TABLE'} ${r.name} OWNER TO ${ident(names.owner)}`,
    );
  }
  const functions = await tx.query<{ name: string }>(
    `SELECT p.oid::regprocedure::text AS name FROM pg_proc p
     WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'nexus\\_%'
       AND p.proowner <> $1::regrole`,
    [names.owner],
  );
  for (const f of functions.rows) {
    await tx.query(`ALTER FUNCTION ${f.name} OWNER TO ${ident(names.owner)}`);
  }
  return {
    created,
    passwords: withPassword,
    noLogin,
    handedOver: relations.rows.length + functions.rows.length,
    warnings,
  };
}

export interface Granted {
  /** Tables and views granted on. */
  readonly tables: readonly string[];
  /** Grants skipped: a table or column not in this schema (yet). */
  readonly skipped: readonly string[];
}

/**
 * Grants the collector and gateway roles exactly what their components run (TABLE_GRANTS,
 * FUNCTION_GRANTS), taking back anything else they had on those objects. Idempotent; in one
 * transaction. Run as the owner, after the migrations.
 */
export async function grantRoles(db: Database, names: RoleNames): Promise<Granted> {
  return db.transaction(async (tx) => {
    const tables: string[] = [];
    const skipped: string[] = [];
    const grantees = `${ident(names.collector)}, ${ident(names.gateway)}`;
    for (const g of TABLE_GRANTS) {
      const cols = await tx.query<{ col: string }>(
        `SELECT a.attname::text AS col FROM pg_attribute a
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        [g.table],
      );
      if (cols.rows.length === 0) {
        skipped.push(g.table);
        continue;
      }
      const columns = new Set(cols.rows.map((r) => r.col));
      await tx.query(`REVOKE ALL ON ${ident(g.table)} FROM ${grantees}`);
      for (const who of ['collector', 'gateway'] as const) {
        const privileges = (g[who] ?? []).filter((p) => {
          const col = /\((\w+)\)/.exec(p)?.[1];
          if (col === undefined || columns.has(col)) return true;
          skipped.push(`${p} on ${g.table}`);
          return false;
        });
        if (privileges.length === 0) continue;
        await tx.query(
          `GRANT ${privileges.join(', ')} ON ${ident(g.table)} TO ${ident(names[who])}`,
        );
      }
      tables.push(g.table);
    }
    const fns = [...FUNCTION_GRANTS.collector, ...FUNCTION_GRANTS.gateway];
    if (fns.length > 0) {
      await tx.query(`REVOKE ALL ON FUNCTION ${fns.join(', ')} FROM ${grantees}`);
    }
    for (const who of ['collector', 'gateway'] as const) {
      if (FUNCTION_GRANTS[who].length === 0) continue;
      await tx.query(
        `GRANT EXECUTE ON FUNCTION ${FUNCTION_GRANTS[who].join(', ')} TO ${ident(names[who])}`,
      );
    }
    return { tables, skipped };
  });
}

/** Whether the current user is the owner role of these names (it may refresh the grants). */
export async function isOwner(db: Database, names: RoleNames): Promise<boolean> {
  const res = await db.query<{ owner: boolean }>(
    `SELECT current_user = $1 AND EXISTS (SELECT FROM pg_roles WHERE rolname IN ($2, $3)) AS owner`,
    [names.owner, names.collector, names.gateway],
  );
  return res.rows[0]?.owner === true;
}
