/**
 * The sealing job drops a sealed window's emptied hot partitions (schema 17): it locks the
 * partition itself, then the table alone, so an autovacuum of another partition (held here as
 * autovacuum holds it: SHARE UPDATE EXCLUSIVE) is not in its way; one of the emptied partition is,
 * for that pass only, within the job's lock timeout.
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

describe('dropping emptied partitions (schema 17)', () => {
  it('an autovacuum of another partition is not in its way; one of the emptied partition delays it to the next pass', async (t) => {
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
    // pass empties it again): the pass gives up on it within the lock timeout, and the next pass,
    // once it is free, drops it.
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
