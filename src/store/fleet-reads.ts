/**
 * The fleet features' reads (docs/fleet.md): idle GPUs and usage (GPU-hours, utilisation while
 * allocated, energy), each one statement over the allocation minutes (`gpu_allocations`) and the
 * fleet metrics' 1-minute rollup (`fleet_1m_all`, migrations 009 and 014). No raw reading is read.
 */
import type {
  IdleGpu,
  IdleQuery,
  UsageGroupBy,
  UsageQuery,
  UsageRow,
  UsageRows,
} from './reader.js';
import type { Database, SqlClient } from './types.js';
import { USAGE_SETTLE_MS } from './allocations.js';

const PROF = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const POWER = 'DCGM_FI_DEV_POWER_USAGE';
const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';

/**
 * The cluster's GPU rows (MIG instances are rows of their own), each with `frac`, the part of its
 * physical GPU it is: 1 for a whole GPU; for a MIG instance its compute slices out of the GPU's
 * (profile `3g.40gb`: 3 of 7; an A30 has 4), 1 when the profile says none.
 */
const CLUSTER_GPUS = `SELECT gp.id, h.hostname, gp.host_id, gp.gpu_index, gp.gpu_instance_id, gp.uuid, gp.model,
         CASE WHEN gp.gpu_instance_id >= 0 AND gp.mig_profile ~ '^[0-9]+g[.]'
              THEN least(1, substring(gp.mig_profile from '^([0-9]+)g')::float8
                              / CASE WHEN gp.model ILIKE '%A30%' THEN 4 ELSE 7 END)
              ELSE 1 END AS frac
  FROM clusters c JOIN hosts h ON h.cluster_id = c.id JOIN gpus gp ON gp.host_id = h.id WHERE c.name = $1`;

/**
 * Idle GPUs: the workload of the last reading's minute (the newest pod when several), the
 * utilisation metric over its tenure, the end of the last minute its utilisation reached the
 * threshold, and the GPUs idle for at least `for` up to their last reading.
 *
 * Per GPU the statement probes indexes only: the folded minutes (`fleet_1m_folded`), the latest
 * values, the allocation and workload of its last minute. The readings not folded in yet
 * (`samples_pending`, which has no index: a few seconds' worth) are read once and grouped (`pd`,
 * `pv`, `pc`), never probed per GPU: at 100,000 GPUs a scan of that table per GPU and probe took
 * 17 s a statement, and the gateway counts idle GPUs every minute.
 */
