import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { NexusError } from '../../src/core/errors.js';
import type { SqlStoreOptions } from '../../src/store/sql-store.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { SqlClient, TelemetryStore, WriteMethod } from '../../src/store/types.js';
import {
  SECOND,
  MINUTE,
  HOUR,
  DAY,
  utc,
  T0,
  TEMP,
  POWER,
  ENERGY,
  CUSTOM,
  rec,
  grid,
  times,
  compareSamples,
  expectedSamples,
  storedSamples,
  counts,
  type Bucket,
  expectedBuckets,
  storedBuckets,
  storedReadings,
  storedChunks,
  expectedLatest,
  storedLatest,
  storedGpus,
  type Workload,
  storedWorkloads,
  partitionsOf,
  rowsIn,
  pendingCount,
  windowPartition,
  rollupPartition,
  assertRejected,
} from './store-fixtures.js';
import { eventTests, retireTests } from './store-events.js';

/** Store settings a test may override; the harness fills in the rest. */
export interface StoreOptions {
  retentionDays?: number;
  rollupRetentionDays?: number;
  partitionAheadMs?: number;
  compactDelayMs?: number;
  writeMethod?: WriteMethod;
  foldOnWrite?: boolean;
  usageSettleMs?: number;
}

/** The SqlStore settings a harness builds its store with, from a test's overrides. */
export function storeSettings(o: StoreOptions): Omit<SqlStoreOptions, 'db' | 'logger'> {
  return {
    writeMethod: o.writeMethod ?? 'unnest',
    retentionDays: o.retentionDays ?? 0,
    rollupRetentionDays: o.rollupRetentionDays ?? 0,
    partitionAheadMs: o.partitionAheadMs ?? 0,
    compactDelayMs: o.compactDelayMs ?? HOUR,
    ...(o.foldOnWrite === undefined ? {} : { foldOnWrite: o.foldOnWrite }),
    ...(o.usageSettleMs === undefined ? {} : { usageSettleMs: o.usageSettleMs }),
  };
}

