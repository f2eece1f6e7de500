import assert from 'node:assert/strict';
import { after, describe, it, type TestContext } from 'node:test';
import { NexusError } from '../../src/core/errors.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { SqlClient, TelemetryStore, WriteMethod } from '../../src/store/types.js';

/** Store settings a test may override; the harness fills in the rest. */
export interface StoreOptions {
  retentionDays?: number;
  rollupRetentionDays?: number;
  partitionAheadDays?: number;
  writeMethod?: WriteMethod;
}

/** What a backend provides to run the store conformance suite. */
export interface StoreHarness {
  readonly name: string;
  /**
   * A store on a fresh, empty (not migrated) database, and a raw SQL client on the same database
   * for the tests to look at the tables.
   */
  create(options: StoreOptions): Promise<{ store: TelemetryStore; sql: SqlClient }>;
  /** Closes everything `create` made. */
  teardown(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 86_400_000;
const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number =>
  Date.UTC(y, mo - 1, d, h, mi, s, ms);

/** 2025-07-18T13:42:10.123Z: odd milliseconds on purpose. */
const T0 = utc(2025, 7, 18, 13, 42, 10, 123);
const TEMP = 'DCGM_FI_DEV_GPU_TEMP';
const POWER = 'DCGM_FI_DEV_POWER_USAGE';
const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';
const CUSTOM = 'ACME_CUSTOM_FIELD';

type RecordFields = Partial<Omit<TelemetryRecord, 'timestamp' | 'value'>>;

/** One reading, with the attributes dcgm-exporter gives it (uuid, model, device, labels). */
function rec(timestamp: number, value: number, over: RecordFields = {}): TelemetryRecord {
  const hostname = over.hostname ?? 'node-a';
  const gpu = over.gpu ?? 0;
  const metric = over.metric ?? TEMP;
  const uuid = over.uuid ?? `GPU-${hostname}-${gpu}`;
  const model = over.model ?? 'NVIDIA H100 80GB HBM3';
  const device = over.device ?? `nvidia${gpu}`;
  return {
    timestamp,
    value,
    ...over,
    hostname,
    gpu,
    metric,
    uuid,
    model,
    device,
    labels: {
      __name__: metric,
      gpu: String(gpu),
      UUID: uuid,
      device,
      modelName: model,
      Hostname: hostname,
      ...over.labels,
    },
  };
}

/**
 * Every combination of host, GPU, metric and instant; values are multiples of 1/8, so sums are
 * exact in any order.
 */
function grid(o: {
  hosts: readonly string[];
  gpus: number;
  metrics: readonly string[];
  times: readonly number[];
}): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  o.hosts.forEach((hostname, h) => {
    for (let gpu = 0; gpu < o.gpus; gpu++) {
      o.metrics.forEach((metric, m) => {
        o.times.forEach((t, i) => {
          out.push(rec(t, h * 100 + gpu * 10 + m + i / 8 + 0.375, { hostname, gpu, metric }));
        });
      });
    }
  });
  return out;
}

const times = (start: number, count: number, stepMs: number): number[] =>
  Array.from({ length: count }, (_, i) => start + i * stepMs);

// ---------------------------------------------------------------------------------------------
// Reading the tables back
// ---------------------------------------------------------------------------------------------

interface Sample {
  readonly host: string;
  readonly gpu: number;
  readonly metric: string;
  readonly ms: number;
  readonly value: number;
}

const compareSamples = (a: Sample, b: Sample): number =>
  a.host < b.host
    ? -1
    : a.host > b.host
      ? 1
      : a.gpu - b.gpu ||
        (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) ||
        a.ms - b.ms ||
        a.value - b.value;

/** The readings `records` should leave in `samples`: one per GPU, metric and instant. */
function expectedSamples(records: readonly TelemetryRecord[]): Sample[] {
  const seen = new Map<string, Sample>();
  for (const r of records) {
    const k = `${r.hostname}\u0000${r.gpu}\u0000${r.metric}\u0000${r.timestamp}`;
    if (!seen.has(k))
      seen.set(k, {
        host: r.hostname,
        gpu: r.gpu,
        metric: r.metric,
        ms: r.timestamp,
        value: r.value,
      });
  }
  return [...seen.values()].sort(compareSamples);
}

/** Every stored reading with its host, GPU index and metric name; time as epoch ms. */
async function storedSamples(sql: SqlClient, table = 'samples'): Promise<Sample[]> {
  const res = await sql.query<{
    host: string;
    gpu: number;
    metric: string;
    ms: string;
    value: number;
  }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric,
            nexus_ms(s.time)::text AS ms, s.value
     FROM ${table} s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = s.metric_id`,
  );
  return res.rows
    .map((r) => ({ host: r.host, gpu: r.gpu, metric: r.metric, ms: Number(r.ms), value: r.value }))
    .sort(compareSamples);
}

interface Counts {
  readonly clusters: number;
  readonly hosts: number;
  readonly gpus: number;
  readonly metrics: number;
  readonly workloads: number;
  readonly samples: number;
  readonly latest: number;
  readonly buckets: number;
}

async function counts(sql: SqlClient): Promise<Counts> {
  const res = await sql.query<Counts>(
    `SELECT (SELECT count(*) FROM clusters)::int AS clusters, (SELECT count(*) FROM hosts)::int AS hosts,
            (SELECT count(*) FROM gpus)::int AS gpus, (SELECT count(*) FROM metrics)::int AS metrics,
            (SELECT count(*) FROM gpu_workloads)::int AS workloads,
            (SELECT count(*) FROM samples)::int AS samples,
            (SELECT count(*) FROM samples_latest)::int AS latest,
            (SELECT count(*) FROM samples_1m)::int AS buckets`,
  );
  const row = res.rows[0];
  assert.ok(row);
  return row;
}

interface Bucket {
  readonly host: string;
  readonly gpu: number;
  readonly metric: string;
  readonly bucket: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
  readonly count: number;
}

const bucketKey = (b: Omit<Bucket, 'min' | 'max' | 'sum' | 'count'>): string =>
  `${b.host}\u0000${b.gpu}\u0000${b.metric}\u0000${b.bucket}`;

/** The 1-minute rollup rows `records` should produce (each reading counted once). */
function expectedBuckets(records: readonly TelemetryRecord[]): Bucket[] {
  const out = new Map<string, Bucket>();
  for (const s of expectedSamples(records)) {
    const b = {
      host: s.host,
      gpu: s.gpu,
      metric: s.metric,
      bucket: Math.floor(s.ms / MINUTE) * MINUTE,
    };
    const k = bucketKey(b);
    const prev = out.get(k);
    out.set(
      k,
      prev === undefined
        ? { ...b, min: s.value, max: s.value, sum: s.value, count: 1 }
        : {
            ...b,
            min: Math.min(prev.min, s.value),
            max: Math.max(prev.max, s.value),
            sum: prev.sum + s.value,
            count: prev.count + 1,
          },
    );
  }
  return [...out.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, v]) => v);
}

async function storedBuckets(sql: SqlClient): Promise<Bucket[]> {
  const res = await sql.query<Omit<Bucket, 'bucket'> & { bucket: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, nexus_ms(r.bucket)::text AS bucket,
            r.min, r.max, r.sum, r.count
     FROM samples_1m r JOIN gpus g ON g.id = r.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = r.metric_id`,
  );
  return res.rows
    .map((r) => ({ ...r, bucket: Number(r.bucket) }))
    .sort((a, b) => (bucketKey(a) < bucketKey(b) ? -1 : 1));
}