const IDLE = `
WITH g AS MATERIALIZED (${CLUSTER_GPUS}
), mt AS (
  SELECT (SELECT id FROM metrics WHERE name = '${PROF}') AS prof, (SELECT id FROM metrics WHERE name = '${UTIL}') AS util
), pd AS MATERIALIZED (
  SELECT p.gpu_id, p.metric_id, p.time, p.value FROM samples_pending p JOIN g ON g.id = p.gpu_id
), lt AS MATERIALIZED (
  SELECT g.*, greatest((SELECT max(l.time) FROM samples_latest l WHERE l.gpu_id = g.id), pl.last) AS last
  FROM g LEFT JOIN (SELECT gpu_id, max(time) AS last FROM pd GROUP BY gpu_id) pl ON pl.gpu_id = g.id
), cur AS MATERIALIZED (
  SELECT lt.*, w.namespace, w.pod, w.first_seen, w.container
  FROM lt CROSS JOIN LATERAL (
    SELECT a.namespace, a.pod, x.first_seen, x.container
    FROM gpu_allocations a
    CROSS JOIN LATERAL (
      SELECT min(y.first_seen) OVER () AS first_seen, y.container FROM gpu_workloads y
      WHERE y.gpu_id = a.gpu_id AND y.namespace = a.namespace AND y.pod = a.pod
      ORDER BY y.last_seen DESC, y.container LIMIT 1
    ) x
    WHERE a.gpu_id = lt.id AND a.bucket = date_bin('1 minute', lt.last, timestamptz 'epoch') AND a.pod <> ''
    ORDER BY x.first_seen DESC, a.namespace, a.pod LIMIT 1
  ) w
  WHERE lt.last IS NOT NULL
), pv AS (
  -- The newest pending reading of each GPU's utilisation metrics.
  SELECT d.gpu_id, d.metric_id, max(d.time) AS time, (array_agg(d.value ORDER BY d.time DESC))[1] AS value
  FROM pd d CROSS JOIN mt WHERE d.metric_id IN (mt.prof, mt.util)
  GROUP BY 1, 2
), pc AS (
  -- The pending minutes of each tenure: the last one busy (its greatest reading at the threshold).
  SELECT d.gpu_id, d.metric_id,
         max(date_bin('1 minute', d.time, timestamptz 'epoch'))
           FILTER (WHERE d.value * CASE WHEN d.metric_id = mt.prof THEN 100 ELSE 1 END >= $2) AS busy
  FROM pd d JOIN cur ON cur.id = d.gpu_id CROSS JOIN mt
  WHERE d.metric_id IN (mt.prof, mt.util) AND d.time >= date_bin('1 minute', cur.first_seen, timestamptz 'epoch')
  GROUP BY 1, 2
), um AS (
  SELECT cur.*, m.id AS metric, m.name AS metric_name, CASE WHEN m.id = mt.prof THEN 100 ELSE 1 END AS scale
  FROM cur CROSS JOIN mt
  LEFT JOIN pc pp ON pp.gpu_id = cur.id AND pp.metric_id = mt.prof
  JOIN metrics m ON m.id = CASE
    WHEN pp.gpu_id IS NOT NULL OR EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = cur.id AND f.metric_id = mt.prof
                 AND f.bucket >= date_bin('1 minute', cur.first_seen, timestamptz 'epoch')) THEN mt.prof
    ELSE mt.util END
), b AS (
  SELECT um.*,
    greatest((SELECT max(f.bucket) FROM fleet_1m_folded f WHERE f.gpu_id = um.id AND f.metric_id = um.metric
               AND f.bucket >= date_bin('1 minute', um.first_seen, timestamptz 'epoch') AND f.max * um.scale >= $2),
             pu.busy) AS busy,
    pu.gpu_id IS NOT NULL OR EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = um.id AND f.metric_id = um.metric
       AND f.bucket >= date_bin('1 minute', um.first_seen, timestamptz 'epoch')) AS measured,
    CASE WHEN v.time >= l.time OR l.time IS NULL THEN v.value ELSE l.value END * um.scale AS util_now
  FROM um
  LEFT JOIN pc pu ON pu.gpu_id = um.id AND pu.metric_id = um.metric
  LEFT JOIN pv v ON v.gpu_id = um.id AND v.metric_id = um.metric
  LEFT JOIN LATERAL (SELECT l.time, l.value FROM samples_latest l WHERE l.gpu_id = um.id AND l.metric_id = um.metric
                     ORDER BY l.time DESC LIMIT 1) l ON true
), s AS (
  SELECT b.*, greatest(b.busy + interval '1 minute', b.first_seen) AS idle_since FROM b WHERE b.measured
)
SELECT hostname, gpu_index, gpu_instance_id, uuid, model, namespace, pod, container, metric_name, util_now,
       nexus_ms(idle_since) AS idle_since, nexus_ms(last) AS last
FROM s WHERE nexus_ms(last) - nexus_ms(idle_since) >= $3
ORDER BY nexus_ms(last) - nexus_ms(idle_since) DESC, hostname, gpu_index, gpu_instance_id`;

