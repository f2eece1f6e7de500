import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { loadMigrations, migrate } from '../../src/store/migrate.js';
import { storedReadings, type Sample } from '../conformance/store-fixtures.js';
import { postgresDatabase, sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const pg = await sharedPostgres();
after(() => pg.release());

const MINUTE = 60_000;
const DAY = 86_400_000;
const START = Date.UTC(2025, 6, 16);
const METRICS = ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE'];
const HOSTS = ['node-a', 'node-b'];

/**
 * A collector of schema 3 (the release before storage engine v3), as far as the database sees
 * it: its partition call and its write statement, verbatim (src/store/sql-store.ts at schema 3).
 * It takes no window lock and knows nothing of chunks.
 */
const OLD_WRITE = `
WITH input AS (
  SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value
  FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) AS u(t, g, m, v)
), ins AS (
  INSERT INTO samples (time, gpu_id, metric_id, value)
  SELECT time, gpu_id, metric_id, value FROM input ORDER BY gpu_id, metric_id, time
  ON CONFLICT DO NOTHING
  RETURNING time, gpu_id, metric_id, value
), pending AS (
  INSERT INTO samples_pending (time, gpu_id, metric_id, value)
  SELECT time, gpu_id, metric_id, value FROM ins
)
SELECT (SELECT count(*) FROM ins)::int AS inserted`;

const value = (t: number, g: number, m: number): number => ((t / MINUTE + g * 7 + m * 3) % 400) / 4;

describe('upgrade from schema 3 to storage engine v3', () => {
  it('carries the data over, keeps schema-3 writers working beside it, and seals their readings without doubling any', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('upgrade'));
    const db = postgresDatabase(url, 2);
    t.after(() => db.close());
    const logger = silentLogger();
    await migrate(
      db,
      logger,
      loadMigrations().filter((m) => m.version <= 3),
    );
    // The fleet as schema 3 stored it.
    await db.query(
      `INSERT INTO clusters (name, first_seen, last_seen) VALUES ('old', now(), now())`,
    );
    await db.query(
      `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, h, now(), now() FROM clusters, unnest($1::text[]) h`,
      [HOSTS],
    );
    await db.query(
      `INSERT INTO gpus (host_id, gpu_index, uuid, first_seen, last_seen)
       SELECT h.id, i, 'GPU-' || h.hostname || '-' || i, now(), now() FROM hosts h, generate_series(0, 1) i`,
    );
    await db.query(`INSERT INTO metrics (name) SELECT unnest($1::text[])`, [METRICS]);
    const gpus = (
      await db.query<{ id: number; host: string; i: number }>(
        'SELECT g.id, h.hostname AS host, g.gpu_index AS i FROM gpus g JOIN hosts h ON h.id = g.host_id ORDER BY g.id',
      )
    ).rows;
    const metrics = (
      await db.query<{ id: number; name: string }>('SELECT id, name FROM metrics ORDER BY id')
    ).rows;

    const expected: Sample[] = [];
    /** Writes every GPU and metric each minute of [from, to) the way a schema-3 collector does. */
    const oldWrite = async (from: number, to: number): Promise<number> => {
      const ts: number[] = [];
      const gs: number[] = [];
      const ms: number[] = [];
      const vs: number[] = [];
      for (let tt = from; tt < to; tt += MINUTE) {
        for (const g of gpus) {
          for (const m of metrics) {
            ts.push(tt);
            gs.push(g.id);
            ms.push(m.id);
            vs.push(value(tt, g.id, m.id));
          }
        }
      }
      const days = [...new Set(ts.map((x) => Math.floor(x / DAY) * DAY))];
      await db.query('SELECT nexus_ensure_partitions($1::bigint[])', [days]);
      const res = await db.query<{ inserted: number }>(OLD_WRITE, [ts, gs, ms, vs]);
      return res.rows[0]?.inserted ?? 0;
    };
    const expect = (from: number, to: number): void => {
      for (let tt = from; tt < to; tt += MINUTE) {
        for (const g of gpus) {
          for (const m of metrics) {
            expected.push({
              host: g.host,
              gpu: g.i,
              metric: m.name,
              ms: tt,
              value: value(tt, g.id, m.id),
            });
          }
        }
      }
    };
    // Two days written under schema 3: daily raw partitions, monthly rollup partitions.
    assert.equal(await oldWrite(START, START + 2 * DAY), 2 * 1440 * 8);
    expect(START, START + 2 * DAY);
    const parts = await db.query<{ relname: string }>(
      "SELECT relname::text FROM pg_class WHERE relname LIKE 'samples_2%' AND relkind = 'r' ORDER BY 1",
    );
    assert.deepEqual(
      parts.rows.map((r) => r.relname),
      ['samples_20250716', 'samples_20250717'],
    );

    // The new release migrates; a schema-3 collector still writes the next day meanwhile.
    const store = sqlStore(url);
    t.after(() => store.close());
    assert.deepEqual((await store.migrate()).applied, [
      '004_series_chunks',
      '005_api_tokens',
      '006_partition_definer',
      '007_token_write_scope',
      '008_events',
      '009_usage',
      '010_mig',
      '011_usage_hourly',
      '012_fleet_changes',
      '013_rollup_hot_updates',
      '014_fleet_rollup_at_sealing',
      '015_usage_slices',
      '016_util_peaks',
      '017_partition_drop_lock',
      '018_inline_time_functions',
      '019_identity_plpgsql',
    ]);
    assert.equal(await oldWrite(START + 2 * DAY, START + 2 * DAY + 6 * 3_600_000), 360 * 8);
    expect(START + 2 * DAY, START + 2 * DAY + 6 * 3_600_000);
    await store.rollUp();
    const sorted = (): Sample[] =>
      [...expected].sort((a, b) =>
        a.host < b.host
          ? -1
          : a.host > b.host
            ? 1
            : a.gpu - b.gpu ||
              (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) ||
              a.ms - b.ms,
      );
    assert.deepEqual(await storedReadings(db), sorted());
    const minute = {
      cluster: 'old',
      from: START,
      to: START + 3 * DAY,
      stepMs: 30 * MINUTE,
      agg: 'avg' as const,
      maxPoints: 1e6,
    };
    const before = await store.reader.series(minute);
    const stats = await store.reader.clusterStats('old');
    assert.equal(stats?.samples, expected.length);

    // Sealing takes the old daily partitions (12 windows each) and the new 2-hour ones alike.
    const res = await store.compact({ now: START + 4 * DAY });
    assert.equal(res.windows, 24 + 3);
    assert.ok(res.dropped.includes('samples_20250716'));
    // The monthly rollup partition also holds windows not sealed: its sealed windows' rows go.
    assert.equal(
      (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples_1m')).rows[0]?.n,
      0,
    );
    assert.equal(
      (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples')).rows[0]?.n,
      0,
    );
    assert.deepEqual(await storedReadings(db), sorted());
    assert.deepEqual(await store.reader.series(minute), before);
    assert.deepEqual(await store.reader.clusterStats('old'), stats);

    // A schema-3 collector redelivering a sealed hour stores it again (it cannot know better);
    // the next pass keeps one of each reading, and says so.
    const hour = START + 5 * 3_600_000;
    assert.equal(await oldWrite(hour, hour + 60 * MINUTE), 60 * 8);
    const merged = await store.compact({ now: START + 4 * DAY });
    assert.equal(merged.ties, 60 * 8);
    assert.deepEqual(await storedReadings(db), sorted());
    assert.deepEqual(await store.reader.series(minute), before);
  });
});

describe('upgrade to schema 14: fleet_1m written by the sealing job', () => {
  it('readers see the same fleet rollup: copies of unsealed minutes leave fleet_1m, a late minute of a sealed window is not folded twice, and an earlier release beside it counts nothing twice', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('upgrade14'));
    const db = postgresDatabase(url, 2);
    t.after(() => db.close());
    await migrate(
      db,
      silentLogger(),
      loadMigrations().filter((m) => m.version <= 13),
    );
    await db.query(`INSERT INTO clusters (name, first_seen, last_seen) VALUES ('c', now(), now())`);
    await db.query(
      `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, 'node-a', now(), now() FROM clusters`,
    );
    await db.query(
      `INSERT INTO gpus (host_id, gpu_index, uuid, first_seen, last_seen) SELECT id, 0, 'GPU-a0', now(), now() FROM hosts`,
    );
    await db.query(
      `INSERT INTO metrics (name) VALUES ('DCGM_FI_DEV_GPU_UTIL'), ('DCGM_FI_DEV_GPU_TEMP')`,
    );
    const sealed = Date.UTC(2026, 0, 5, 8); // a 2-hour window sealed under schema 13
    const open = Date.UTC(2026, 0, 5, 10); // one not sealed yet
    await db.query('SELECT nexus_ensure_window_partitions($1::bigint[])', [[sealed, open]]);
    // What schema 13's rollup job left: every minute of both metrics in samples_1m until its
    // window is sealed, and the utilisation's minutes in fleet_1m too.
    const row = `SELECT nexus_ts($1) + m * interval '1 minute', g.id, mt.id, 1, 5, 10 * m + 6, 2,
                        nexus_ts($1) + m * interval '1 minute' + interval '30 seconds', m
                 FROM gpus g, metrics mt, generate_series(0, 2) m WHERE mt.name = ANY($2::text[])`;
    const both = ['DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_GPU_TEMP'];
    const util = ['DCGM_FI_DEV_GPU_UTIL'];
    await db.query(`INSERT INTO samples_1m ${row}`, [open, both]);
    await db.query(`INSERT INTO fleet_1m ${row}`, [open, util]);
    // The sealed window: its minutes in fleet_1m only (samples_1m's went with sealing), then a
    // late reading of its minute 1 that schema 13 folded into both tables.
    await db.query(`INSERT INTO fleet_1m ${row}`, [sealed, util]);
    await db.query(
      `INSERT INTO sealed_windows (window_start, readings) VALUES (nexus_ts($1), 12)`,
      [sealed],
    );
    const lateMinute = sealed + 60_000;
    await db.query(
      `INSERT INTO samples_1m SELECT nexus_ts($1), g.id, mt.id, 50, 50, 50, 1, nexus_ts($1) + interval '45 seconds', 50
       FROM gpus g, metrics mt WHERE mt.name = ANY($2::text[])`,
      [lateMinute, both],
    );
    await db.query(
      `UPDATE fleet_1m SET max = 50, sum = sum + 50, count = count + 1, last_time = nexus_ts($1) + interval '45 seconds', last_value = 50
       WHERE bucket = nexus_ts($1)`,
      [lateMinute],
    );
    const read = async (from: string): Promise<string[]> =>
      (
        await db.query<{ r: string }>(
          `SELECT (nexus_ms(bucket), gpu_id, metric_id, min, max, sum, count, nexus_ms(last_time), last_value)::text AS r
           FROM ${from} ORDER BY gpu_id, metric_id, bucket`,
        )
      ).rows.map((r) => r.r);
    const before = await read('fleet_1m');
    const temp = await read(
      "samples_1m WHERE metric_id = (SELECT id FROM metrics WHERE name = 'DCGM_FI_DEV_GPU_TEMP')",
    );
    assert.equal(before.length, 6);

    const store = sqlStore(url);
    t.after(() => store.close());
    assert.deepEqual((await store.migrate()).applied, [
      '014_fleet_rollup_at_sealing',
      '015_usage_slices',
      '016_util_peaks',
      '017_partition_drop_lock',
      '018_inline_time_functions',
      '019_identity_plpgsql',
    ]);
    // Readers: exactly the rollup schema 13's fleet_1m held, one row per key.
    assert.deepEqual(await read('fleet_1m_folded'), before);
    // fleet_1m keeps the sealed window's minutes (the late one included), and the open window's
    // are samples_1m's alone; the other metric's rows are untouched.
    assert.deepEqual(await read('fleet_1m'), before.slice(0, 3));
    assert.deepEqual(
      await read(
        "samples_1m WHERE metric_id = (SELECT id FROM metrics WHERE name = 'DCGM_FI_DEV_GPU_TEMP')",
      ),
      temp,
    );

    // An earlier release's collector, still running during the upgrade, folds the open window's
    // utilisation into fleet_1m too: readers do not count it twice.
    await db.query(
      `INSERT INTO fleet_1m ${row} ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET count = fleet_1m.count + excluded.count`,
      [open, util],
    );
    assert.deepEqual(await read('fleet_1m_folded'), before);
    // The open window sealed (the rollup rows deleted, as any release's sealing job does, then
    // the mark): fleet_1m holds samples_1m's minutes instead of the earlier release's.
    await db.query(
      "DELETE FROM samples_1m WHERE bucket >= nexus_ts($1) AND bucket < nexus_ts($1) + interval '2 hours'",
      [open],
    );
    await db.query(
      `INSERT INTO sealed_windows (window_start, readings) VALUES (nexus_ts($1), 12)`,
      [open],
    );
    assert.deepEqual(await read('fleet_1m'), before);
    assert.deepEqual(await read('fleet_1m_folded'), before);
    // A late reading of it, sealed again: combined with the minute fleet_1m holds.
    await db.query(
      `INSERT INTO samples_1m SELECT nexus_ts($1), g.id, mt.id, 0, 0, 0, 1, nexus_ts($1) + interval '50 seconds', 0
       FROM gpus g, metrics mt WHERE mt.name = ANY($2::text[])`,
      [open, both],
    );
    await db.query(
      "DELETE FROM samples_1m WHERE bucket >= nexus_ts($1) AND bucket < nexus_ts($1) + interval '2 hours'",
      [open],
    );
    const merged = await db.query<{ min: number; count: number; last_value: number }>(
      `SELECT min, count, last_value FROM fleet_1m WHERE bucket = nexus_ts($1)`,
      [open],
    );
    assert.deepEqual(merged.rows, [{ min: 0, count: 3, last_value: 0 }]);
  });
});