interface Latest {
  readonly host: string;
  readonly gpu: number;
  readonly metric: string;
  readonly ms: number;
  readonly value: number;
}

/** The newest reading of each GPU and metric. */
function expectedLatest(records: readonly TelemetryRecord[]): Latest[] {
  const out = new Map<string, Latest>();
  for (const s of expectedSamples(records)) {
    const k = `${s.host}\u0000${s.gpu}\u0000${s.metric}`;
    const prev = out.get(k);
    if (prev === undefined || s.ms > prev.ms) out.set(k, s);
  }
  return [...out.values()].sort(compareSamples);
}

async function storedLatest(sql: SqlClient): Promise<Latest[]> {
  const res = await sql.query<Omit<Latest, 'ms'> & { ms: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, nexus_ms(l.time)::text AS ms, l.value
     FROM samples_latest l JOIN gpus g ON g.id = l.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = l.metric_id`,
  );
  return res.rows.map((r) => ({ ...r, ms: Number(r.ms) })).sort(compareSamples);
}

interface Gpu {
  readonly host: string;
  readonly index: number;
  readonly uuid: string | null;
  readonly model: string | null;
  readonly device: string | null;
  readonly labels: Record<string, string>;
}

async function storedGpus(sql: SqlClient): Promise<Gpu[]> {
  const res = await sql.query<Omit<Gpu, 'labels'> & { labels: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS index, g.uuid, g.model, g.device, g.labels::text AS labels
     FROM gpus g JOIN hosts h ON h.id = g.host_id`,
  );
  return res.rows
    .map((r) => ({ ...r, labels: JSON.parse(r.labels) as Record<string, string> }))
    .sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.index - b.index));
}

interface Workload {
  readonly host: string;
  readonly gpu: number;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly first: number;
  readonly last: number;
}