/** What a backend provides to run the store conformance suite. */
export interface StoreHarness {
  readonly name: string;
  /**
   * A store on a fresh, empty (not migrated) database, and a raw SQL client on the same database
   * for the tests to look at the tables.
   */
  create(options: StoreOptions): Promise<{ store: TelemetryStore; sql: SqlClient }>;
  /**
   * Optional: the same on a database the migrations were already applied to, where the backend
   * can copy one cheaply (PGlite: from a migrated template). The suite still calls migrate() on
   * it (which then applies nothing); without it, the suite migrates what `create` gives.
   */
  createMigrated?(options: StoreOptions): Promise<{ store: TelemetryStore; sql: SqlClient }>;
  /** Closes everything `create` made. */
  teardown(): Promise<void>;
  /**
   * The write methods the backend has, each run through the write cases (default: both). A
   * database without COPY (PGlite) writes with unnest when asked for 'copy': those cases would
   * run the unnest path a second time.
   */
  readonly writeMethods?: readonly WriteMethod[];
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

/** The backend's own choice of fold mode stays; the rest is fixed. */
const DEFAULTS: Required<Omit<StoreOptions, 'foldOnWrite' | 'usageSettleMs'>> = {
  retentionDays: 0,
  rollupRetentionDays: 0,
  partitionAheadMs: 0,
  compactDelayMs: HOUR,
  writeMethod: 'unnest',
};

/** The behaviour every store backend must have. */
export function storeConformance(h: StoreHarness): void {
  describe(`store conformance: ${h.name}`, () => {
    after(() => h.teardown());

    /** A store on a fresh database, closed when the test ends. */
    const open = async (t: TestContext, over: StoreOptions = {}) => {
      const opened = await h.create({ ...DEFAULTS, ...over });
      t.after(() => opened.store.close());
      return opened;
    };
    /** The same, migrated. */
    const migrated = async (t: TestContext, over: StoreOptions = {}) => {
      let opened;
      if (h.createMigrated === undefined) opened = await open(t, over);
      else {
        const copy = await h.createMigrated({ ...DEFAULTS, ...over });
        t.after(() => copy.store.close());
        opened = copy;
      }
      await opened.store.migrate();
      return opened;
    };

    describe('migrations', () => {
      it('migrate() applies each schema version once; a second migrate() applies nothing', async (t) => {
        const { store, sql } = await open(t);
        assert.deepEqual(await store.migrate(), {
          applied: [
            '001_schema',
            '002_rollup_pending',
            '003_database_identity',
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
          ],
          current: 19,
        });
        assert.deepEqual(await store.migrate(), { applied: [], current: 19 });
        const rows = await sql.query<{ version: number; name: string }>(
          'SELECT version, name FROM nexus_schema_migrations ORDER BY version',
        );
        assert.deepEqual(rows.rows, [
          { version: 1, name: '001_schema' },
          { version: 2, name: '002_rollup_pending' },
          { version: 3, name: '003_database_identity' },
          { version: 4, name: '004_series_chunks' },
          { version: 5, name: '005_api_tokens' },
          { version: 6, name: '006_partition_definer' },
          { version: 7, name: '007_token_write_scope' },
          { version: 8, name: '008_events' },
          { version: 9, name: '009_usage' },
          { version: 10, name: '010_mig' },
          { version: 11, name: '011_usage_hourly' },
          { version: 12, name: '012_fleet_changes' },
          { version: 13, name: '013_rollup_hot_updates' },
          { version: 14, name: '014_fleet_rollup_at_sealing' },
          { version: 15, name: '015_usage_slices' },
          { version: 16, name: '016_util_peaks' },
          { version: 17, name: '017_partition_drop_lock' },
          { version: 18, name: '018_inline_time_functions' },
          { version: 19, name: '019_identity_plpgsql' },
        ]);
      });

      it('concurrent migrate() calls apply each version exactly once', async (t) => {
        const { store, sql } = await open(t);
        const results = await Promise.all([store.migrate(), store.migrate(), store.migrate()]);
        assert.deepEqual(results.flatMap((r) => r.applied).sort(), [
          '001_schema',
          '002_rollup_pending',
          '003_database_identity',
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
        assert.ok(results.every((r) => r.current === 19));
        assert.equal(await rowsIn(sql, 'nexus_schema_migrations'), 19);
      });

      it('nexus_ts and nexus_ms (schema 18) are inlined into the statements, and convert as the definitions of schema 1 did, in any session time zone', async (t) => {
        const { sql } = await migrated(t);
        const plan = await sql.query<{ 'QUERY PLAN': string }>(
          'EXPLAIN (VERBOSE) SELECT nexus_ms(nexus_ts(x)) FROM generate_series(1::bigint, 3) x',
        );
        const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
        assert.doesNotMatch(text, /nexus_(ts|ms)/, text);
        // Schema 1's bodies, written out, against the functions: random values over some 300
        // years (ms) and 60 years (µs) around 1970, and the edges of the range a timestamptz
        // holds, in three session time zones (one statement:
        // the pool may run each on another connection).
        await sql.query(`DO $$
          DECLARE
            zone text;
            bad text;
          BEGIN
            FOREACH zone IN ARRAY ARRAY['UTC', 'America/New_York', 'Asia/Kolkata'] LOOP
              PERFORM set_config('TimeZone', zone, true);
              WITH v AS (
                SELECT (random() * 2e13 - 1.2e13)::bigint AS ms FROM generate_series(1, 20000)
                UNION ALL SELECT unnest(ARRAY[0, 1, -1, 999, -999, -62135596800000, -62135596799877,
                                             253402300799999, 9007199254740, -210866803200000]::bigint[])
              ), t AS (
                SELECT timestamptz 'epoch' + (random() * 2e15 - 1e15)::bigint * interval '1 microsecond' AS t
                FROM generate_series(1, 20000)
                UNION ALL SELECT unnest(ARRAY['0001-01-01 00:00:00.000001+00', '1969-12-31 23:59:59.999999+00',
                                             '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00']::timestamptz[])
              )
              SELECT string_agg(x, ', ') INTO bad FROM (
                SELECT 'nexus_ts(' || ms || ')' AS x FROM v
                WHERE nexus_ts(ms) IS DISTINCT FROM 'epoch'::timestamptz + ms * interval '1 millisecond'
                   OR nexus_ms(nexus_ts(ms)) IS DISTINCT FROM ms
                UNION ALL
                SELECT 'nexus_ms(' || t || ')' FROM t
                WHERE nexus_ms(t) IS DISTINCT FROM floor(extract(epoch FROM t) * 1000)::bigint
              ) d;
              IF bad IS NOT NULL THEN
                RAISE EXCEPTION 'in time zone %: %', zone, left(bad, 500);
              END IF;
              IF nexus_ms(NULL) IS NOT NULL OR nexus_ts(NULL) IS NOT NULL THEN
                RAISE EXCEPTION 'NULL in, not NULL out';
              END IF;
            END LOOP;
          END $$`);
      });

      it('ping() rejects on a database that was not migrated and passes after migrate()', async (t) => {
        const { store } = await open(t);
        await assert.rejects(store.ping(), (err: unknown) => {
          assert.ok(err instanceof NexusError);
          assert.equal(err.code, 'STORE_UNAVAILABLE');
          return true;
        });
        await store.migrate();
        await store.ping();
      });
    });

    for (const writeMethod of h.writeMethods ?? (['unnest', 'copy'] as const)) {
      describe(`writes (${writeMethod})`, () => {
        writeTests((t, over = {}) => migrated(t, { ...over, writeMethod }));
      });
    }

    describe('events (XID, throttle, health)', () => {
      eventTests(migrated);
    });

    describe('retired GPUs (stopped, reappeared)', () => {
      retireTests(migrated);
    });

    describe('partition maintenance', () => {
      maintenanceTests(migrated);
    });

    describe('sealing into chunks (storage engine v3)', () => {
      sealingTests(migrated);
    });
  });
}

type Open = (
  t: TestContext,
  over?: StoreOptions,
) => Promise<{ store: TelemetryStore; sql: SqlClient }>;

// ---------------------------------------------------------------------------------------------
// Writes: what every write method must store
// ---------------------------------------------------------------------------------------------

function writeTests(open: Open): void {
  it('stores every record exactly: values, millisecond timestamps and dimensions', async (t) => {
    const { store, sql } = await open(t);
    const records = [
      ...grid({
        hosts: ['node-a', 'node-b'],
        gpus: 2,
        metrics: [TEMP, POWER],
        times: [T0, T0 + 1, T0 + 999, T0 + 15 * SECOND],
      }),
      rec(T0 + 7, 0.1 + 0.2, { metric: CUSTOM }),
      rec(T0 + 8, -3.000_000_000_000_1, { metric: CUSTOM }),
      rec(T0 + 9, 1e-7, { metric: CUSTOM }),
      rec(T0 + 10, 12_345.678_901_234, { metric: CUSTOM }),
      rec(T0 + 11, 1 / 3, { metric: CUSTOM }),
    ];
    assert.deepEqual(await store.write('cluster-1', []), { inserted: 0, duplicates: 0 });
    assert.deepEqual(await store.write('cluster-1', records), {
      inserted: records.length,
      duplicates: 0,
    });
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
    assert.deepEqual(await counts(sql), {
      clusters: 1,
      hosts: 2,
      gpus: 4,
      metrics: 3,
      workloads: 0,
      samples: 37,
      latest: 9,
      buckets: 9,
    });

    // The same hostnames in another cluster are other hosts and GPUs.
    const other = grid({ hosts: ['node-a'], gpus: 1, metrics: [TEMP], times: [T0] });
    assert.deepEqual(await store.write('cluster-2', other), { inserted: 1, duplicates: 0 });
    const c = await counts(sql);
    assert.deepEqual([c.clusters, c.hosts, c.gpus, c.metrics, c.samples], [2, 3, 5, 3, 38]);
  });

  it('stores the GPU uuid, model, device and labels (without __name__), and DCGM units', async (t) => {
    const { store, sql } = await open(t);
    const labels = { container: 'trainer', 'kubernetes.io/x': 'a "quoted" value', empty: '' };
    await store.write('cluster-1', [
      rec(T0, 45.5, { metric: TEMP, uuid: 'GPU-0a1b', model: 'NVIDIA A100-SXM4-80GB', labels }),
      rec(T0, 301.25, { metric: POWER, uuid: 'GPU-0a1b', model: 'NVIDIA A100-SXM4-80GB', labels }),
      rec(T0, 1234, { metric: ENERGY, uuid: 'GPU-0a1b', model: 'NVIDIA A100-SXM4-80GB', labels }),
      rec(T0, 7, { metric: CUSTOM, uuid: 'GPU-0a1b', model: 'NVIDIA A100-SXM4-80GB', labels }),
      rec(T0, 50, { hostname: 'node-b', gpu: 3, device: 'nvidia3' }),
    ]);
    assert.deepEqual(await storedGpus(sql), [
      {
        host: 'node-a',
        index: 0,
        uuid: 'GPU-0a1b',
        model: 'NVIDIA A100-SXM4-80GB',
        device: 'nvidia0',
        labels: {
          gpu: '0',
          UUID: 'GPU-0a1b',
          device: 'nvidia0',
          modelName: 'NVIDIA A100-SXM4-80GB',
          Hostname: 'node-a',
          ...labels,
        },
      },
      {
        host: 'node-b',
        index: 3,
        uuid: 'GPU-node-b-3',
        model: 'NVIDIA H100 80GB HBM3',
        device: 'nvidia3',
        labels: {
          gpu: '3',
          UUID: 'GPU-node-b-3',
          device: 'nvidia3',
          modelName: 'NVIDIA H100 80GB HBM3',
          Hostname: 'node-b',
        },
      },
    ]);
    const metrics = await sql.query<{ name: string; unit: string; type: string }>(
      'SELECT name, unit, type FROM metrics',
    );
    assert.deepEqual(
      metrics.rows.sort((a, b) => (a.name < b.name ? -1 : 1)),
      [
        { name: CUSTOM, unit: '', type: 'gauge' },
        { name: TEMP, unit: 'C', type: 'gauge' },
        { name: POWER, unit: 'W', type: 'gauge' },
        { name: ENERGY, unit: 'mJ', type: 'counter' },
      ].sort((a, b) => (a.name < b.name ? -1 : 1)),
    );
  });

  it('writing the same records again inserts nothing and changes nothing', async (t) => {
    const { store, sql } = await open(t);
    const records = grid({
      hosts: ['node-a', 'node-b'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: times(T0, 5, 10 * SECOND),
    });
    await store.write('cluster-1', records);
    const before = await counts(sql);
    const buckets = await storedBuckets(sql);
    const latest = await storedLatest(sql);
    assert.deepEqual(await store.write('cluster-1', records), {
      inserted: 0,
      duplicates: records.length,
    });
    assert.deepEqual(await counts(sql), before);
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
    assert.deepEqual(await storedBuckets(sql), buckets);
    assert.deepEqual(await storedLatest(sql), latest);
  });

  it('a cluster first written just after its readers cached the fleet is found at once', async (t) => {
    const { store } = await open(t);
    await store.write('cluster-1', [rec(T0, 41)]);
    // Caches the fleet (cluster-1 only) a moment before cluster-2's first commit.
    assert.equal((await store.reader.latest({ cluster: 'cluster-1' })).length, 1);
    await store.write('cluster-2', [rec(T0, 42)]);
    const latest = await store.reader.latest({ cluster: 'cluster-2' });
    assert.deepEqual(
      latest.map((v) => v.value),
      [42],
    );
    await assert.rejects(
      store.reader.latest({ cluster: 'cluster-3' }),
      /cluster "cluster-3" not found/,
    );
  });

  it('a batch holding the same reading twice stores it once', async (t) => {
    const { store, sql } = await open(t);
    const a = rec(T0, 41.5);
    const b = rec(T0 + 1, 42.5);
    // Which records were new: the first of each reading (the live feed announces those).
    assert.deepEqual(await store.write('cluster-1', [a, b, a, a]), {
      inserted: 2,
      duplicates: 2,
      fresh: [0, 1],
    });
    assert.deepEqual(await storedSamples(sql), expectedSamples([a, b]));
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([a, b]));
  });

  it('samples_latest holds the newest reading; an older one does not regress it', async (t) => {
    const { store, sql } = await open(t);
    const at = (ms: number, value: number, metric = TEMP) => rec(ms, value, { metric });
    // Within one batch, out of order: the newest of each metric wins.
    await store.write('cluster-1', [
      at(T0 + 2 * MINUTE, 52.5),
      at(T0, 50.25),
      at(T0 + 3 * MINUTE + 1, 53.75),
      at(T0 + MINUTE, 51),
      at(T0, 300.5, POWER),
    ]);
    const temp = (ms: number, value: number) => ({
      host: 'node-a',
      gpu: 0,
      metric: TEMP,
      ms,
      value,
    });
    const power = { host: 'node-a', gpu: 0, metric: POWER, ms: T0, value: 300.5 };
    assert.deepEqual(
      await storedLatest(sql),
      [power, temp(T0 + 3 * MINUTE + 1, 53.75)].sort(compareSamples),
    );

    // An older reading is stored, but does not become the latest.
    assert.deepEqual(await store.write('cluster-1', [at(T0 + 3 * MINUTE, 49)]), {
      inserted: 1,
      duplicates: 0,
    });
    assert.deepEqual(
      await storedLatest(sql),
      [power, temp(T0 + 3 * MINUTE + 1, 53.75)].sort(compareSamples),
    );

    // A newer one replaces it.
    await store.write('cluster-1', [at(T0 + 3 * MINUTE + 2, 47.125)]);
    assert.deepEqual(
      await storedLatest(sql),
      [power, temp(T0 + 3 * MINUTE + 2, 47.125)].sort(compareSamples),
    );
    assert.equal((await counts(sql)).samples, 7);
  });

  it('samples_1m: exact min, max, sum and count per minute, never counted twice', async (t) => {
    const { store, sql } = await open(t);
    const minute = utc(2025, 7, 18, 13, 42);
    const first = [
      rec(minute + 5_500, 41.5),
      rec(minute + 30 * SECOND, 43.25),
      rec(minute + MINUTE - 1, 40.75),
      rec(minute + MINUTE, 60.125), // the next minute
    ];
    await store.write('cluster-1', first);
    const bucket = (b: number, min: number, max: number, sum: number, count: number): Bucket => ({
      host: 'node-a',
      gpu: 0,
      metric: TEMP,
      bucket: b,
      min,
      max,
      sum,
      count,
    });
    assert.deepEqual(await storedBuckets(sql), [
      bucket(minute, 40.75, 43.25, 125.5, 3),
      bucket(minute + MINUTE, 60.125, 60.125, 60.125, 1),
    ]);

    // The same batch again, and a batch mixing old and new readings: only new readings count.
    await store.write('cluster-1', first);
    const second = [rec(minute + 30 * SECOND, 43.25), rec(minute + 59 * SECOND, 39.5)];
    assert.deepEqual(await store.write('cluster-1', second), {
      inserted: 1,
      duplicates: 1,
      fresh: [1],
    });
    assert.deepEqual(await storedBuckets(sql), [
      bucket(minute, 39.5, 43.25, 165, 4),
      bucket(minute + MINUTE, 60.125, 60.125, 60.125, 1),
    ]);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([...first, ...second]));
  });

  it('the rollup job folds each stored reading into samples_1m and samples_latest exactly once', async (t) => {
    const { store, sql } = await open(t, { foldOnWrite: false });
    const minute = utc(2025, 7, 18, 13, 42);
    const first = [
      rec(minute + 5_500, 41.5),
      rec(minute + 30 * SECOND, 43.25),
      rec(minute + MINUTE + 1, 60.125),
      rec(minute + 10 * SECOND, 300.5, { metric: POWER }),
    ];
    await store.write('cluster-1', first);
    // Written, not folded yet: readers see it all the same.
    assert.equal(await pendingCount(sql), 4);
    assert.deepEqual(await storedBuckets(sql, 'samples_1m'), []);
    assert.deepEqual(await storedLatest(sql, 'samples_latest'), []);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets(first));
    assert.deepEqual(await storedLatest(sql), expectedLatest(first));

    const folded = await store.rollUp();
    assert.equal(folded.moved, 4);
    assert.equal(folded.buckets, 3);
    assert.equal(folded.latest, 2);
    assert.equal(folded.busy, false);
    assert.equal(await pendingCount(sql), 0);
    assert.deepEqual(await storedBuckets(sql, 'samples_1m'), expectedBuckets(first));
    assert.deepEqual(await storedLatest(sql, 'samples_latest'), expectedLatest(first));
    assert.equal((await store.rollUp()).moved, 0, 'nothing pending: nothing folded again');

    // A redelivered batch with one new reading, older than the latest: only that one is
    // pending, the bucket grows by one, the latest value stays.
    const second = [...first, rec(minute + 20 * SECOND, 39.5)];
    assert.equal((await store.write('cluster-1', second)).inserted, 1);
    assert.equal(await pendingCount(sql), 1);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets(second));
    assert.equal((await store.rollUp()).moved, 1);
    assert.deepEqual(await storedBuckets(sql, 'samples_1m'), expectedBuckets(second));
    assert.deepEqual(await storedLatest(sql, 'samples_latest'), expectedLatest(second));
    assert.deepEqual(await storedLatest(sql), expectedLatest(second));
  });