/**
 * Runs a fleet report (idle, usage) in `tx` with nested-loop joins off. The reports join
 * per-minute sets of the whole range (allocation minutes, utilisation, energy) on (GPU, minute):
 * hash joins do that in one pass each. Without fresh statistics (PGlite has no autovacuum; on
 * PostgreSQL, data younger than autovacuum's last ANALYZE) the planner guesses those sets tiny
 * and nests loops over them: measured on two hours of the simulated fleet (133,349 readings,
 * PGlite) 88 s instead of 0.1 s. Index probes inside the statements (EXISTS) are unaffected.
 *
 * JIT compilation is off as well: the nested loops the statements still need (a CROSS JOIN with
 * one row) are costed as disabled (10^10 each), which puts every report far past `jit_above_cost`
 * and has PostgreSQL inline and optimise hundreds of functions for a statement that runs in
 * milliseconds. Measured on the 100,000-GPU bench file, usage for one hour from the minutes:
 * 3.8 s, of which JIT 3.6 s.
 */
export async function withHashJoins<T>(tx: SqlClient, fn: () => Promise<T>): Promise<T> {
  await reportPlanning(tx);
  return fn();
}

async function reportPlanning(tx: SqlClient): Promise<void> {
  await tx.query('SET LOCAL enable_nestloop = off');
  await tx.query('SET LOCAL jit = off');
}

export async function idleGpus(db: SqlClient, q: IdleQuery): Promise<IdleGpu[]> {
  const res = await db.query<{
    hostname: string;
    gpu_index: number;
    gpu_instance_id: number;
    uuid: string | null;
    model: string | null;
    namespace: string;
    pod: string;
    container: string;
    metric_name: string;
    util_now: number | null;
    idle_since: string;
    last: string;
  }>(IDLE, [q.cluster, q.utilPercent, q.forMs]);
  return res.rows.map((r) => ({
    hostname: r.hostname,
    gpu_id: r.gpu_index,
    ...(r.gpu_instance_id >= 0 ? { gpu_instance_id: r.gpu_instance_id } : {}),
    uuid: r.uuid ?? undefined,
    model: r.model ?? undefined,
    namespace: r.namespace,
    pod: r.pod,
    container: r.container,
    utilization_metric: r.metric_name,
    utilization_percent: r.util_now ?? undefined,
    idle_since: Number(r.idle_since),
    last_seen: Number(r.last),
  }));
}

/** A usage statement's grouping: the API's, or per GPU row and workload (the hourly job's). */
type UsageMode = UsageGroupBy | 'row';

const GROUP_KEYS: Record<UsageMode, { select: string; group: string }> = {
  row: { select: 'm.gpu_id, m.namespace, m.pod', group: 'm.gpu_id, m.namespace, m.pod' },
  namespace: { select: 'm.namespace', group: 'm.namespace' },
  pod: { select: 'm.namespace, m.pod', group: 'm.namespace, m.pod' },
  host: { select: 'g.hostname', group: 'g.hostname' },
  gpu: { select: 'g.hostname, g.gpu_index, g.uuid', group: 'g.hostname, g.gpu_index, g.uuid' },
};

/**
 * Usage per group over the minutes starting in [from, to): the allocation minutes with their
 * shares, joined with the GPU-minute's utilisation (sum, count of the GPU's utilisation metric)
 * and energy (the counter's increase with resets, else average power x 60 s).
 */