async function storedWorkloads(sql: SqlClient): Promise<Workload[]> {
  const res = await sql.query<Omit<Workload, 'first' | 'last'> & { first: string; last: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, w.namespace, w.pod, w.container,
            nexus_ms(w.first_seen)::text AS first, nexus_ms(w.last_seen)::text AS last
     FROM gpu_workloads w JOIN gpus g ON g.id = w.gpu_id JOIN hosts h ON h.id = g.host_id`,
  );
  return res.rows
    .map((r) => ({ ...r, first: Number(r.first), last: Number(r.last) }))
    .sort((a, b) => a.gpu - b.gpu || a.first - b.first);
}

/** Names of the partitions of `parent`, sorted. */
async function partitionsOf(sql: SqlClient, parent: 'samples' | 'samples_1m'): Promise<string[]> {
  const res = await sql.query<{ name: string }>(
    `SELECT c.relname::text AS name FROM pg_inherits i
     JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.relname = $1`,
    [parent],
  );
  return res.rows.map((r) => r.name).sort();
}

async function tableExists(sql: SqlClient, name: string): Promise<boolean> {
  const res = await sql.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name]);
  return res.rows[0]?.t !== null && res.rows[0]?.t !== undefined;
}

async function rowsIn(sql: SqlClient, table: string): Promise<number> {
  const res = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return res.rows[0]?.n ?? -1;
}

const ymd = (ms: number): string => new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
/** The daily raw partition holding `ms`. */
const dayPartition = (ms: number): string => `samples_${ymd(ms)}`;
/** The monthly rollup partition holding `ms`. */
const monthPartition = (ms: number): string => `samples_1m_${ymd(ms).slice(0, 6)}`;

/** Asserts `p` rejects with STORE_REJECTED carrying the database's own message. */
async function assertRejected(p: Promise<unknown>, reason: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof NexusError, `not a NexusError: ${String(err)}`);
    assert.equal(err.code, 'STORE_REJECTED');
    assert.equal(err.retryable, false);
    assert.match(err.message, reason);
    assert.ok(err.cause instanceof Error, 'the database error is kept as the cause');
    assert.equal(err.message, err.cause.message, "the message is the database's reason");
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

const DEFAULTS: Required<StoreOptions> = {
  retentionDays: 0,
  rollupRetentionDays: 0,
  partitionAheadDays: 1,
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
      const opened = await open(t, over);
      await opened.store.migrate();
      return opened;
    };

    describe('migrations', () => {
      it('migrate() applies schema version 1 once; a second migrate() applies nothing', async (t) => {
        const { store, sql } = await open(t);
        assert.deepEqual(await store.migrate(), { applied: ['001_schema'], current: 1 });
        assert.deepEqual(await store.migrate(), { applied: [], current: 1 });
        const rows = await sql.query<{ version: number; name: string }>(
          'SELECT version, name FROM nexus_schema_migrations',
        );
        assert.deepEqual(rows.rows, [{ version: 1, name: '001_schema' }]);
      });

      it('concurrent migrate() calls apply version 1 exactly once', async (t) => {
        const { store, sql } = await open(t);
        const results = await Promise.all([store.migrate(), store.migrate(), store.migrate()]);
        assert.deepEqual(
          results.flatMap((r) => r.applied),
          ['001_schema'],
        );
        assert.ok(results.every((r) => r.current === 1));
        assert.equal(await rowsIn(sql, 'nexus_schema_migrations'), 1);
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

    for (const writeMethod of ['unnest', 'copy'] as const) {
      describe(`writes (${writeMethod})`, () => {
        writeTests((t, over = {}) => migrated(t, { ...over, writeMethod }));
      });
    }

    describe('partition maintenance', () => {
      maintenanceTests(migrated);
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
      rec(T0 + 10, 123_456_789.987_654_32, { metric: CUSTOM }),
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
      samples: 36,
      latest: 9,
      buckets: 9,
    });

    // The same hostnames in another cluster are other hosts and GPUs.
    const other = grid({ hosts: ['node-a'], gpus: 1, metrics: [TEMP], times: [T0] });
    assert.deepEqual(await store.write('cluster-2', other), { inserted: 1, duplicates: 0 });
    const c = await counts(sql);
    assert.deepEqual([c.clusters, c.hosts, c.gpus, c.metrics, c.samples], [2, 3, 5, 3, 37]);
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

  it('a batch holding the same reading twice stores it once', async (t) => {
    const { store, sql } = await open(t);
    const a = rec(T0, 41.5);
    const b = rec(T0 + 1, 42.5);
    assert.deepEqual(await store.write('cluster-1', [a, b, a, a]), {
      inserted: 2,
      duplicates: 2,
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
    assert.deepEqual(await store.write('cluster-1', second), { inserted: 1, duplicates: 1 });
    assert.deepEqual(await storedBuckets(sql), [
      bucket(minute, 39.5, 43.25, 165, 4),
      bucket(minute + MINUTE, 60.125, 60.125, 60.125, 1),
    ]);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([...first, ...second]));
  });

  it('readings on different UTC days land in different daily partitions; rollup partitions are monthly', async (t) => {
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
      'samples_20250730',
      'samples_20250731',
      'samples_20250801',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_202507',
      'samples_1m_202508',
    ]);
    assert.equal(await rowsIn(sql, 'samples_20250730'), 1);
    assert.equal(await rowsIn(sql, 'samples_20250731'), 1);
    assert.equal(await rowsIn(sql, 'samples_20250801'), 2);
    assert.equal(await rowsIn(sql, 'samples_1m_202507'), 2);
    assert.equal(await rowsIn(sql, 'samples_1m_202508'), 2);
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

  it('maintain(now) creates the partitions for today .. today + partitionAheadDays', async (t) => {
    const { store, sql } = await open(t, { partitionAheadDays: 3 });
    assert.deepEqual(await store.maintain(now), { created: 5, dropped: [] });
    assert.deepEqual(await partitionsOf(sql, 'samples'), [
      'samples_20250718',
      'samples_20250719',
      'samples_20250720',
      'samples_20250721',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), ['samples_1m_202507']);
    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });

    // Across a month end: the next month's rollup partition too.
    const endOfMonth = utc(2025, 7, 30, 18);
    assert.deepEqual(await store.maintain(endOfMonth), { created: 5, dropped: [] });
    assert.equal(await tableExists(sql, 'samples_20250802'), true);
    assert.equal(await tableExists(sql, 'samples_20250803'), false);
    assert.equal(await tableExists(sql, 'samples_1m_202508'), true);
  });

  it('retentionDays drops older sample partitions and their rows, and keeps newer ones', async (t) => {
    const { store, sql } = await open(t, { retentionDays: 5, partitionAheadDays: 0 });
    const old = [rec(utc(2025, 7, 8, 10), 1.5), rec(utc(2025, 7, 12, 23, 59, 59, 999), 2.5)];
    const kept = [rec(utc(2025, 7, 13), 3.5), rec(utc(2025, 7, 18, 9, 30), 4.5)];
    await store.write('cluster-1', [...old, ...kept]);

    // now - 5 days = 2025-07-13T12:00Z: partitions ending by then go, with their rows.
    const res = await store.maintain(now);
    assert.equal(res.created, 0);
    assert.deepEqual([...res.dropped].sort(), [dayPartition(utc(2025, 7, 8)), 'samples_20250712']);
    assert.deepEqual(await partitionsOf(sql, 'samples'), ['samples_20250713', 'samples_20250718']);
    assert.deepEqual(await storedSamples(sql), expectedSamples(kept));
    // The rollup has its own retention (0: kept).
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), ['samples_1m_202507']);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([...old, ...kept]));

    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });
  });

  it('rollupRetentionDays drops older rollup partitions, and keeps newer ones and the raw readings', async (t) => {
    const { store, sql } = await open(t, { rollupRetentionDays: 40, partitionAheadDays: 0 });
    const may = rec(utc(2025, 5, 10, 8), 1.5);
    const june = rec(utc(2025, 6, 20, 8), 2.5);
    const july = rec(utc(2025, 7, 18, 8), 3.5);
    await store.write('cluster-1', [may, june, july]);

    // now - 40 days = 2025-06-08T12:00Z: the May partition (ending June 1st) goes.
    assert.deepEqual(await store.maintain(now), {
      created: 0,
      dropped: [monthPartition(may.timestamp)],
    });
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_202506',
      'samples_1m_202507',
    ]);
    assert.deepEqual(await storedBuckets(sql), expectedBuckets([june, july]));
    assert.deepEqual(await storedSamples(sql), expectedSamples([may, june, july]));
  });

  it('with retention 0 nothing is dropped', async (t) => {
    const { store, sql } = await open(t, { partitionAheadDays: 0 });
    const records = [rec(utc(2024, 1, 1), 1.5), rec(utc(2025, 7, 18, 8), 2.5)];
    await store.write('cluster-1', records);
    assert.deepEqual(await store.maintain(now), { created: 0, dropped: [] });
    assert.deepEqual(await partitionsOf(sql, 'samples'), ['samples_20240101', 'samples_20250718']);
    assert.deepEqual(await partitionsOf(sql, 'samples_1m'), [
      'samples_1m_202401',
      'samples_1m_202507',
    ]);
    assert.deepEqual(await storedSamples(sql), expectedSamples(records));
    assert.deepEqual(await storedBuckets(sql), expectedBuckets(records));
  });
}
