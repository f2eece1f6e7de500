import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NexusError, describeError } from '../../core/errors.js';
import { openPGlite } from './engine.js';

/** The PostgreSQL major version that made a data directory (its PG_VERSION file), if it says. */
export function madeBy(dataDir: string): string | undefined {
  const file = join(dataDir, 'PG_VERSION');
  if (!existsSync(file)) return undefined;
  try {
    const v = readFileSync(file, 'utf8').trim();
    return v === '' ? undefined : v.slice(0, 20);
  } catch {
    return undefined;
  }
}

/** The PostgreSQL major version this build's PGlite runs (asked of an in-memory instance). */
async function pgliteMajor(): Promise<string | undefined> {
  const db = openPGlite('memory://');
  try {
    await db.waitReady;
    const res = await db.query<{ server_version_num: string }>('SHOW server_version_num');
    const num = Number(res.rows[0]?.server_version_num);
    return Number.isFinite(num) && num > 0 ? String(Math.floor(num / 10_000)) : undefined;
  } catch {
    return undefined;
  } finally {
    await db.close().catch(() => undefined);
  }
}

/**
 * Why PGlite did not start on `dataDir`, in words a user can act on: a data directory made by
 * another PostgreSQL version (an older or newer release of Nexus), or a damaged one. Either way
 * the way out is the same: move the directory away (its readings stay in it) to start with an
 * empty store.
 */
export async function startFailure(dataDir: string, err: unknown): Promise<NexusError> {
  const cause = describeError(err);
  if (dataDir.startsWith('memory://')) {
    return new NexusError('STORE_UNAVAILABLE', `PGlite did not start: ${cause}`, { cause: err });
  }
  const made = madeBy(dataDir);
  const moveAway = `move it away (mv ${dataDir} ${dataDir}.old) to start with an empty store; its readings stay in it`;
  const major = made === undefined ? undefined : await pgliteMajor();
  if (made !== undefined && major !== undefined && made !== major) {
    return new NexusError(
      'STORE_UNAVAILABLE',
      `the embedded store's data directory ${dataDir} was made by PostgreSQL ${made}, and this release's PGlite runs PostgreSQL ${major}, which cannot open it: ${moveAway} (or run the release that made it)`,
      { cause: err, details: { dataDir, madeBy: made, pglite: major } },
    );
  }
  return new NexusError(
    'STORE_UNAVAILABLE',
    `PGlite could not start on the embedded store's data directory ${dataDir} (${cause}): it may be damaged (a power cut before PGlite's writes reached the disk, a full disk, files changed by hand); ${moveAway}`,
    { cause: err, details: { dataDir } },
  );
}
