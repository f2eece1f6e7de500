import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import type { Database, QueryResult, SqlClient } from '../../../src/store/types.js';
import { storeSettings } from '../../conformance/store-suite.js';
import { MINUTE, POWER, SECOND, T0, TEMP, rec } from '../../conformance/store-fixtures.js';
import { migratedDump } from '../../helpers/pglite.js';

/**
 * What a write costs in round trips, the thing that bounds an embedded store in a worker (each
 * statement crosses threads and waits for the event loop) and a remote one (each crosses the
 * network). A database that counts what it is asked.
 */
class Counting implements Database {
  readonly backend: 'pglite' | 'postgres';
  statements: string[] = [];
  transactions = 0;
  constructor(private readonly db: Database) {
    this.backend = db.backend;
  }
  /** A method, not the field: assertions on the field narrow its type. */
  transactionCount(): number {
    return this.transactions;
  }
  reset(): void {
    this.statements = [];
    this.transactions = 0;
  }
  query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.statements.push(text.trim().split(/\s+/).slice(0, 3).join(' '));
    return this.db.query<R>(text, params);
  }
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    this.transactions++;
    return this.db.transaction((tx) =>
      fn({
        query: <R>(text: string, params?: readonly unknown[]) => {
          this.statements.push(text.trim().split(/\s+/).slice(0, 3).join(' '));
          return tx.query<R>(text, params);
        },
      }),
    );
  }
  close(): Promise<void> {
    return this.db.close();
  }
}

