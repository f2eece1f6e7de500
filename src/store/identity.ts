import { isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { IdentityChanges, SqlClient } from './types.js';

/**
 * The database's identity (migration 003): `<random id>/<database oid>.<table oid>@<server start>`.
 * The part before `@` changes when the database is another one (dropped and re-created, restored);
 * the part after it when the server restarted or failed over.
 */
export type IdentityChange = keyof IdentityChanges;

/** SQLSTATE of `nexus_expect_identity`: the database is not the one the cached ids came from. */
export const IDENTITY_CHANGED = 'NX001';

/** A statement's guard failed: the database is not the one the cached ids came from. */
export function isIdentityChanged(err: unknown): boolean {
  return isNexusError(err) && err.details?.sqlstate === IDENTITY_CHANGED;
}

/** The identity of the database `db` talks to now; undefined when its identity row is gone. */
export async function readIdentity(db: SqlClient): Promise<string | undefined> {
  const res = await db.query<{ identity: string | null }>('SELECT nexus_identity() AS identity');
  return res.rows[0]?.identity ?? undefined;
}

/** What changed between two identities. */
export function identityChange(old: string | undefined, now: string | undefined): IdentityChange {
  const database = (id: string | undefined): string | undefined => id?.split('@')[0];
  return database(old) === database(now) ? 'server' : 'database';
}

export interface ReidentifyOptions {
  readonly db: SqlClient;
  /** The identity what is cached belongs to (undefined: not read yet, or the row is gone). */
  readonly known: () => string | undefined;
  /** Drops what is cached under the old identity, and adopts `now`. */
  readonly drop: (now: string | undefined) => void;
  /** Counts the change (after `drop`, before the warning). */
  readonly onChange?: ((change: IdentityChange) => void) | undefined;
  readonly logger?: Logger | undefined;
  /** The warning for each kind of change: what was dropped, and what happens next. */
  readonly messages: Readonly<Record<IdentityChange, string>>;
}

/**
 * The database changed under what a process caches (the writer's dimension ids, the reader's
 * fleet, metrics and latest values): a function that reads its identity again and, when it is
 * not the one known, drops the caches, counts the change and logs a warning with both identities.
 * One at a time: a call while one runs shares it; a no-op when another call already did it.
 */
export function reidentifier(o: ReidentifyOptions): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= (async () => {
      const old = o.known();
      const now = await readIdentity(o.db);
      if (now === old) return;
      o.drop(now);
      const change = identityChange(old, now);
      o.onChange?.(change);
      o.logger?.warn(
        { old_identity: old ?? null, new_identity: now ?? null, change },
        o.messages[change],
      );
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
}

/**
 * SQLSTATEs that mean the schema (or part of it) is not there: undefined table or view (42P01),
 * undefined function (42883), no schema to create in (3F000).
 */
const SCHEMA_MISSING = new Set(['42P01', '42883', '3F000']);

/** The statement failed because the schema is not there (dropped, or a new empty database). */
export function isSchemaMissing(err: unknown): boolean {
  if (!isNexusError(err)) return false;
  const state = err.details?.sqlstate;
  return typeof state === 'string' && SCHEMA_MISSING.has(state);
}
