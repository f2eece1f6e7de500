import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { pristineDump } from '../../helpers/pglite.js';

/**
 * `nexus up` on a PGlite data directory it cannot open says why, and what to do: one made by
 * another PostgreSQL version (another release), or a damaged one.
 */
const dir = mkdtempSync(join(tmpdir(), 'nexus-pglite-dir-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function startError(dataDir: string): Promise<NexusError> {
  const db = new PGliteDatabase(dataDir, undefined, { worker: true });
  try {
    await db.ready();
  } catch (err) {
    assert.ok(err instanceof NexusError, String(err));
    return err;
  } finally {
    await db.close().catch(() => undefined);
  }
  assert.fail('PGlite started');
}

describe('PGlite data directory it cannot open', () => {
  it('made by another PostgreSQL version: names both versions and says to move it away', async () => {
    const data = join(dir, 'old-version');
    mkdirSync(data);
    writeFileSync(join(data, 'PG_VERSION'), '9.6\n');
    const err = await startError(data);
    assert.equal(err.code, 'STORE_UNAVAILABLE');
    assert.match(
      err.message,
      new RegExp(
        `data directory ${data} was made by PostgreSQL 9\\.6, and this release's PGlite runs PostgreSQL \\d+, which cannot open it: move it away \\(mv ${data} ${data}\\.old\\) to start with an empty store`,
      ),
    );
  });

  it('damaged: says it may be damaged, with the engine error, and to move it away', async () => {
    const data = join(dir, 'damaged');
    const db = new PGliteDatabase(data, await pristineDump(), { worker: true });
    await db.ready();
    await db.query('CREATE TABLE t (x int)');
    await db.close();
    truncateSync(join(data, 'global', 'pg_control'), 0);
    const err = await startError(data);
    assert.equal(err.code, 'STORE_UNAVAILABLE');
    assert.match(
      err.message,
      new RegExp(
        `PGlite could not start on the embedded store's data directory ${data} \\(.+\\): it may be damaged .*; move it away \\(mv ${data} ${data}\\.old\\)`,
      ),
    );
  });
});
