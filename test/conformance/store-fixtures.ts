/**
 * Records and table readers for the store conformance suite: readings built like dcgm-exporter's,
 * what a set of readings should leave in each table, and plain-SQL readers of what is there.
 */
import assert from 'node:assert/strict';
import { NexusError } from '../../src/core/errors.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { decodeChunk } from '../../src/store/chunks/codec.js';
import type { SqlClient } from '../../src/store/types.js';

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 86_400_000;
export const utc = (y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number =>
  Date.UTC(y, mo - 1, d, h, mi, s, ms);

/** 2025-07-18T13:42:10.123Z: odd milliseconds on purpose. */
export const T0 = utc(2025, 7, 18, 13, 42, 10, 123);
export const TEMP = 'DCGM_FI_DEV_GPU_TEMP';
export const POWER = 'DCGM_FI_DEV_POWER_USAGE';
export const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';
export const CUSTOM = 'ACME_CUSTOM_FIELD';

export type RecordFields = Partial<Omit<TelemetryRecord, 'timestamp' | 'value'>>;

/** One reading, with the attributes dcgm-exporter gives it (uuid, model, device, labels). */
export function rec(timestamp: number, value: number, over: RecordFields = {}): TelemetryRecord {
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
export function grid(o: {
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

export const times = (start: number, count: number, stepMs: number): number[] =>
  Array.from({ length: count }, (_, i) => start + i * stepMs);

// ---------------------------------------------------------------------------------------------
// Reading the tables back
// ---------------------------------------------------------------------------------------------

export interface Sample {
  readonly host: string;
  readonly gpu: number;
  readonly metric: string;
  readonly ms: number;
  readonly value: number;
}

export const compareSamples = (a: Sample, b: Sample): number =>
  a.host < b.host
    ? -1
    : a.host > b.host
      ? 1
      : a.gpu - b.gpu ||
        (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) ||
        a.ms - b.ms ||
        a.value - b.value;

/** The readings `records` should leave in `samples`: one per GPU, metric and instant. */
export function expectedSamples(records: readonly TelemetryRecord[]): Sample[] {
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
export async function storedSamples(sql: SqlClient, table = 'samples'): Promise<Sample[]> {
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

/**
 * Every stored reading, hot and sealed (chunks decoded): what a store holds, whatever tier it is
 * in. Readings in both tiers at once (never expected) appear twice.
 */
export async function storedReadings(sql: SqlClient): Promise<Sample[]> {
  const hot = await storedSamples(sql);
  const res = await sql.query<{ host: string; gpu: number; metric: string; data: Uint8Array }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, c.data
     FROM sample_chunks c JOIN gpus g ON g.id = c.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = c.metric_id WHERE c.data IS NOT NULL`,
  );
  const sealed: Sample[] = [];
  for (const r of res.rows) {
    const d = decodeChunk(r.data);
    for (let i = 0; i < d.times.length; i++) {
      sealed.push({
        host: r.host,
        gpu: r.gpu,
        metric: r.metric,
        ms: d.times[i] ?? 0,
        value: d.values[i] ?? 0,
      });
    }
  }
  return [...hot, ...sealed].sort(compareSamples);
}

/** Chunks by series and window: count and aggregates beside them, as stored. */
export async function storedChunks(sql: SqlClient): Promise<
  {
    host: string;
    gpu: number;
    metric: string;
    window: number;
    count: number;
    min: number;
    max: number;
    sum: number;
  }[]
> {
  const res = await sql.query<{
    host: string;
    gpu: number;
    metric: string;
    w: string;
    count: number;
    min: number;
    max: number;
    sum: number;
  }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, nexus_ms(c.window_start)::text AS w,
            c.count, c.min, c.max, c.sum
     FROM sample_chunks c JOIN gpus g ON g.id = c.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = c.metric_id
     ORDER BY 1, 2, 3, 4`,
  );
  return res.rows.map((r) => ({ ...r, window: Number(r.w) })).map(({ w: _w, ...r }) => r);
}

export interface Counts {
  readonly clusters: number;
  readonly hosts: number;
  readonly gpus: number;
  readonly metrics: number;
  readonly workloads: number;
  readonly samples: number;
  readonly latest: number;
  readonly buckets: number;
}

export async function counts(sql: SqlClient): Promise<Counts> {
  const res = await sql.query<Counts>(
    `SELECT (SELECT count(*) FROM clusters)::int AS clusters, (SELECT count(*) FROM hosts)::int AS hosts,
            (SELECT count(*) FROM gpus)::int AS gpus, (SELECT count(*) FROM metrics)::int AS metrics,
            (SELECT count(*) FROM gpu_workloads)::int AS workloads,
            (SELECT count(*) FROM samples)::int AS samples,
            (SELECT count(DISTINCT (gpu_id, metric_id)) FROM samples_latest_all)::int AS latest,
            (SELECT count(DISTINCT (gpu_id, metric_id, bucket)) FROM samples_1m_all)::int AS buckets`,
  );
  const row = res.rows[0];
  assert.ok(row);
  return row;
}

export interface Bucket {
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
export function expectedBuckets(records: readonly TelemetryRecord[]): Bucket[] {
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

/**
 * The rollup as readers see it (`samples_1m_all`: folded and pending readings combined), or only
 * what the rollup job has folded into `samples_1m`.
 */
export async function storedBuckets(
  sql: SqlClient,
  from: 'samples_1m_all' | 'samples_1m' = 'samples_1m_all',
): Promise<Bucket[]> {
  const res = await sql.query<Omit<Bucket, 'bucket'> & { bucket: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, nexus_ms(r.bucket)::text AS bucket,
            min(r.min) AS min, max(r.max) AS max, sum(r.sum) AS sum, sum(r.count)::int AS count
     FROM ${from} r JOIN gpus g ON g.id = r.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = r.metric_id
     GROUP BY h.hostname, g.gpu_index, m.name, r.bucket`,
  );
  return res.rows
    .map((r) => ({ ...r, bucket: Number(r.bucket) }))
    .sort((a, b) => (bucketKey(a) < bucketKey(b) ? -1 : 1));
}

/** Readings stored but not yet folded in by the rollup job. */
export async function pendingCount(sql: SqlClient): Promise<number> {
  const res = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM samples_pending');
  return res.rows[0]?.n ?? 0;
}

export interface Latest {
  readonly host: string;
  readonly gpu: number;
  readonly metric: string;
  readonly ms: number;
  readonly value: number;
}

/** The newest reading of each GPU and metric. */
export function expectedLatest(records: readonly TelemetryRecord[]): Latest[] {
  const out = new Map<string, Latest>();
  for (const s of expectedSamples(records)) {
    const k = `${s.host}\u0000${s.gpu}\u0000${s.metric}`;
    const prev = out.get(k);
    if (prev === undefined || s.ms > prev.ms) out.set(k, s);
  }
  return [...out.values()].sort(compareSamples);
}

/** The latest values as readers see them (folded and pending), or only the folded ones. */
export async function storedLatest(
  sql: SqlClient,
  from: 'samples_latest_all' | 'samples_latest' = 'samples_latest_all',
): Promise<Latest[]> {
  const res = await sql.query<Omit<Latest, 'ms'> & { ms: string }>(
    `SELECT DISTINCT ON (l.gpu_id, l.metric_id)
            h.hostname AS host, g.gpu_index AS gpu, m.name AS metric, nexus_ms(l.time)::text AS ms, l.value
     FROM ${from} l JOIN gpus g ON g.id = l.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = l.metric_id
     ORDER BY l.gpu_id, l.metric_id, l.time DESC`,
  );
  return res.rows.map((r) => ({ ...r, ms: Number(r.ms) })).sort(compareSamples);
}

export interface Gpu {
  readonly host: string;
  readonly index: number;
  readonly uuid: string | null;
  readonly model: string | null;
  readonly device: string | null;
  readonly labels: Record<string, string>;
}

export async function storedGpus(sql: SqlClient): Promise<Gpu[]> {
  const res = await sql.query<Omit<Gpu, 'labels'> & { labels: string }>(
    `SELECT h.hostname AS host, g.gpu_index AS index, g.uuid, g.model, g.device, g.labels::text AS labels
     FROM gpus g JOIN hosts h ON h.id = g.host_id`,
  );
  return res.rows
    .map((r) => ({ ...r, labels: JSON.parse(r.labels) as Record<string, string> }))
    .sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.index - b.index));
}

export interface Workload {
  readonly host: string;
  readonly gpu: number;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
  readonly first: number;
  readonly last: number;
}

export async function storedWorkloads(sql: SqlClient): Promise<Workload[]> {
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
export async function partitionsOf(
  sql: SqlClient,
  parent: 'samples' | 'samples_1m',
): Promise<string[]> {
  const res = await sql.query<{ name: string }>(
    `SELECT c.relname::text AS name FROM pg_inherits i
     JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
     WHERE p.relname = $1`,
    [parent],
  );
  return res.rows.map((r) => r.name).sort();
}

export async function tableExists(sql: SqlClient, name: string): Promise<boolean> {
  const res = await sql.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [name]);
  return res.rows[0]?.t !== null && res.rows[0]?.t !== undefined;
}

export async function rowsIn(sql: SqlClient, table: string): Promise<number> {
  const res = await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return res.rows[0]?.n ?? -1;
}

/** `YYYYMMDD_HH` of the 2-hour window holding `ms`. */
const windowName = (ms: number): string => {
  const iso = new Date(Math.floor(ms / 7_200_000) * 7_200_000).toISOString();
  return `${iso.slice(0, 10).replaceAll('-', '')}_${iso.slice(11, 13)}`;
};
/** The hot raw partition (2-hour window) holding `ms`. */
export const windowPartition = (ms: number): string => `samples_${windowName(ms)}`;
/** The hot 1-minute rollup partition (2-hour window) holding `ms`. */
export const rollupPartition = (ms: number): string => `samples_1m_${windowName(ms)}`;

/** Asserts `p` rejects with STORE_REJECTED carrying the database's own message. */
export async function assertRejected(p: Promise<unknown>, reason: RegExp): Promise<void> {
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