const USAGE = (groupBy: UsageMode): string => `
WITH g AS (${CLUSTER_GPUS}
), mt AS (
  SELECT max(id) FILTER (WHERE name = '${PROF}') AS prof, max(id) FILTER (WHERE name = '${UTIL}') AS util,
         max(id) FILTER (WHERE name = '${POWER}') AS power, max(id) FILTER (WHERE name = '${ENERGY}') AS energy
  FROM metrics
), pend AS (
  -- Readings not folded in yet (schema 2; none on PGlite): a few seconds' worth, aggregated here.
  SELECT date_bin('1 minute', p.time, timestamptz 'epoch') AS bucket, p.gpu_id, p.metric_id, min(p.value) AS min,
         sum(p.value) AS sum, count(*) AS count, max(p.time) AS last_time, (array_agg(p.value ORDER BY p.time DESC))[1] AS last
  FROM samples_pending p JOIN g ON g.id = p.gpu_id CROSS JOIN mt
  WHERE p.metric_id IN (mt.prof, mt.util, mt.power, mt.energy)
    AND date_bin('1 minute', p.time, timestamptz 'epoch') >= nexus_ts($2) AND date_bin('1 minute', p.time, timestamptz 'epoch') < nexus_ts($3)
  GROUP BY 1, 2, 3
), has0 AS (
  -- Which utilisation metric, and whether the counter: an index probe per GPU.
  SELECT g.id AS gpu_id,
         EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = g.id AND f.metric_id = mt.prof
                   AND f.bucket >= nexus_ts($2) AND f.bucket < nexus_ts($3))
           OR EXISTS (SELECT FROM pend p WHERE p.gpu_id = g.id AND p.metric_id = mt.prof) AS prof,
         EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = g.id AND f.metric_id = mt.energy
                   AND f.bucket >= nexus_ts($2) AND f.bucket < nexus_ts($3))
           OR EXISTS (SELECT FROM pend p WHERE p.gpu_id = g.id AND p.metric_id = mt.energy) AS counter
  FROM g CROSS JOIN mt
), has AS (
  -- The two series each GPU's minutes are read from: its utilisation metric and its energy source.
  SELECT h.gpu_id, h.prof, h.counter, CASE WHEN h.prof THEN mt.prof ELSE mt.util END AS umetric,
         CASE WHEN h.counter THEN mt.energy ELSE mt.power END AS emetric
  FROM has0 h CROSS JOIN mt
), r AS (
  -- One row per GPU, metric and minute: its folded rows (fleet_1m's for a sealed window,
  -- samples_1m's for the others; a late reading of a sealed window has a row in each until the
  -- next sealing pass, migration 014) and its pending readings, combined.
  SELECT x.gpu_id, x.metric_id, x.bucket, min(x.min) AS min, sum(x.sum) AS sum, sum(x.count) AS count,
         (max(ARRAY[nexus_ms(x.last_time)::float8, x.last]))[2] AS last
  FROM (
    SELECT f.gpu_id, f.metric_id, f.bucket, f.min, f.sum, f.count, f.last_time, f.last_value AS last
    FROM has JOIN fleet_1m_folded f ON f.gpu_id = has.gpu_id AND f.metric_id IN (has.umetric, has.emetric)
    WHERE f.bucket >= nexus_ts($2) AND f.bucket < nexus_ts($3)
    UNION ALL
    SELECT p.gpu_id, p.metric_id, p.bucket, p.min, p.sum, p.count, p.last_time, p.last
    FROM pend p JOIN has ON has.gpu_id = p.gpu_id AND p.metric_id IN (has.umetric, has.emetric)
  ) x
  GROUP BY 1, 2, 3
), ctr AS (
  SELECT r.gpu_id, r.bucket, r.min, r.last,
         coalesce(lag(r.last) OVER (PARTITION BY r.gpu_id ORDER BY r.bucket),
                  (SELECT f.last_value FROM fleet_1m_all f WHERE f.gpu_id = r.gpu_id AND f.metric_id = r.metric_id
                     AND f.bucket < nexus_ts($2) ORDER BY f.bucket DESC, f.last_time DESC LIMIT 1)) AS prev
  FROM r JOIN has ON has.gpu_id = r.gpu_id WHERE has.counter AND r.metric_id = has.emetric
), en AS (
  SELECT gpu_id, bucket,
         (CASE WHEN prev IS NULL THEN last - min WHEN last < prev THEN last ELSE last - prev END) / 1000.0::float8 AS joules
  FROM ctr
  UNION ALL
  SELECT r.gpu_id, r.bucket, r.sum / r.count * 60
  FROM r JOIN has ON has.gpu_id = r.gpu_id WHERE r.metric_id = has.emetric AND NOT has.counter
), ut AS (
  SELECT r.gpu_id, r.bucket, r.sum * CASE WHEN has.prof THEN 100 ELSE 1 END AS usum, r.count::float8 AS ucount
  FROM r JOIN has ON has.gpu_id = r.gpu_id WHERE r.metric_id = has.umetric
), es AS (
  -- A MIG GPU's power and energy counter repeat on each of its instances' series: each of the
  -- rows of one physical GPU reporting energy in a minute counts its share of it, once in all.
  SELECT en.gpu_id, en.bucket, en.joules / count(*) OVER (PARTITION BY g.host_id, g.gpu_index, en.bucket) AS joules
  FROM en JOIN g ON g.id = en.gpu_id
), al AS (
  SELECT a.gpu_id, a.bucket, a.namespace, a.pod,
         count(*) FILTER (WHERE a.pod <> '') OVER (PARTITION BY a.gpu_id, a.bucket) AS k
  FROM gpu_allocations a JOIN g ON g.id = a.gpu_id
  WHERE a.bucket >= nexus_ts($2) AND a.bucket < nexus_ts($3)
), m AS (
  -- A workload's share of a GPU-minute: 1/k of the row's part of its GPU (frac: a MIG instance
  -- is a part of a GPU-hour).
  -- Energy is shared 1/k of the row's (es: already its part of its GPU's).
  SELECT al.gpu_id, al.namespace, al.pod, CASE WHEN al.k = 0 THEN NULL ELSE gr.frac / al.k END AS share,
         CASE WHEN al.k = 0 THEN NULL ELSE 1.0::float8 / al.k END AS eshare, gr.frac, ut.usum, ut.ucount, es.joules
  FROM al JOIN g gr ON gr.id = al.gpu_id
  LEFT JOIN ut ON ut.gpu_id = al.gpu_id AND ut.bucket = al.bucket
  LEFT JOIN es ON es.gpu_id = al.gpu_id AND es.bucket = al.bucket
  WHERE al.pod <> '' OR al.k = 0
)
SELECT ${GROUP_KEYS[groupBy].select}, (m.share IS NULL) AS unallocated,
       coalesce(sum(m.share), 0) AS allocated_minutes,
       sum(m.share * m.usum) AS usum, sum(m.share * m.ucount) AS ucount,
       coalesce(sum(m.eshare * m.joules), 0) AS allocated_joules,
       coalesce(sum(m.frac) FILTER (WHERE m.share IS NULL), 0) AS unallocated_minutes,
       coalesce(sum(m.joules) FILTER (WHERE m.share IS NULL), 0) AS unallocated_joules
FROM m JOIN g ON g.id = m.gpu_id
GROUP BY ${GROUP_KEYS[groupBy].group}, (m.share IS NULL)`;

