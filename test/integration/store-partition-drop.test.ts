/**
 * The sealing job drops a sealed window's emptied hot partitions (schema 17): it waits on the
 * partition itself (long enough for PostgreSQL to cancel an autovacuum of it, which takes the
 * same lock as the one held here: SHARE UPDATE EXCLUSIVE), not on the rest of the table, and it
 * does not hold up reads of the table's other partitions while it waits.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { WINDOW_MS, windowOf } from '../../src/store/windows.js';
import { grid, times, utc, MINUTE, TEMP, POWER } from '../conformance/store-fixtures.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const server = await sharedPostgres();
after(() => server.release());

/** A window sealed in the tests (A), and a later one still hot (B). */
const A = windowOf(utc(2025, 7, 18, 10));
const B = A + 2 * WINDOW_MS;
const NOW = B + 30 * MINUTE;

async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

/** The partition of `table` that holds the reading at `t`. */
async function partitionOf(
  c: pg.Client,
  table: string,
  t: number,
  column: string,
): Promise<string> {
  const res = await c.query<{ p: string }>(
    `SELECT tableoid::regclass::text AS p FROM ${table} WHERE ${column} = to_timestamp($1 / 1000.0) LIMIT 1`,
    [t],
  );
  const p = res.rows[0]?.p;
  assert.ok(p !== undefined, `no row of ${table} at ${new Date(t).toISOString()}`);
  return p;
}

/** Polls until `check` holds (every 20 ms, up to 15 s). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 15_000; !(await check());) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('dropping emptied partitions (schema 17)', () => {
  it('waits on the emptied partition (an autovacuum of it), not on the rest of the table, and holds up no read of the others meanwhile', async (t) => {
    const url = await server.server.createDatabase(uniqueDatabase('drop'));
    const store = sqlStore(url);
    t.after(() => store.close());
    await store.migrate();
    const inA = grid({
      hosts: ['node-a'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: times(A, 30, MINUTE),
    });
    const inB = grid({
      hosts: ['node-a'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: times(B, 30, MINUTE),
    });
    await store.write('drop', [...inA, ...inB]);
    await store.rollUp();
    const admin = await client(url);
    const blocker = await client(url);
    t.after(async () => {
      await blocker.end();
      await admin.end();
    });
    const hotB = await partitionOf(admin, 'samples', B, 'time');
    let rawA = await partitionOf(admin, 'samples', A, 'time');
    const rollupA = await partitionOf(admin, 'samples_1m', A, 'bucket');
    assert.notEqual(rawA, hotB);

    // 1. An autovacuum of another partition of the table (the hot one): schema 6 locked the whole
    // table, waited for it, and gave up after 500 ms; now it does not wait for it at all.
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE ${hotB} IN SHARE UPDATE EXCLUSIVE MODE`);
    const first = await store.compact({ now: NOW, delayMs: 0 });
    await blocker.query('COMMIT');
    assert.equal(first.windows, 1);
    assert.deepEqual([...first.dropped].sort(), [rawA, rollupA].sort());

    // 2. An autovacuum of the emptied partition itself (a late reading of A brought it back; its
    // pass empties it again): the drop waits for it, and reads of the hot partition go on.
    const late = grid({
      hosts: ['node-a'],
      gpus: 1,
      metrics: [TEMP],
      times: [A + 45 * MINUTE + 1],
    });
    await store.write('drop', late);
    await store.rollUp();
    rawA = await partitionOf(admin, 'samples', late[0]?.timestamp ?? 0, 'time');
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE ${rawA} IN SHARE UPDATE EXCLUSIVE MODE`);
    const second = store.compact({ now: NOW, delayMs: 0 });
    const dropWaiting = async (): Promise<boolean> =>
      (
        await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE query LIKE '%nexus_drop_empty_partition%' AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
        )
      ).rows[0]?.n === 1;
    await until('the drop to wait on the partition', dropWaiting);
    const read = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM samples WHERE time >= timestamptz '${new Date(B).toISOString()}'`,
    );
    assert.equal(read.rows[0]?.n, inB.length);
    assert.ok(await dropWaiting(), 'the read of the hot partition waited until the drop gave up');
    await blocker.query('COMMIT');
    const merged = await second;
    assert.equal(merged.readings, 1);
    assert.ok(merged.dropped.includes(rawA), JSON.stringify(merged.dropped));

    // 3. A lock on the emptied partition that outlasts the wait (deadlock_timeout 1 s + 1 s): the
    // pass gives up on it, and the next pass, once it is free, drops it.
    const later = grid({
      hosts: ['node-a'],
      gpus: 1,
      metrics: [TEMP],
      times: [A + 50 * MINUTE + 1],
    });
    await store.write('drop', later);
    await store.rollUp();
    rawA = await partitionOf(admin, 'samples', A + 50 * MINUTE + 1, 'time');
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE ${rawA} IN SHARE UPDATE EXCLUSIVE MODE`);
    const gaveUp = await store.compact({ now: NOW, delayMs: 0 });
    assert.equal(gaveUp.readings, 1);
    assert.ok(!gaveUp.dropped.includes(rawA), JSON.stringify(gaveUp.dropped));
    await blocker.query('COMMIT');
    const again = await store.compact({ now: NOW, delayMs: 0 });
    assert.ok(again.dropped.includes(rawA), JSON.stringify(again.dropped));
    assert.equal(
      (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM samples')).rows[0]?.n,
      inB.length,
    );
  });
});
