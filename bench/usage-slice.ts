/**
 * The cardinality section's usage case (docs/fleet.md, "Usage and showback"): the bench's files
 * hold 4 seconds of readings at 100,000 GPUs (83 minutes of 80 GPUs for the small fleet), which
 * does not load the usage report at a fleet's size, so one 10-minute slice of dense minutes is
 * added with SQL to the fleet's database (every GPU: 10 minutes of utilisation and power, and its
 * workload allocated each minute), then the gateway's usage report over that
 * slice is timed from the 1-minute tables, the usage job's computing of the slice, and the report
 * again from `usage_10m`.
 */
import pg from 'pg';
import { USAGE_SLICE_MS } from '../src/store/allocations.js';
import { rollUpUsage } from '../src/store/fleet-reads.js';
import { postgresDatabase } from '../test/helpers/pipeline.js';

const MINUTE = 60_000;
/** Requests of the report per state (from the minutes, from usage_10m): the median is reported. */
export const USAGE_RUNS = 3;
const REQUEST_TIMEOUT_MS = 120_000;

export interface UsageSliceResult {
  /** Rollup rows and allocation minutes added for the slice. */
  readonly rollupRows: number;
  readonly allocationMinutes: number;
  /** ms of each request of the report while the slice is read from the minutes. */
  readonly fromMinutesMs: readonly number[];
  /** ms the usage job took to compute the slice (its statement per cluster, its hour's checks). */
  readonly jobMs: number;
  /** ms of each request once the slice is read from usage_10m. */
  readonly keptMs: readonly number[];
  /** Statuses other than 200, if any. */
  readonly failures: readonly string[];
}

async function timedGet(
  url: string,
  token: string | undefined,
  failures: string[],
): Promise<number> {
  const t0 = performance.now();
  try {
    const res = await fetch(url, {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    if (res.status !== 200) failures.push(`${res.status}`);
  } catch (err) {
    failures.push(err instanceof Error ? err.message : String(err));
  }
  return performance.now() - t0;
}

/**
 * Adds a dense slice, the one before the fleet's first reading, and times the report and the
 * job. The slice is marked an hour ahead, so that the collector's own usage job (which takes
 * marks at least 30 s old) leaves it to the bench; the bench's job run takes it at once.
 */
export async function measureUsageSlice(o: {
  databaseUrl: string;
  gatewayUrl: string;
  token: string | undefined;
  cluster: string;
}): Promise<UsageSliceResult> {
  const client = new pg.Client({ connectionString: o.databaseUrl });
  await client.connect();
  const db = postgresDatabase(o.databaseUrl, 2);
  try {
    const first = await client.query<{ t: string }>(
      'SELECT nexus_ms(min(bucket))::text AS t FROM gpu_allocations',
    );
    const slice =
      Math.floor(Number(first.rows[0]?.t) / USAGE_SLICE_MS) * USAGE_SLICE_MS - USAGE_SLICE_MS;
    await client.query('SELECT nexus_ensure_window_partitions(ARRAY[$1::bigint])', [slice]);
    const metrics = await client.query<{ id: number }>(
      "SELECT id FROM metrics WHERE name IN ('DCGM_FI_DEV_GPU_UTIL', 'DCGM_FI_DEV_POWER_USAGE')",
    );
    let rollupRows = 0;
    for (const m of metrics.rows) {
      const r = await client.query(
        `INSERT INTO samples_1m (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
         SELECT b, g.id, $2::smallint, v, v, v * 6, 6, b + interval '50 seconds', v
         FROM gpus g
         CROSS JOIN generate_series(nexus_ts($1), nexus_ts($1) + interval '9 minutes', interval '1 minute') AS b
         CROSS JOIN LATERAL (SELECT (g.id * 7 + extract(minute FROM b)::int) % 100 AS v) x
         ON CONFLICT DO NOTHING`,
        [slice, m.id],
      );
      rollupRows += r.rowCount ?? 0;
    }
    const alloc = await client.query(
      `INSERT INTO gpu_allocations (gpu_id, bucket, namespace, pod)
       SELECT a.gpu_id, b, a.namespace, a.pod
       FROM (SELECT DISTINCT ON (gpu_id) gpu_id, namespace, pod FROM gpu_allocations ORDER BY gpu_id, bucket) a
       CROSS JOIN generate_series(nexus_ts($1), nexus_ts($1) + interval '9 minutes', interval '1 minute') AS b
       ON CONFLICT DO NOTHING`,
      [slice],
    );
    await client.query(
      `INSERT INTO usage_slices (slice, marked_at) VALUES (nexus_ts($1), clock_timestamp() + interval '1 hour')
       ON CONFLICT (slice) DO UPDATE SET marked_at = excluded.marked_at`,
      [slice],
    );
    // Statistics as autovacuum would gather them soon after such a write.
    await client.query('ANALYZE samples_1m, gpu_allocations');
    const url = `${o.gatewayUrl}/api/v1/clusters/${o.cluster}/usage?group_by=namespace&from=${new Date(slice).toISOString()}&to=${new Date(slice + 10 * MINUTE).toISOString()}`;
    const failures: string[] = [];
    const fromMinutesMs: number[] = [];
    for (let i = 0; i < USAGE_RUNS; i++) fromMinutesMs.push(await timedGet(url, o.token, failures));
    // The collector's job may hold the lock for slices of its own: wait for it.
    let jobMs = Number.NaN;
    for (let tries = 0; tries < 120; tries++) {
      const t0 = performance.now();
      const res = await rollUpUsage(db, -2 * 3_600_000, 1, 600_000);
      if (!res.busy && res.slices > 0) {
        jobMs = performance.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const keptMs: number[] = [];
    for (let i = 0; i < USAGE_RUNS; i++) keptMs.push(await timedGet(url, o.token, failures));
    return {
      rollupRows,
      allocationMinutes: alloc.rowCount ?? 0,
      fromMinutesMs,
      jobMs,
      keptMs,
      failures,
    };
  } finally {
    await client.end();
    await db.close();
  }
}