interface UsageSqlRow {
  namespace?: string;
  pod?: string;
  hostname?: string;
  gpu_index?: number;
  uuid?: string | null;
  unallocated: boolean;
  allocated_minutes: number;
  usum: number | null;
  ucount: number | null;
  allocated_joules: number;
  unallocated_minutes: number;
  unallocated_joules: number;
}

const HOUR = 3_600_000;

/** Usage from the hourly table: the whole hours of [$2, $3) not marked for recomputation. */
const USAGE_HOURS = (groupBy: UsageGroupBy): string => `
WITH g AS (${CLUSTER_GPUS})
SELECT ${GROUP_KEYS[groupBy].select}, (m.pod = '') AS unallocated,
       coalesce(sum(m.minutes) FILTER (WHERE m.pod <> ''), 0) AS allocated_minutes,
       sum(m.usum) FILTER (WHERE m.pod <> '') AS usum, sum(m.ucount) FILTER (WHERE m.pod <> '') AS ucount,
       coalesce(sum(m.joules) FILTER (WHERE m.pod <> ''), 0) AS allocated_joules,
       coalesce(sum(m.minutes) FILTER (WHERE m.pod = ''), 0) AS unallocated_minutes,
       coalesce(sum(m.joules) FILTER (WHERE m.pod = ''), 0) AS unallocated_joules
FROM usage_1h m JOIN g ON g.id = m.gpu_id
WHERE m.hour >= nexus_ts($2) AND m.hour < nexus_ts($3)
  AND NOT EXISTS (SELECT FROM usage_dirty d WHERE d.hour = m.hour)
GROUP BY ${GROUP_KEYS[groupBy].group}, (m.pod = '')`;