  it('the rollup job moves a large backlog in chunks, and concurrent runs fold nothing twice', async (t) => {
    const { store, sql } = await open(t, { foldOnWrite: false });
    const t0 = utc(2025, 7, 18, 13);
    const batches = Array.from({ length: 4 }, (_, b) =>
      Array.from({ length: 250 }, (_, i) => rec(t0 + (b * 250 + i) * SECOND, (b * 250 + i) / 4)),
    );
    for (const batch of batches) await store.write('cluster-1', batch);
    const all = batches.flat();
    assert.equal(await pendingCount(sql), 1000);
    const chunked = await store.rollUp(300);
    assert.equal(chunked.moved, 1000);
    assert.equal(await pendingCount(sql), 0);

    // Writes and rollups at once: every reading counted once.
    const more = Array.from({ length: 6 }, (_, b) =>
      Array.from({ length: 100 }, (_, i) => rec(t0 + (1000 + b * 100 + i) * SECOND, i)),
    );
    const results = await Promise.all([
      ...more.map((batch) => store.write('cluster-1', batch)),
      store.rollUp(),
      store.rollUp(),
      store.rollUp(),
    ]);
    assert.ok(results.length > 0);
    await store.rollUp();
    assert.equal(await pendingCount(sql), 0);
    const everything = [...all, ...more.flat()];
    assert.deepEqual(await storedBuckets(sql, 'samples_1m'), expectedBuckets(everything));
    assert.deepEqual(await storedLatest(sql, 'samples_latest'), expectedLatest(everything));
  });