describe('upgrade to schema 15: usage by the 10-minute slice and by the day', () => {
  it('hours marked for the schema 11 job become their slices, days of usage_1h are marked, and usage reads the same before and after the job', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('upgrade15'));
    const db = postgresDatabase(url, 2);
    t.after(() => db.close());
    await migrate(
      db,
      silentLogger(),
      loadMigrations().filter((m) => m.version <= 14),
    );
    const h1 = Date.UTC(2026, 0, 5, 8); // computed by schema 11's job
    const h2 = Date.UTC(2026, 0, 5, 9); // written since, marked in usage_dirty
    await db.query(`INSERT INTO clusters (name, first_seen, last_seen) VALUES ('c', now(), now())`);
    await db.query(
      `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, 'node-a', now(), now() FROM clusters`,
    );
    await db.query(
      `INSERT INTO gpus (host_id, gpu_index, uuid, first_seen, last_seen) SELECT id, 0, 'GPU-a0', now(), now() FROM hosts`,
    );
    await db.query(`INSERT INTO metrics (name) VALUES ('DCGM_FI_DEV_GPU_UTIL')`);
    await db.query('SELECT nexus_ensure_window_partitions($1::bigint[])', [[h1, h2]]);
    // Two hours of minutes: utilisation 50 % and pod n/p every minute.
    await db.query(
      `INSERT INTO samples_1m (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
       SELECT b, g.id, m.id, 50, 50, 50, 1, b + interval '30 seconds', 50
       FROM gpus g, metrics m, generate_series(nexus_ts($1), nexus_ts($1) + interval '119 minutes', interval '1 minute') b`,
      [h1],
    );
    await db.query(
      `INSERT INTO gpu_allocations (gpu_id, bucket, namespace, pod)
       SELECT g.id, b, 'n', 'p' FROM gpus g, generate_series(nexus_ts($1), nexus_ts($1) + interval '119 minutes', interval '1 minute') b`,
      [h1],
    );
    // What schema 11's job left: the first hour computed, the second marked.
    await db.query(
      `INSERT INTO usage_1h (gpu_id, hour, namespace, pod, minutes, usum, ucount, joules)
       SELECT id, nexus_ts($1), 'n', 'p', 60, 3000, 60, 0 FROM gpus`,
      [h1],
    );
    await db.query(
      `INSERT INTO usage_dirty (hour, marked_at) VALUES (nexus_ts($1), timestamptz '2026-01-05 10:00:30+00')`,
      [h2],
    );

    const store = sqlStore(url, silentLogger(), { usageSettleMs: 0 });
    t.after(() => store.close());
    assert.deepEqual((await store.migrate()).applied, [
      '015_usage_slices',
      '016_util_peaks',
      '017_partition_drop_lock',
      '018_inline_time_functions',
      '019_identity_plpgsql',
    ]);
    const rows = async (sql: string): Promise<unknown[]> => (await db.query(sql)).rows;
    assert.deepEqual(await rows('SELECT * FROM usage_dirty'), []);
    assert.deepEqual(
      await rows(
        `SELECT nexus_ms(slice) AS s, nexus_ms(marked_at) AS m FROM usage_slices ORDER BY slice`,
      ),
      [0, 1, 2, 3, 4, 5].map((k) => ({
        s: String(h2 + k * 600_000),
        m: String(Date.UTC(2026, 0, 5, 10, 0, 30)),
      })),
    );
    assert.deepEqual(
      await rows(`SELECT nexus_ms(day) AS d, nexus_ms(marked_at) AS m FROM usage_days`),
      [{ d: String(Date.UTC(2026, 0, 5)), m: '0' }],
    );
    const usage = async (from: number, to: number) =>
      (await store.reader.usage({ cluster: 'c', groupBy: 'pod', from, to })).groups.map((g) => [
        g.namespace,
        g.pod,
        g.allocated_minutes,
        g.avg_utilization_percent,
      ]);
    const day = Date.UTC(2026, 0, 5);
    for (const when of ['before the job', 'after the job']) {
      assert.deepEqual(await usage(h1, h1 + 3_600_000), [['n', 'p', 60, 50]], `${when}: hour 1`);
      assert.deepEqual(await usage(h2, h2 + 3_600_000), [['n', 'p', 60, 50]], `${when}: hour 2`);
      assert.deepEqual(await usage(day, day + 86_400_000), [['n', 'p', 120, 50]], `${when}: day`);
      if (when === 'before the job')
        assert.deepEqual(await store.rollUpUsage(), {
          slices: 6,
          hours: 1,
          days: 1,
          months: 1,
          peaks: 0,
          busy: false,
        });
    }
    // The day is summed from both hours: read without them, the same.
    await db.query('DELETE FROM usage_1h');
    assert.deepEqual(await usage(day, day + 86_400_000), [['n', 'p', 120, 50]]);
  });
});