/**
 * Usage over [from, to): its whole hours from `usage_1h` (those computed and not marked since),
 * the rest (partial hours at the ends, hours marked for recomputation) from the 1-minute tables;
 * the same figures either way (the conformance suite compares them).
 */
export async function usage(db: SqlClient, q: UsageQuery): Promise<UsageRows> {
  const h0 = Math.ceil(q.from / HOUR) * HOUR;
  const h1 = Math.floor(q.to / HOUR) * HOUR;
  const minuteRanges: [number, number][] = [];
  const rows: UsageSqlRow[] = [];
  if (h0 >= h1) minuteRanges.push([q.from, q.to]);
  else {
    if (q.from < h0) minuteRanges.push([q.from, h0]);
    const dirty = await db.query<{ h: string }>(
      `SELECT nexus_ms(hour)::text AS h FROM usage_dirty
       WHERE hour >= nexus_ts($1) AND hour < nexus_ts($2) ORDER BY hour`,
      [h0, h1],
    );
    for (const d of dirty.rows) {
      const h = Number(d.h);
      const last = minuteRanges.at(-1);
      if (last !== undefined && last[1] === h) last[1] = h + HOUR;
      else minuteRanges.push([h, h + HOUR]);
    }
    if (h1 < q.to) minuteRanges.push([h1, q.to]);
    rows.push(...(await db.query<UsageSqlRow>(USAGE_HOURS(q.groupBy), [q.cluster, h0, h1])).rows);
  }
  // From the minutes an hour at a time: the statement's cost grows faster than its range (48
  // hours of the simulated fleet in one: 23 s on PGlite; hour by hour: 1.4 s).
  for (const [from, to] of minuteRanges) {
    for (let a = from; a < to; a = Math.min(to, Math.floor(a / HOUR) * HOUR + HOUR)) {
      const b = Math.min(to, Math.floor(a / HOUR) * HOUR + HOUR);
      rows.push(...(await db.query<UsageSqlRow>(USAGE(q.groupBy), [q.cluster, a, b])).rows);
    }
  }
  const groups = new Map<string, UsageRow>();
  let unallocatedMinutes = 0;
  let unallocatedJoules = 0;
  const byWorkload = q.groupBy === 'namespace' || q.groupBy === 'pod';
  for (const r of rows) {
    unallocatedMinutes += r.unallocated_minutes;
    unallocatedJoules += r.unallocated_joules;
    // Minutes without a workload are no namespace's or pod's: only beside the groups.
    if (byWorkload && r.unallocated) continue;
    const key =
      q.groupBy === 'namespace'
        ? { namespace: r.namespace ?? '' }
        : q.groupBy === 'pod'
          ? { namespace: r.namespace ?? '', pod: r.pod ?? '' }
          : q.groupBy === 'host'
            ? { hostname: r.hostname ?? '' }
            : { hostname: r.hostname ?? '', gpu_id: r.gpu_index ?? 0, uuid: r.uuid ?? undefined };
    const k = JSON.stringify(key);
    groups.set(k, mergeRow(groups.get(k), key, r));
  }
  const list = [...groups.entries()]
    .sort(
      ([ka, a], [kb, b]) =>
        b.allocated_minutes - a.allocated_minutes || (ka < kb ? -1 : ka > kb ? 1 : 0),
    )
    .map(([, v]) => v);
  return {
    groups: list,
    unallocated_minutes: unallocatedMinutes,
    unallocated_joules: unallocatedJoules,
  };
}

/** Utilisation sums are kept beside a row while its two halves (allocated, not) are merged. */
const sums = new WeakMap<UsageRow, { usum: number; ucount: number }>();