describe('store round trips', () => {
  it('a batch of known GPUs costs one statement, or two when it moves their last seen; no transaction', async (t) => {
    const db = new Counting(new PGliteDatabase('memory://', await migratedDump()));
    const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    t.after(() => store.close());
    await store.migrate();
    const batch = (at: number, hostname = 'node-a') =>
      [0, 1].flatMap((gpu) => [
        rec(at, 40 + gpu, { hostname, gpu, pod: `job-${gpu}`, namespace: 'ml', container: 'c' }),
        rec(at, 300 + gpu, { hostname, gpu, metric: POWER }),
      ]);

    // New GPUs, metrics and workloads: the full upsert, in its own transaction.
    await store.write('c1', batch(T0));
    assert.ok(db.transactions >= 1);

    // Nothing new, nothing moved beyond the last-seen lag: the write alone.
    db.reset();
    await store.write('c1', batch(T0 + 10 * SECOND));
    assert.equal(db.transactions, 0);
    assert.equal(db.statements.length, 1, db.statements.join('; '));

    // Nothing new, but last seen moves: one statement moves every span, then the write, then
    // the batch's allocation minutes (a new minute: one set-based insert; docs/fleet.md). A
    // 10-minute slice's usage mark is made at most every 10 s per slice: 13:47 is in the slice
    // marked at 13:42 (not again), 13:37 in the slice before (one mark, migration 015).
    db.reset();
    await store.write('c1', batch(T0 + 5 * MINUTE));
    await store.write('c1', batch(T0 - 5 * MINUTE));
    assert.equal(db.transactions, 0);
    assert.equal(db.statements.length, 7, db.statements.join('; '));
    assert.equal(db.statements.filter((x) => x === 'INSERT INTO usage_slices').length, 1);
    // The slice is marked before the readings are written (migration 016: no reader may see a
    // reading in a slice whose kept usage and peaks it trusts).
    const mark = db.statements.indexOf('INSERT INTO usage_slices');
    const readings = db.statements.lastIndexOf('WITH src AS');
    assert.ok(mark >= 0 && mark < readings, db.statements.join('; '));
    const spans = await db.query<{ kind: string; first: string; last: string }>(
      `SELECT 'cluster' AS kind, nexus_ms(first_seen)::text AS first, nexus_ms(last_seen)::text AS last FROM clusters
       UNION ALL SELECT 'host', nexus_ms(first_seen)::text, nexus_ms(last_seen)::text FROM hosts
       UNION ALL SELECT 'gpu', nexus_ms(first_seen)::text, nexus_ms(last_seen)::text FROM gpus
       UNION ALL SELECT 'workload', nexus_ms(first_seen)::text, nexus_ms(last_seen)::text FROM gpu_workloads`,
    );
    const span = { first: String(T0 - 5 * MINUTE), last: String(T0 + 5 * MINUTE) };
    assert.deepEqual(
      spans.rows.map((r) => ({ first: r.first, last: r.last })),
      spans.rows.map(() => span),
    );
    assert.equal(spans.rows.length, 1 + 1 + 2 + 2);

    // A new host is a new dimension: the full upsert again.
    db.reset();
    await store.write('c1', batch(T0 + 6 * MINUTE, 'node-b'));
    assert.ok(db.transactionCount() >= 1);
    const temps = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM samples s JOIN metrics m ON m.id = s.metric_id WHERE m.name = $1',
      [TEMP],
    );
    assert.equal(temps.rows[0]?.n, 10);
  });

  it('a GPU whose labels come in another order costs one upsert, which rewrites no row', async (t) => {
    const db = new Counting(new PGliteDatabase('memory://', await migratedDump()));
    const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    t.after(() => store.close());
    await store.migrate();
    const batch = (at: number, reversed: boolean) =>
      [0, 1].map((gpu) => {
        const r = rec(at, 40 + gpu, { gpu, labels: { job: 'dcgm', instance: 'node-a:9400' } });
        const entries = Object.entries(r.labels);
        return { ...r, labels: Object.fromEntries(reversed ? entries.reverse() : entries) };
      });
    const rows = () =>
      db.query<{ id: number; change_xid: string; labels: unknown }>(
        'SELECT id, change_xid::text, labels FROM gpus ORDER BY id',
      );
    await store.write('c1', batch(T0, false));
    const before = (await rows()).rows;
    assert.equal(before.length, 2);

    db.reset();
    await store.write('c1', batch(T0 + 10 * SECOND, true));
    assert.ok(db.transactionCount() >= 1, db.statements.join('; '));
    assert.deepEqual((await rows()).rows, before);

    // Now known in that order: nothing to upsert.
    db.reset();
    await store.write('c1', batch(T0 + 20 * SECOND, true));
    assert.equal(db.transactionCount(), 0);
    assert.equal(db.statements.length, 1, db.statements.join('; '));
  });

  it('new GPUs cost the same statements whatever their number, and rewrite no row they insert or do not move', async (t) => {
    const db = new Counting(new PGliteDatabase('memory://', await migratedDump()));
    const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    t.after(() => store.close());
    await store.migrate();
    const fleet = (hosts: readonly string[], gpus: number, at = T0) =>
      hosts.flatMap((hostname) =>
        Array.from({ length: gpus }, (_, gpu) => [
          rec(at, 40 + gpu, { hostname, gpu, pod: `job-${hostname}-${gpu}`, namespace: 'ml' }),
          rec(at, 300 + gpu, { hostname, gpu, metric: POWER }),
        ]).flat(),
      );
    const names = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    // The cluster and the metrics, first seen from T0 - 1 min to T0 + 1 min.
    await store.write('c1', fleet(['seed'], 1, T0 - MINUTE));
    await store.write('c1', fleet(['seed'], 1, T0 + MINUTE));
    // Every row update of the dimension tables, counted.
    await db.query(`CREATE TABLE row_updates (tbl text NOT NULL);
      CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO row_updates VALUES (TG_TABLE_NAME); RETURN NEW; END $$;
      CREATE TRIGGER u AFTER UPDATE ON clusters FOR EACH ROW EXECUTE FUNCTION count_update();
      CREATE TRIGGER u AFTER UPDATE ON hosts FOR EACH ROW EXECUTE FUNCTION count_update();
      CREATE TRIGGER u AFTER UPDATE ON gpus FOR EACH ROW EXECUTE FUNCTION count_update();
      CREATE TRIGGER u AFTER UPDATE ON gpu_workloads FOR EACH ROW EXECUTE FUNCTION count_update();`);
    const updates = async () =>
      (
        await db.query<{ tbl: string; n: number }>(
          'SELECT tbl, count(*)::int AS n FROM row_updates GROUP BY tbl ORDER BY tbl',
        )
      ).rows.map((r) => `${r.tbl}: ${r.n}`);

    // 2 new GPUs, then 400 (50 hosts of 8), inside the cluster's span: the same statements.
    db.reset();
    await store.write('c1', fleet(names('a', 1), 2));
    const few = db.statements;
    db.reset();
    await store.write('c1', fleet(names('b', 50), 8));
    assert.deepEqual(db.statements, few);
    assert.deepEqual(await updates(), []);
    const stored = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM gpus');
    assert.equal(stored.rows[0]?.n, 1 + 2 + 400);

    // A batch of those 400 known GPUs and one new one on a new host: only the new ones go through
    // the statements (before, every GPU of a batch with anything new did: inserted where missing,
    // then read back), and no row is rewritten.
    db.reset();
    await store.write('c1', [...fleet(names('b', 50), 8), ...fleet(['new-host'], 1)]);
    assert.ok(
      !db.statements.some((x) => x.startsWith('WITH u AS')),
      `a statement for rows that existed: ${db.statements.join('; ')}`,
    );
    assert.deepEqual(await updates(), []);
    const grown = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM gpus');
    assert.equal(grown.rows[0]?.n, 1 + 2 + 400 + 1);

    // Another process (an empty cache) writing the same GPUs again: their ids are read, no row
    // is rewritten (nothing moved), and the same statements whatever the number of GPUs.
    const other = new Counting(db);
    const store2 = new SqlStore({ db: other, logger: silentLogger(), ...storeSettings({}) });
    await store2.write('c1', fleet(['seed'], 1, T0 + MINUTE));
    other.reset();
    await store2.write('c1', fleet(names('a', 1), 2));
    const few2 = other.statements;
    other.reset();
    const again = await store2.write('c1', fleet(names('b', 50), 8));
    assert.deepEqual(other.statements, few2);
    assert.equal(again.inserted, 0);
    assert.deepEqual(await updates(), []);

    // A GPU whose uuid changes: exactly that row moves. Its host, seen 30 s after its last_seen,
    // is not rewritten (last_seen moves at most once a minute per row, upsert or not)...
    await store2.write('c1', [
      rec(T0 + 30 * SECOND, 1, { hostname: 'b3', gpu: 5, uuid: 'GPU-new' }),
    ]);
    assert.deepEqual(await updates(), ['gpus: 1']);
    // ... and is, with its GPU and the cluster, once seen more than a minute later.
    await store2.write('c1', [
      rec(T0 + 2 * MINUTE, 1, { hostname: 'b3', gpu: 5, uuid: 'GPU-new' }),
    ]);
    assert.deepEqual(await updates(), ['clusters: 1', 'gpus: 2', 'hosts: 1']);
  });
});
