import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { FleetDirectory } from '../../src/store/fleet-directory.js';
import { PostgresDatabase } from '../../src/store/postgres/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import { storeSettings } from '../conformance/store-suite.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const pg = await sharedPostgres();
after(() => pg.release());

/** A promise and its resolve, to hold a transaction open until told. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((r) => {
    open = r;
  });
  return { wait, open };
}

describe('fleet directory on PostgreSQL', () => {
  it('sees rows of a transaction that commits after a later one (out of order), on the next refresh', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('fleetdir'));
    const db = new PostgresDatabase(
      {
        url,
        host: 'unused',
        port: 5432,
        database: 'unused',
        user: 'unused',
        password: 'unused',
        sslMode: 'disable',
        poolSize: 4,
        statementTimeoutMs: 60_000,
        connectTimeoutMs: 5000,
        applicationName: 'test',
      },
      silentLogger(),
    );
    const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    t.after(() => store.close());
    await store.migrate();
    await db.query(`INSERT INTO clusters (name, first_seen, last_seen) VALUES ('c', now(), now())`);
    const dir = new FleetDirectory();
    await dir.refresh(db, null);
    assert.deepEqual(dir.clusters.get('c')?.hosts.length, 0);

    // T1 takes its transaction id first (inserting host-1) and stays open; T2 (a later id)
    // inserts host-2 and commits; a refresh then sees host-2 only; T1 commits; the next refresh
    // sees host-1 although its marker is below what the first refresh read.
    const held = gate();
    const inserted = gate();
    const t1 = db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, 'host-1', now(), now() FROM clusters`,
      );
      inserted.open();
      await held.wait;
    });
    await inserted.wait;
    await db.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, 'host-2', now(), now() FROM clusters`,
      );
    });
    const markers = await db.query<{ hostname: string; m: string }>(
      `SELECT hostname, change_xid::text AS m FROM hosts ORDER BY hostname`,
    );
    assert.deepEqual(
      markers.rows.map((r) => r.hostname),
      ['host-2'],
    );
    await dir.refresh(db, null);
    assert.deepEqual(
      dir.clusters.get('c')?.hosts.map((h) => h.hostname),
      ['host-2'],
    );
    held.open();
    await t1;
    const both = await db.query<{ hostname: string; m: string }>(
      `SELECT hostname, change_xid::text AS m FROM hosts ORDER BY hostname`,
    );
    // Committed in the opposite order of their markers.
    assert.ok(BigInt(both.rows[0]?.m ?? 0) < BigInt(both.rows[1]?.m ?? 0));
    await dir.refresh(db, null);
    assert.deepEqual(
      dir.clusters.get('c')?.hosts.map((h) => h.hostname),
      ['host-1', 'host-2'],
    );
    // Nothing new: read once more, nothing changes (rows applied again are no-ops).
    const before = dir.counters.rowsRead.hosts;
    await dir.refresh(db, null);
    await dir.refresh(db, null);
    assert.equal(dir.clusters.get('c')?.hosts.length, 2);
    assert.ok(dir.counters.rowsRead.hosts - before <= 2);
  });
});