function mergeRow(prev: UsageRow | undefined, key: object, r: UsageSqlRow): UsageRow {
  const before =
    prev === undefined ? { usum: 0, ucount: 0 } : (sums.get(prev) ?? { usum: 0, ucount: 0 });
  const usum = before.usum + (r.usum ?? 0);
  const ucount = before.ucount + (r.ucount ?? 0);
  const row: UsageRow = {
    ...key,
    allocated_minutes: (prev?.allocated_minutes ?? 0) + r.allocated_minutes,
    avg_utilization_percent: ucount > 0 ? usum / ucount : undefined,
    allocated_joules: (prev?.allocated_joules ?? 0) + r.allocated_joules,
    unallocated_minutes: (prev?.unallocated_minutes ?? 0) + r.unallocated_minutes,
    unallocated_joules: (prev?.unallocated_joules ?? 0) + r.unallocated_joules,
  };
  sums.set(row, { usum, ucount });
  return row;
}

const USAGE_HOURS_LOCK = "hashtext('nexus_usage_hours')";

/**
 * The hourly usage job: recomputes the hours marked in `usage_dirty` whose mark is at least
 * USAGE_SETTLE_MS old (up to `maxHours` per run, oldest first), each from the 1-minute tables for
 * every cluster, in one transaction holding an advisory lock (one session at a time; another
 * returns `busy`). An hour's mark is deleted in the same transaction before it is read: a write
 * that marks it meanwhile waits for the transaction, then marks it again.
 */
export async function rollUpUsageHours(
  db: Database,
  settleMs = USAGE_SETTLE_MS,
  maxHours = 24,
): Promise<{ hours: number; busy: boolean }> {
  return db.transaction(async (tx) => {
    const lock = await tx.query<{ got: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${USAGE_HOURS_LOCK}) AS got`,
    );
    if (lock.rows[0]?.got !== true) return { hours: 0, busy: true };
    const due = await tx.query<{ h: string }>(
      `SELECT nexus_ms(hour)::text AS h FROM usage_dirty
       WHERE marked_at < clock_timestamp() - make_interval(secs => $1::float8 / 1000)
       ORDER BY hour LIMIT $2`,
      [settleMs, maxHours],
    );
    if (due.rows.length === 0) return { hours: 0, busy: false };
    await reportPlanning(tx);
    const clusters = await tx.query<{ name: string }>('SELECT name FROM clusters ORDER BY name');
    let hours = 0;
    for (const d of due.rows) {
      const h = Number(d.h);
      const taken = await tx.query(
        `DELETE FROM usage_dirty WHERE hour = nexus_ts($1)
           AND marked_at < clock_timestamp() - make_interval(secs => $2::float8 / 1000)`,
        [h, settleMs],
      );
      if (taken.rowCount === 0) continue; // marked again meanwhile: a later run
      await tx.query('DELETE FROM usage_1h WHERE hour = nexus_ts($1)', [h]);
      for (const c of clusters.rows) {
        await tx.query(
          `INSERT INTO usage_1h (gpu_id, hour, namespace, pod, minutes, usum, ucount, joules)
           SELECT x.gpu_id, nexus_ts($2), x.namespace, x.pod,
                  CASE WHEN x.unallocated THEN x.unallocated_minutes ELSE x.allocated_minutes END,
                  x.usum, x.ucount,
                  CASE WHEN x.unallocated THEN x.unallocated_joules ELSE x.allocated_joules END
           FROM (${USAGE('row')}) x`,
          [c.name, h, h + HOUR],
        );
      }
      hours++;
    }
    return { hours, busy: false };
  });
}

/**
 * The report statements and their parameters, for a test to EXPLAIN them as they are planned
 * (test/integration/store-postgres.test.ts: no JIT).
 */
export const REPORT_STATEMENTS: Readonly<Record<'idle' | 'usage', string>> = {
  idle: IDLE, // $1 cluster, $2 utilisation %, $3 idle for (ms)
  usage: USAGE('row'), // $1 cluster, $2 from (ms), $3 to (ms)
};