  it('with foldOnWrite the write statement folds its readings in itself: nothing is left pending', async (t) => {
    const { store, sql } = await open(t, { foldOnWrite: true });
    const minute = utc(2025, 7, 18, 13, 42);
    const first = [rec(minute + 5_500, 41.5), rec(minute + MINUTE + 1, 60.125)];
    await store.write('cluster-1', first);
    const second = [...first, rec(minute + 20 * SECOND, 39.5, { metric: POWER })];
    assert.equal((await store.write('cluster-1', second)).inserted, 1);
    assert.equal(await pendingCount(sql), 0);
    assert.deepEqual(await storedBuckets(sql, 'samples_1m'), expectedBuckets(second));
    assert.deepEqual(await storedLatest(sql, 'samples_latest'), expectedLatest(second));
    assert.equal((await store.rollUp()).moved, 0);
  });

  it('readings land in the hot partitions of their 2-hour windows, raw and 1-minute rollup alike', async (t) => {
    const { store, sql } = await open(t);
    const lastOfJuly = utc(2025, 7, 31, 23, 59, 59, 999);
    const records = [
      rec(lastOfJuly - DAY, 1.5),
      rec(lastOfJuly, 2.5),
      rec(lastOfJuly + 1, 3.5), // 2025-08-01T00:00:00.000Z
      rec(lastOfJuly + 1, 4.5, { metric: POWER }),
    ];
    await store.write('cluster-1', records);
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250730_22',
      'samples_20250731_22',
      'samples_20250801_00',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_20250730_22',
      'samples_1m_20250731_22',
      'samples_1m_20250801_00',
    ]);
    assert.equal(await rowsIn(sql, 'samples_20250730_22'), 1);
    assert.equal(await rowsIn(sql, 'samples_20250731_22'), 1);
    assert.equal(await rowsIn(sql, 'samples_20250801_00'), 2);
    // The rollup rows land in their window's partition (once folded in, whichever way).
    await store.rollUp();
    assert.equal(await rowsIn(sql, 'samples_1m_20250731_22'), 1);
    assert.equal(await rowsIn(sql, 'samples_1m_20250801_00'), 2);
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
  });

  it('workload history: first_seen and last_seen span the readings; a GPU moving to another pod gets a second row', async (t) => {
    const { store, sql } = await open(t);
    const job = (pod: string) => ({ namespace: 'ml', pod, container: 'trainer' });
    await store.write('cluster-1', [
      rec(T0 + 30 * SECOND, 60, job('train-1')),
      rec(T0, 61, job('train-1')),
      rec(T0 + 90 * SECOND, 62, job('train-1')),
      rec(T0, 30, { gpu: 1 }), // no pod: no workload
    ]);
    const w = (pod: string, first: number, last: number): Workload => ({
      host: 'node-a',
      gpu: 0,
      ...job(pod),
      first,
      last,
    });
    assert.deepEqual(await storedWorkloads(sql), [w('train-1', T0, T0 + 90 * SECOND)]);

    // The GPU moves on to another pod.
    await store.write('cluster-1', [
      rec(T0 + 5 * MINUTE, 63, job('train-2')),
      rec(T0 + 6 * MINUTE, 64, job('train-2')),
    ]);
    assert.deepEqual(await storedWorkloads(sql), [
      w('train-1', T0, T0 + 90 * SECOND),
      w('train-2', T0 + 5 * MINUTE, T0 + 6 * MINUTE),
    ]);

    // Later readings extend last_seen; late (older) readings extend first_seen.
    await store.write('cluster-1', [rec(T0 + 20 * MINUTE, 65, job('train-2'))]);
    await store.write('cluster-1', [rec(T0 - 10 * MINUTE, 66, job('train-1'))]);
    assert.deepEqual(await storedWorkloads(sql), [
      w('train-1', T0 - 10 * MINUTE, T0 + 90 * SECOND),
      w('train-2', T0 + 5 * MINUTE, T0 + 20 * MINUTE),
    ]);
    // So do the GPU's, its host's and its cluster's.
    const spans = await sql.query<{ kind: string; first: string; last: string }>(
      `SELECT 'gpu' AS kind, nexus_ms(first_seen)::text AS first, nexus_ms(last_seen)::text AS last
       FROM gpus WHERE gpu_index = 0
       UNION ALL SELECT 'host', nexus_ms(first_seen)::text, nexus_ms(last_seen)::text FROM hosts
       UNION ALL SELECT 'cluster', nexus_ms(first_seen)::text, nexus_ms(last_seen)::text FROM clusters`,
    );
    const span = { first: String(T0 - 10 * MINUTE), last: String(T0 + 20 * MINUTE) };
    assert.deepEqual(
      spans.rows.sort((x, y) => (x.kind < y.kind ? -1 : 1)),
      [
        { kind: 'cluster', ...span },
        { kind: 'gpu', ...span },
        { kind: 'host', ...span },
      ],
    );
  });

  it('MIG instances of one GPU (GPU_I_ID) are series of their own: readings at one instant are all stored, under their GPU', async (t) => {
    const { store, sql } = await open(t);
    const ENGINE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
    const mig = (id: string, profile: string, pod?: string) => ({
      gpu: 2,
      metric: ENGINE,
      uuid: 'GPU-a100',
      labels: { GPU_I_ID: id, GPU_I_PROFILE: profile },
      ...(pod === undefined ? {} : { namespace: 'ml', pod, container: 'c' }),
    });
    const records = [
      rec(T0, 0.25, mig('1', '3g.40gb', 'infer-0')),
      rec(T0, 0.5, mig('2', '3g.40gb', 'infer-1')),
      rec(T0, 0.75, mig('7', '1g.10gb')),
      rec(T0 + 15 * SECOND, 0.3, mig('1', '3g.40gb', 'infer-0')),
      rec(T0 + 15 * SECOND, 0.6, mig('2', '3g.40gb', 'infer-1')),
      rec(T0, 40, { gpu: 2, uuid: 'GPU-a100' }), // the whole GPU's own series
    ];
    const first = await store.write('cluster-1', records);
    assert.deepEqual([first.inserted, first.duplicates], [6, 0]);
    // Again: nothing new.
    const again = await store.write('cluster-1', records);
    assert.deepEqual([again.inserted, again.duplicates], [0, 6]);
    const rows = await sql.query<{
      gpu_index: number;
      gpu_instance_id: number;
      mig_profile: string | null;
      n: number;
      values: string;
    }>(
      `SELECT g.gpu_index, g.gpu_instance_id, g.mig_profile, count(s.value)::int AS n,
              coalesce(string_agg(s.value::text, ',' ORDER BY s.time), '') AS values
       FROM gpus g LEFT JOIN samples s ON s.gpu_id = g.id
       GROUP BY g.id ORDER BY g.gpu_index, g.gpu_instance_id`,
    );
    assert.deepEqual(rows.rows, [
      { gpu_index: 2, gpu_instance_id: -1, mig_profile: null, n: 1, values: '40' },
      { gpu_index: 2, gpu_instance_id: 1, mig_profile: '3g.40gb', n: 2, values: '0.25,0.3' },
      { gpu_index: 2, gpu_instance_id: 2, mig_profile: '3g.40gb', n: 2, values: '0.5,0.6' },
      { gpu_index: 2, gpu_instance_id: 7, mig_profile: '1g.10gb', n: 1, values: '0.75' },
    ]);
    // An instance's workloads are its own.
    const w = await sql.query<{ gpu_instance_id: number; pod: string }>(
      `SELECT g.gpu_instance_id, w.pod FROM gpu_workloads w JOIN gpus g ON g.id = w.gpu_id
       ORDER BY g.gpu_instance_id`,
    );
    assert.deepEqual(w.rows, [
      { gpu_instance_id: 1, pod: 'infer-0' },
      { gpu_instance_id: 2, pod: 'infer-1' },
    ]);
  });

  it('a GPU reported only by its MIG instances gets its whole-GPU row (the physical GPU) beside them', async (t) => {
    const { store, sql } = await open(t);
    await store.write('cluster-1', [
      rec(T0, 0.4, { gpu: 1, labels: { GPU_I_ID: '3', GPU_I_PROFILE: '2g.20gb' } }),
      rec(T0 + MINUTE, 0.5, { gpu: 1, labels: { GPU_I_ID: '3', GPU_I_PROFILE: '2g.20gb' } }),
    ]);
    const rows = await sql.query<{ gpu_instance_id: number; first: string; last: string }>(
      `SELECT gpu_instance_id, nexus_ms(first_seen)::text AS first, nexus_ms(last_seen)::text AS last
       FROM gpus ORDER BY gpu_instance_id`,
    );
    const span = { first: String(T0), last: String(T0 + MINUTE) };
    assert.deepEqual(rows.rows, [
      { gpu_instance_id: -1, ...span },
      { gpu_instance_id: 3, ...span },
    ]);
    assert.equal((await storedSamples(sql)).length, 2);
  });

  it('a GPU whose uuid changes takes the newer uuid; an older reading does not revert it', async (t) => {
    const { store, sql } = await open(t);
    const old = { uuid: 'GPU-aaaa', model: 'NVIDIA A100-SXM4-80GB' };
    const replaced = { uuid: 'GPU-bbbb', model: 'NVIDIA H100 80GB HBM3' };
    await store.write('cluster-1', [rec(T0, 40, old)]);
    await store.write('cluster-1', [rec(T0 + 5 * MINUTE, 41, replaced)]);
    const expected = (g: typeof old) => [
      {
        host: 'node-a',
        index: 0,
        ...g,
        device: 'nvidia0',
        labels: {
          gpu: '0',
          UUID: g.uuid,
          device: 'nvidia0',
          modelName: g.model,
          Hostname: 'node-a',
        },
      },
    ];
    assert.deepEqual(await storedGpus(sql), expected(replaced));

    await store.write('cluster-1', [rec(T0 + 2 * MINUTE, 42, old)]);
    assert.deepEqual(await storedGpus(sql), expected(replaced));
    assert.equal((await counts(sql)).samples, 3);
  });

  it('an older reading inside the last-seen lag does not revert a uuid either', async (t) => {
    const { store, sql } = await open(t);
    const a = { uuid: 'GPU-aaaa' };
    const b = { uuid: 'GPU-bbbb' };
    await store.write('cluster-1', [rec(T0, 40, a)]);
    await store.write('cluster-1', [rec(T0 + 30 * SECOND, 41, a)]);
    await store.write('cluster-1', [rec(T0 + 20 * SECOND, 42, b)]);
    assert.deepEqual(
      (await storedGpus(sql)).map((g) => g.uuid),
      ['GPU-aaaa'],
    );
  });

  it('re-resolving known dimensions (after a refused batch empties the cache) uses up no ids', async (t) => {
    const { store, sql } = await open(t);
    const metrics = Array.from({ length: 20 }, (_, i) => `DCGM_FI_TEST_${i}`);
    const batch = grid({ hosts: ['node-a', 'node-b'], gpus: 4, metrics, times: [T0] });
    await store.write('cluster-1', batch);
    for (let i = 1; i <= 10; i++) {
      await assertRejected(
        store.write('cluster-1', [rec(T0 + i * MINUTE, 1, { hostname: 'bad\u0000host' })]),
        /0x00/,
      );
      await store.write(
        'cluster-1',
        grid({ hosts: ['node-a', 'node-b'], gpus: 4, metrics, times: [T0 + i * MINUTE] }),
      );
    }
    await store.write('cluster-1', [
      rec(T0 + HOUR, 1, { metric: 'DCGM_FI_TEST_NEW', hostname: 'node-c', gpu: 0 }),
    ]);
    const ids = await sql.query<{ metric: number; gpu: number; host: number }>(
      `SELECT (SELECT max(id) FROM metrics)::int AS metric, (SELECT max(id) FROM gpus)::int AS gpu, (SELECT max(id) FROM hosts)::int AS host`,
    );
    assert.deepEqual(ids.rows[0], { metric: 21, gpu: 9, host: 3 });
  });

  it("a hostname the database cannot hold (NUL) is STORE_REJECTED with the database's reason; nothing of the batch is stored", async (t) => {
    const { store, sql } = await open(t);
    const good = grid({ hosts: ['node-a'], gpus: 2, metrics: [TEMP], times: [T0] });
    await store.write('cluster-1', good);
    const before = await counts(sql);

    const fresh = grid({
      hosts: ['node-c'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: [T0 + MINUTE],
    });
    await assertRejected(
      store.write('cluster-1', [...fresh, rec(T0 + MINUTE, 1, { hostname: 'bad\u0000host' })]),
      /0x00/,
    );
    assert.deepEqual(await counts(sql), before);
    assert.deepEqual(await storedSamples(sql), expectedSamples(good));

    // The store goes on working: the same batch without the refused record is stored.
    assert.deepEqual(await store.write('cluster-1', fresh), { inserted: 4, duplicates: 0 });
    assert.deepEqual(await storedSamples(sql), expectedSamples([...good, ...fresh]));
  });

  it('a GPU index out of smallint range is STORE_REJECTED; nothing of the batch is stored', async (t) => {
    const { store, sql } = await open(t);
    const fresh = grid({ hosts: ['node-a'], gpus: 2, metrics: [TEMP], times: [T0] });
    await assertRejected(
      store.write('cluster-1', [...fresh, rec(T0, 1, { gpu: 40_000 })]),
      /out of range for type smallint/,
    );
    assert.deepEqual(await counts(sql), {
      clusters: 0,
      hosts: 0,
      gpus: 0,
      metrics: 0,
      workloads: 0,
      samples: 0,
      latest: 0,
      buckets: 0,
    });
    assert.deepEqual(await store.write('cluster-1', fresh), { inserted: 2, duplicates: 0 });
  });

  it('4 concurrent writes of overlapping batches store exactly the union', async (t) => {
    const { store, sql } = await open(t);
    // 3 hosts x 4 GPUs x 3 metrics x 20 instants, across a UTC day (and partition) boundary.
    const all = grid({
      hosts: ['node-a', 'node-b', 'node-c'],
      gpus: 4,
      metrics: [TEMP, POWER, CUSTOM],
      times: times(utc(2025, 7, 18, 23, 59, 0, 1), 20, 7 * SECOND),
    });
    // Each record is in 3 of the 4 batches; two batches run in reverse order.
    const batches = [0, 1, 2, 3].map((k) => {
      const b = all.filter((_, i) => i % 4 !== k);
      return k % 2 === 0 ? b : b.reverse();
    });
    const results = await Promise.all(batches.map((b) => store.write('cluster-1', b)));
    const inserted = results.reduce((n, r) => n + r.inserted, 0);
    const duplicates = results.reduce((n, r) => n + r.duplicates, 0);
    assert.equal(inserted, all.length);
    assert.equal(duplicates, 3 * all.length - all.length);
    assert.deepEqual(await storedSamples(sql), expectedSamples(all));
    assert.deepEqual(await storedBuckets(sql), expectedBuckets(all));
    const c = await counts(sql);
    assert.deepEqual([c.clusters, c.hosts, c.gpus, c.metrics, c.latest], [1, 3, 12, 3, 36]);
    assert.deepEqual(await storedLatest(sql), expectedLatest(all));
  });
}