describe('upgrade to schema 16: utilisation peaks for the idle report', () => {
  it('slices computed by the schema 15 job are merged into util_peaks by the usage job once nothing else is due, newest first', async () => {
    const url = await pg.server.createDatabase(uniqueDatabase('upgrade16'));
    const db = postgresDatabase(url, 2);
    try {
      await migrate(
        db,
        silentLogger(),
        loadMigrations().filter((m) => m.version <= 15),
      );
      const h1 = Date.UTC(2026, 0, 5, 8);
      await db.query(
        `INSERT INTO clusters (name, first_seen, last_seen) VALUES ('c', now(), now())`,
      );
      await db.query(
        `INSERT INTO hosts (cluster_id, hostname, first_seen, last_seen) SELECT id, 'node-a', now(), now() FROM clusters`,
      );
      await db.query(
        `INSERT INTO gpus (host_id, gpu_index, uuid, first_seen, last_seen) SELECT id, 0, 'GPU-a0', now(), now() FROM hosts`,
      );
      await db.query(`INSERT INTO metrics (name) VALUES ('DCGM_FI_DEV_GPU_UTIL')`);
      await db.query('SELECT nexus_ensure_window_partitions($1::bigint[])', [[h1]]);
      // Two hours of minutes: 50 % in the first, 1 % in the second; every slice computed by the
      // schema 15 job.
      await db.query(
        `INSERT INTO samples_1m (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
         SELECT b, g.id, m.id, v, v, v, 1, b + interval '30 seconds', v
         FROM gpus g, metrics m, generate_series(nexus_ts($1), nexus_ts($1) + interval '119 minutes', interval '1 minute') b,
              LATERAL (SELECT CASE WHEN b < nexus_ts($1) + interval '1 hour' THEN 50 ELSE 1 END::float8 AS v) x`,
        [h1],
      );
      await db.query(
        `INSERT INTO usage_slices (slice, computed_at)
         SELECT s, now() FROM generate_series(nexus_ts($1), nexus_ts($1) + interval '110 minutes', interval '10 minutes') s`,
        [h1],
      );
      const store = sqlStore(url, silentLogger(), { usageSettleMs: 0 });
      try {
        assert.deepEqual((await store.migrate()).applied, [
          '016_util_peaks',
          '017_partition_drop_lock',
          '018_inline_time_functions',
          '019_identity_plpgsql',
        ]);
        const unmerged = await db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM usage_slices WHERE peaks_at IS NULL',
        );
        assert.equal(unmerged.rows[0]?.n, 12);
        assert.deepEqual(await store.rollUpUsage(), {
          slices: 0,
          hours: 0,
          days: 0,
          months: 0,
          peaks: 12,
          busy: false,
        });
        // The staircase: the last slice at 50 %, then the last one (1 %).
        const peaks = await db.query<{ s: string; max: number }>(
          'SELECT nexus_ms(slice)::text AS s, max FROM util_peaks ORDER BY slice',
        );
        assert.deepEqual(
          peaks.rows.map((r) => [Number(r.s), r.max]),
          [
            [h1 + 50 * MINUTE, 50],
            [h1 + 110 * MINUTE, 1],
          ],
        );
        assert.equal((await store.rollUpUsage()).peaks, 0, 'each slice merged once');
      } finally {
        await store.close();
      }
    } finally {
      await db.close();
    }
  });
});
