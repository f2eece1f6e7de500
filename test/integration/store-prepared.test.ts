/**
 * The history statements of small selections run prepared on PostgreSQL (src/store/series-reads.ts):
 * parsed once per connection, and after five runs planned from a cached generic plan when
 * PostgreSQL finds it no dearer. Run again and again with other GPUs, ranges and steps, over
 * sealed chunks, the hot tier and the rollup, they answer exactly as the same statements run
 * unprepared (planned for their own parameters).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { readAggregated, readRaw } from '../../src/store/series-reads.js';
import type { SqlClient } from '../../src/store/types.js';
import { grid, times, utc, HOUR, MINUTE, POWER, TEMP } from '../conformance/store-fixtures.js';
import { postgresDatabase, sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const server = await sharedPostgres();
after(() => server.release());

const START = utc(2025, 7, 18, 8);

describe('prepared history statements', () => {
  it('answer as the unprepared ones, run after run, raw and aggregated, sealed and hot', async (t) => {
    const url = await server.server.createDatabase(uniqueDatabase('prepared'));
    const store = sqlStore(url);
    t.after(() => store.close());
    await store.migrate();
    // 6 hours every 10 s of 2 hosts x 2 GPUs x 2 metrics: the first 4 hours sealed.
    const records = grid({
      hosts: ['node-a', 'node-b'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: times(START, 6 * 360, 10_000),
    });
    await store.write('prepared', records);
    await store.rollUp();
    await store.compact({ now: START + 5 * HOUR + 30 * MINUTE, delayMs: 0 });
    // One connection: every run goes through the same prepared statements.
    const db = postgresDatabase(url, 1);
    t.after(() => db.close());
    const unprepared: SqlClient = { query: (text, params) => db.query(text, params) };
    const ids = await db.query<{ gpu: number; metric: number }>(
      'SELECT g.id AS gpu, m.id AS metric FROM gpus g CROSS JOIN metrics m ORDER BY 1, 2',
    );
    const gpus = [...new Set(ids.rows.map((r) => r.gpu))];
    const metrics = [...new Set(ids.rows.map((r) => r.metric))];
    assert.equal(gpus.length, 4);
    // PostgreSQL's own choice (it plans these for their parameters, as they cost little more to
    // plan than to run from a generic plan), then a generic plan every time.
    for (let run = 0; run < 24; run++) {
      if (run === 12) await db.query('SET plan_cache_mode = force_generic_plan');
      const from = START + ((run * 37) % 300) * MINUTE + (run % 4) * 7_000;
      const selection = {
        gpus: run % 3 === 0 ? gpus : [gpus[run % 4] ?? 0],
        metrics: run % 2 === 0 ? null : [metrics[run % 2] ?? 0],
        // Ranges over sealed windows, the hot tier, and across both, some inside minutes.
        from,
        to: from + (30 + ((run * 53) % 240)) * MINUTE,
        identity: null,
      };
      const raw = await readRaw(db, selection);
      assert.deepEqual(raw, await readRaw(unprepared, selection), `raw, run ${run}`);
      assert.ok(
        raw.some((s) => s.times.length > 0),
        `raw, run ${run}: no readings`,
      );
      for (const stepMs of [MINUTE, 5 * MINUTE]) {
        const q = { ...selection, stepMs, agg: 'avg' as const, rollup: true };
        const agg = await readAggregated(db, q);
        assert.deepEqual(agg, await readAggregated(unprepared, q), `${stepMs} ms, run ${run}`);
        assert.ok(agg.length > 0, `${stepMs} ms, run ${run}: no buckets`);
      }
    }
    // They were prepared, and run from them each time: 3 statements a run.
    const prepared = await db.query<{ custom: number; generic: number }>(
      'SELECT sum(custom_plans)::int AS custom, sum(generic_plans)::int AS generic FROM pg_prepared_statements',
    );
    assert.deepEqual(prepared.rows, [{ custom: 36, generic: 36 }]);
    // The identity guard holds under a cached generic plan too (last: a failed query closes its
    // connection, and its prepared statements with it).
    await assert.rejects(
      readRaw(db, {
        gpus: [gpus[0] ?? 0],
        metrics: null,
        from: START,
        to: START + HOUR,
        identity: 'another database',
      }),
      /identity/,
    );
  });

  it('a prepared statement its connection can no longer run (a migration changed what it returns) runs unprepared, then is prepared afresh', async (t) => {
    const url = await server.server.createDatabase(uniqueDatabase('prepared_broken'));
    const db = postgresDatabase(url, 1);
    t.after(() => db.close());
    await db.query('CREATE TABLE t (a int)');
    await db.query('INSERT INTO t VALUES (1)');
    const read = (): Promise<unknown[]> =>
      db.query('SELECT a FROM t WHERE a >= $1', [0], { prepare: true }).then((r) => r.rows);
    assert.deepEqual(await read(), [{ a: 1 }]);
    // PostgreSQL refuses the cached plan from now on ("cached plan must not change result type"):
    // the run goes through unprepared, on a new connection (the pool closed the one that failed),
    // and the statement is prepared there under a new name.
    await db.query('ALTER TABLE t ALTER a TYPE bigint');
    assert.deepEqual(await read(), [{ a: '1' }]);
    assert.deepEqual(await read(), [{ a: '1' }]);
    const names = await db.query<{ name: string }>(
      'SELECT name FROM pg_prepared_statements ORDER BY name',
    );
    assert.deepEqual(
      names.rows.map((r) => r.name),
      ['nexus_2'],
    );
  });
});