// ---------------------------------------------------------------------------------------------
// Partitions ahead, and retention
// ---------------------------------------------------------------------------------------------

function maintenanceTests(open: Open): void {
  const now = utc(2025, 7, 18, 12);

  it('maintain(now) creates the hot partitions of the windows from now to now + partitionAheadMs', async (t) => {
    const { store, sql } = await open(t, { partitionAheadMs: 5 * HOUR });
    // 12:00 .. 17:00: the windows of 12, 14 and 16 h, raw and rollup.
    assert.deepEqual(await store.maintain(now), { created: 6, dropped: [] });
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250718_12',
      'samples_20250718_14',
      'samples_20250718_16',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_20250718_12',
      'samples_1m_20250718_14',
      'samples_1m_20250718_16',
    ]);
    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });
  });

  it('an older partition covering a window (schema 3: daily raw, monthly rollup) is used, not doubled', async (t) => {
    const { store, sql } = await open(t);
    await sql.query(
      `CREATE TABLE samples_20250718 PARTITION OF samples FOR VALUES FROM ('2025-07-18 00:00+00') TO ('2025-07-19 00:00+00')`,
    );
    await sql.query(
      `CREATE TABLE samples_1m_202507 PARTITION OF samples_1m FOR VALUES FROM ('2025-07-01 00:00+00') TO ('2025-08-01 00:00+00')`,
    );
    const records = [rec(utc(2025, 7, 18, 8), 1.5), rec(utc(2025, 7, 19, 8), 2.5)];
    await store.write('cluster-1', records);
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250718',
      'samples_20250719_08',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), ['samples_1m_202507']);
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
  });

  it('concurrent maintain() calls all succeed, create each partition once and drop each once', async (t) => {
    const { store, sql } = await open(t, {
      partitionAheadMs: 30 * HOUR,
      retentionDays: 5,
      rollupRetentionDays: 40,
    });
    // One reading a day from 2025-05-20 to 2025-06-08: all past raw retention, and past the
    // rollup's from May 20 to June 7 (ending by 2025-06-08T12:00Z).
    const old = times(utc(2025, 5, 20, 6), 20, DAY).map((ms) => rec(ms, 1.5));
    await store.write('cluster-1', old);

    const results = await Promise.all([0, 1, 2, 3].map(() => store.maintain(now)));
    // 2025-07-18T12:00 .. 2025-07-19T18:00: 16 windows, raw and rollup, each created once.
    assert.equal(
      results.reduce((n, r) => n + r.created, 0),
      32,
    );
    const rollupGone = old.filter((r) => r.timestamp + 2 * HOUR <= now - 40 * DAY);
    assert.deepEqual(
      results.flatMap((r) => r.dropped).sort(),
      [
        ...old.map((r) => windowPartition(r.timestamp)),
        ...rollupGone.map((r) => rollupPartition(r.timestamp)),
      ].sort(),
    );
    assert.deepEqual(
      await partitionsOf(sql, 'samples'),
      times(now, 16, 2 * HOUR).map(windowPartition),
    );
    assert.equal(
      (await partitionsOf(sql, 'samples_1m')).length,
      16 + old.length - rollupGone.length,
    );
  });

  it('retentionDays drops older sample partitions and their rows, and keeps newer ones', async (t) => {
    const { store, sql } = await open(t, { retentionDays: 5 });
    const old = [rec(utc(2025, 7, 8, 10), 1.5), rec(utc(2025, 7, 12, 23, 59, 59, 999), 2.5)];
    const kept = [rec(utc(2025, 7, 13, 12), 3.5), rec(utc(2025, 7, 18, 12, 30), 4.5)];
    await store.write('cluster-1', [...old, ...kept]);

    // now - 5 days = 2025-07-13T12:00Z: windows ending by then go, with their rows.
    const res = await store.maintain(now);
    assert.equal(res.created, 0);
    assert.deepEqual([...res.dropped].sort(), [
      windowPartition(utc(2025, 7, 8, 10)),
      'samples_20250712_22',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250713_12',
      'samples_20250718_12',
    ]);
    assert.deepEqual(await storedSamples(sql), expectedSamples(kept));
    // The rollup has its own retention (0: kept).
    assert.equal((await partitionsOf(sql, 'samples_1m')).length, 4);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([...old, ...kept]));

    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });
  });

  it('rollupRetentionDays drops older rollup partitions, and keeps newer ones and the raw readings', async (t) => {
    const { store, sql } = await open(t, { rollupRetentionDays: 40 });
    const may = rec(utc(2025, 5, 10, 8), 1.5);
    const june = rec(utc(2025, 6, 20, 8), 2.5);
    const july = rec(utc(2025, 7, 18, 12, 30), 3.5);
    await store.write('cluster-1', [may, june, july]);

    // now - 40 days = 2025-06-08T12:00Z: the May partition (ending June 1st) goes.
    assert.deepEqual(await store.maintain(now), {
      created: 0,
      dropped: [rollupPartition(may.timestamp)],
    });
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      rollupPartition(june.timestamp),
      rollupPartition(july.timestamp),
    ]);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([june, july]));
    assert.deepEqual(await storedSamples(sql), expectedSamples([may, june, july]));
  });

  it('with retention 0 nothing is dropped', async (t) => {
    const { store, sql } = await open(t);
    const records = [rec(utc(2024, 1, 1), 1.5), rec(utc(2025, 7, 18, 12, 30), 2.5)];
    await store.write('cluster-1', records);
    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20240101_00',
      'samples_20250718_12',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_20240101_00',
      'samples_1m_20250718_12',
    ]);
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
    assert.deepEqual(await storedBuckets(sql), expectedBuckets(records));
  });
}

