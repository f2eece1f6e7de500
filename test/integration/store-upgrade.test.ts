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