// ---------------------------------------------------------------------------------------------
// Sealing: hot windows into compressed chunks, late readings, redeliveries, crashes
// ---------------------------------------------------------------------------------------------

function sealingTests(open: Open): void {
  const start = utc(2025, 7, 18, 8);
  // Windows 08-10 and 10-12 are closed an hour before 13:30; 12-14 is not.
  const now = utc(2025, 7, 18, 14, 30);
  const fleet = () =>
    grid({
      hosts: ['node-a', 'node-b'],
      gpus: 2,
      metrics: [TEMP, POWER],
      times: times(start + 1_234, 5 * 360, 10 * SECOND),
    });
  const everything = { from: 0, to: utc(2030, 1, 1) };

  /** What the reader answers: raw pages (all of them) and series at several steps. */
  const answers = async (store: TelemetryStore) => {
    const pages: unknown[] = [];
    let after: { gpu: number; metric: number; time: number } | undefined;
    for (;;) {
      const page = await store.reader.telemetry({
        ...everything,
        limit: 997,
        ...(after === undefined ? {} : { after }),
      });
      pages.push(...page.readings);
      if (page.next === undefined) break;
      after = page.next;
    }
    const series = [];
    for (const [stepMs, agg] of [
      [10 * SECOND, 'avg'],
      [45 * SECOND, 'max'],
      [MINUTE, 'avg'],
      [5 * MINUTE, 'last'],
      [2 * HOUR, 'min'],
      [4 * HOUR, 'avg'],
    ] as const) {
      series.push(
        await store.reader.series({
          from: start + 7 * MINUTE + 3_000,
          to: start + 4 * HOUR + 50 * MINUTE,
          stepMs,
          agg,
          maxPoints: 1_000_000,
        }),
      );
    }
    const stats = await store.reader.clusterStats('cluster-1');
    return { pages, series, stats };
  };

  it('compact() seals closed windows into one chunk per series and window, drops their hot partitions, and reads answer the same', async (t) => {
    const { store, sql } = await open(t);
    const records = fleet();
    await store.write('cluster-1', records);
    await store.rollUp();
    const before = await answers(store);

    const res = await store.compact({ now });
    assert.equal(res.busy, false);
    assert.equal(res.windows, 2);
    assert.equal(res.readings, 8 * 2 * 720);
    assert.equal(res.chunks, 8 * 2);
    assert.deepEqual([...res.dropped].sort(), [
      'samples_1m_20250718_08',
      'samples_1m_20250718_10',
      'samples_20250718_08',
      'samples_20250718_10',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples'), ['samples_20250718_12']);
    assert.equal(await rowsIn(sql, 'samples'), 8 * 360);
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));
    const chunks = await storedChunks(sql);
    assert.equal(chunks.length, 16);
    for (const c of chunks) assert.equal(c.count, 720);
    assert.equal(await rowsIn(sql, 'sealed_windows'), 2);

    const after = await answers(store);
    assert.deepEqual(after.pages, before.pages);
    assert.deepEqual(after.series, before.series);
    assert.deepEqual(after.stats, before.stats);

    // Nothing more to do: the next pass seals nothing.
    const again = await store.compact({ now });
    assert.equal(again.windows, 0);
    assert.deepEqual(again.dropped, []);
  });

  it('series at whole-minute steps over a range that starts and ends inside minutes count the range readings only, hot and sealed', async (t) => {
    const { store } = await open(t);
    const records = fleet();
    await store.write('cluster-1', records);
    await store.rollUp();
    // 40 s into a minute to 20 s into another, across a sealed window's edge (10:00) and the
    // open window; and a range inside one minute.
    const ranges = [
      [start + 7 * MINUTE + 40 * SECOND, start + 2 * HOUR + 3 * MINUTE + 20 * SECOND],
      [start + 4 * HOUR + 9 * MINUTE + 40 * SECOND, start + 4 * HOUR + 9 * MINUTE + 55 * SECOND],
    ] as const;
    /** The same steps worked out from the raw readings themselves. */
    const expected = (from: number, to: number, stepMs: number) => {
      const steps = new Map<string, { sum: number; n: number }>();
      for (const r of records) {
        if (r.timestamp < from || r.timestamp >= to) continue;
        const k = `${r.hostname}/${r.gpu}/${r.metric}/${Math.floor(r.timestamp / stepMs) * stepMs}`;
        const e = steps.get(k) ?? { sum: 0, n: 0 };
        e.sum += r.value;
        e.n += 1;
        steps.set(k, e);
      }
      return [...steps].map(([k, e]) => [k, e.n, e.sum / e.n] as const).sort();
    };
    const answered = async (from: number, to: number, stepMs: number) => {
      const res = await store.reader.series({ from, to, stepMs, agg: 'avg', maxPoints: 1e6 });
      return res.series
        .flatMap((s) =>
          s.points.map(
            ([b, v, n]) => [`${s.hostname}/${s.gpu_id}/${s.metric}/${b}`, n, v] as const,
          ),
        )
        .sort();
    };
    const check = async (when: string) => {
      for (const [from, to] of ranges) {
        for (const stepMs of [MINUTE, 5 * MINUTE, HOUR]) {
          const got = await answered(from, to, stepMs);
          const want = expected(from, to, stepMs);
          assert.equal(got.length, want.length, `${when}: ${stepMs} ms steps`);
          got.forEach(([k, n, v], i) => {
            assert.deepEqual([k, n], [want[i]?.[0], want[i]?.[1]], `${when}: ${k}`);
            assert.ok(Math.abs(v - (want[i]?.[2] ?? 0)) < 1e-9, `${when}: ${k} avg`);
          });
        }
      }
    };
    await check('hot');
    await store.compact({ now });
    await check('sealed');
  });

  it('a redelivered batch after sealing stores nothing; a late reading is stored, read, and merged into its chunk by the next pass', async (t) => {
    const { store, sql } = await open(t);
    const records = fleet();
    await store.write('cluster-1', records);
    await store.compact({ now });

    // The whole batch again (a redelivery): nothing new.
    assert.deepEqual(await store.write('cluster-1', records), {
      inserted: 0,
      duplicates: records.length,
    });
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));

    // A redelivered reading, a late one in a sealed window, and a new one in the open window.
    const redelivered = records[5] as TelemetryRecord;
    const late = rec(start + 30 * MINUTE + 5, 99.5, { hostname: 'node-b', gpu: 1, metric: POWER });
    const fresh = rec(start + 5 * HOUR + 7, 12.5);
    assert.deepEqual(await store.write('cluster-1', [redelivered, late, fresh, late]), {
      inserted: 2,
      duplicates: 2,
      fresh: [1, 2],
    });
    const all = [...records, late, fresh];
    assert.deepEqual(await storedReadings(sql), expectedSamples(all));
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250718_08',
      'samples_20250718_12',
    ]);
    const page = await store.reader.telemetry({
      hosts: ['node-b'],
      gpus: [1],
      metrics: [POWER],
      from: start + 30 * MINUTE,
      to: start + 30 * MINUTE + 10 * SECOND,
      limit: 10,
    });
    assert.deepEqual(
      page.readings.map((r) => [r.timestamp, r.value]),
      [
        [start + 30 * MINUTE + 5, 99.5],
        [
          start + 30 * MINUTE + 1_234,
          expectedValueAt(records, 'node-b', 1, POWER, start + 30 * MINUTE + 1_234),
        ],
      ],
    );
    const stats = await store.reader.clusterStats('cluster-1');
    assert.equal(stats?.samples, all.length);

    const merged = await store.compact({ now });
    assert.equal(merged.windows, 1);
    assert.equal(merged.merged, 1);
    assert.equal(merged.readings, 1);
    assert.equal(merged.ties, 0);
    assert.deepEqual([...merged.dropped].sort(), ['samples_1m_20250718_08', 'samples_20250718_08']);
    assert.deepEqual(await storedReadings(sql), expectedSamples(all));
    const chunk = (await storedChunks(sql)).filter(
      (c) => c.host === 'node-b' && c.gpu === 1 && c.metric === POWER && c.window === start,
    );
    assert.equal(chunk[0]?.count, 721);
    const inWindow = records.filter(
      (r) =>
        r.hostname === 'node-b' &&
        r.gpu === 1 &&
        r.metric === POWER &&
        r.timestamp < start + 2 * HOUR,
    );
    assert.equal(
      chunk[0].sum,
      inWindow.reduce((n, r) => n + r.value, 99.5),
    );
    assert.equal(chunk[0].min, Math.min(99.5, ...inWindow.map((r) => r.value)));
    assert.equal((await store.reader.clusterStats('cluster-1'))?.samples, all.length);

    // The late reading again, now that it is in its chunk: a duplicate.
    assert.deepEqual(await store.write('cluster-1', [late]), { inserted: 0, duplicates: 1 });
  });

  it('a sealing pass that fails half-way (the process dies) loses and doubles nothing: each window is sealed wholly or not at all', async (t) => {
    const { store, sql } = await open(t);
    const records = fleet();
    await store.write('cluster-1', records);
    // The chunks' table refuses the second statement that writes into it, once (a sequence: not
    // rolled back with the failed transaction).
    await sql.query('CREATE SEQUENCE nexus_test_fail');
    await sql.query(`CREATE FUNCTION nexus_test_fail() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('nexus_test_fail') = 2 THEN RAISE EXCEPTION 'killed mid-seal'; END IF;
        RETURN NULL;
      END $$`);
    await sql.query(
      `CREATE TRIGGER nexus_test_fail AFTER INSERT ON sample_chunks FOR EACH STATEMENT EXECUTE FUNCTION nexus_test_fail()`,
    );
    // The first window is sealed, the second fails as it writes its chunks.
    await assert.rejects(store.compact({ now }), /killed mid-seal/);
    assert.equal(await rowsIn(sql, 'sample_chunks'), 8);
    assert.equal(await rowsIn(sql, 'sealed_windows'), 1);
    assert.equal(await rowsIn(sql, 'samples'), records.length - 8 * 720);
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));
    assert.equal((await store.reader.clusterStats('cluster-1'))?.samples, records.length);

    const res = await store.compact({ now });
    assert.equal(res.windows, 1);
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));
    assert.equal(await rowsIn(sql, 'sample_chunks'), 16);
  });

  it('raw retention keeps a sealed window as its 1-minute rollup; rollup retention then drops it', async (t) => {
    const { store, sql } = await open(t, { retentionDays: 1, rollupRetentionDays: 3 });
    const records = fleet();
    await store.write('cluster-1', records);
    await store.compact({ now });
    const minute = {
      from: start,
      to: start + 4 * HOUR,
      stepMs: MINUTE,
      agg: 'avg' as const,
      maxPoints: 1e6,
    };
    const before = await store.reader.series(minute);

    // Two days on: the raw readings of the sealed windows are past retention, their rollup is not.
    await store.maintain(now + 2 * DAY);
    const raw = await store.reader.telemetry({ ...everything, limit: 10 });
    assert.deepEqual(raw.readings, []);
    assert.deepEqual(await store.reader.series(minute), before);
    assert.equal(await rowsIn(sql, 'sample_chunks'), 16);

    // Four days on: past both.
    await store.maintain(now + 4 * DAY);
    assert.equal(await rowsIn(sql, 'sample_chunks'), 0);
    assert.deepEqual((await store.reader.series(minute)).series, []);
  });

  it('with quiet, a window is sealed once a pass finds its partition no longer written (a backfill is sealed when done)', async (t) => {
    const { store, sql } = await open(t);
    const records = fleet();
    await store.write('cluster-1', records);
    // The first pass has seen nothing before: it only notes what was written.
    assert.equal((await store.compact({ now, quiet: true })).windows, 0);
    let sealed = 0;
    for (let pass = 0; pass < 30 && sealed === 0; pass++) {
      sealed = (await store.compact({ now, quiet: true })).windows;
      if (sealed === 0) await new Promise((r) => setTimeout(r, 1_000));
    }
    assert.equal(sealed, 2);
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));
  });

  it('concurrent writers and the sealing job: every reading stored exactly once', async (t) => {
    const { store, sql } = await open(t);
    const records = fleet();
    const batches: TelemetryRecord[][] = [];
    for (let i = 0; i < records.length; i += 500) batches.push(records.slice(i, i + 500));
    // Each batch twice (a redelivery), while the job seals whatever has ended by then.
    const writes = Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let i = w; i < batches.length * 2; i += 4) {
          await store.write('cluster-1', batches[i % batches.length] ?? []);
        }
      }),
    );
    let passes = 0;
    let done = false;
    void writes.finally(() => {
      done = true;
    });
    while (!done) {
      await store.compact({ now, delayMs: 0 });
      passes++;
    }
    await writes;
    await store.compact({ now, delayMs: 0 });
    assert.ok(passes > 0);
    assert.deepEqual(await storedReadings(sql), expectedSamples(records));
    assert.equal((await store.reader.clusterStats('cluster-1'))?.samples, records.length);
  });
}

/** The value `grid` gave a host, GPU and metric at an instant. */
function expectedValueAt(
  records: readonly TelemetryRecord[],
  host: string,
  gpu: number,
  metric: string,
  t: number,
): number {
  const r = records.find(
    (x) => x.hostname === host && x.gpu === gpu && x.metric === metric && x.timestamp === t,
  );
  assert.ok(r !== undefined);
  return r.value;
}
