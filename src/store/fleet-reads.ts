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
import type { Database, SqlClient, UsageRollUp } from './types.js';
import { USAGE_SETTLE_MS, USAGE_SLICE_MS } from './allocations.js';

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
 *
 * The last busy minute is not looked for back through the tenure (for an idle GPU that read every
 * minute of it: at 100,000 GPUs about 2 s a statement per hour of tenure). The slices the usage
 * job has merged into `util_peaks` (migration 016) answer with the last slice that reached the
 * threshold, and only its ten minutes are read; the slices it cannot answer for (marked by a
 * write since they were merged, or never merged) are read minute by minute (`ur`).
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
  SELECT lt.*, w.namespace, w.pod, w.first_seen, w.container,
         date_bin('1 minute', w.first_seen, timestamptz 'epoch') AS fs
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
  WHERE d.metric_id IN (mt.prof, mt.util) AND d.time >= cur.fs
  GROUP BY 1, 2
), ts AS (
  -- The slices util_peaks answers for (migration 016): merged since last computed, and not marked
  -- since (an earlier release's hour mark marks its six slices), from the oldest tenure on.
  SELECT u.slice FROM usage_slices u
  WHERE u.peaks_at >= u.computed_at AND u.marked_at IS NULL
    AND u.slice >= (SELECT date_bin('10 minutes', min(cur.fs), timestamptz 'epoch') FROM cur)
), runs AS (
  SELECT min(x.slice) AS lo, max(x.slice) + interval '10 minutes' AS hi
  FROM (SELECT ts.slice, ts.slice - make_interval(mins => 10 * (row_number() OVER (ORDER BY ts.slice))::int) AS run
        FROM ts) x
  GROUP BY x.run
), ur AS MATERIALIZED (
  -- The rest, as ranges (slices marked since they were merged, slices never merged): read
  -- minute by minute.
  SELECT coalesce(lag(runs.hi) OVER (ORDER BY runs.lo), timestamptz '-infinity') AS lo, runs.lo AS hi FROM runs
  UNION ALL
  SELECT coalesce(max(runs.hi), timestamptz '-infinity'), timestamptz 'infinity' FROM runs
), uc AS MATERIALIZED (
  -- The utilisation metric of each tenure, chosen once per GPU: joined to \`metrics\` by the
  -- choice, or read from an inlined subquery, its probe ran for every metric or every use (three
  -- or four times at 100,000 GPUs).
  SELECT cur.*, mt.prof, CASE
    WHEN pp.gpu_id IS NOT NULL OR EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = cur.id AND f.metric_id = mt.prof
                 AND f.bucket >= cur.fs) THEN mt.prof
    ELSE mt.util END AS metric
  FROM cur CROSS JOIN mt
  LEFT JOIN pc pp ON pp.gpu_id = cur.id AND pp.metric_id = mt.prof
), um AS (
  SELECT uc.*, CASE WHEN uc.metric = uc.prof THEN '${PROF}' ELSE '${UTIL}' END AS metric_name,
         CASE WHEN uc.metric = uc.prof THEN 100 ELSE 1 END AS scale
  FROM uc WHERE uc.metric IS NOT NULL
), uk AS (
  -- The last slice of the tenure util_peaks says reached the threshold.
  SELECT um.*,
    (SELECT max(u.slice) FROM util_peaks u WHERE u.gpu_id = um.id AND u.metric_id = um.metric
       AND u.slice > um.fs - interval '10 minutes' AND u.max * um.scale >= $2) AS peak
  FROM um
), b AS MATERIALIZED (
  -- The last busy minute: in that slice, in the ranges util_peaks does not answer for, or pending.
  -- Materialized: inlined, each probe ran twice (in the filter on idle time and in the output).
  SELECT uk.*,
    greatest((SELECT max(f.bucket) FROM fleet_1m_folded f WHERE f.gpu_id = uk.id AND f.metric_id = uk.metric
                AND f.bucket >= greatest(uk.peak, uk.fs) AND f.bucket < uk.peak + interval '10 minutes'
                AND f.max * uk.scale >= $2),
             (SELECT max((SELECT max(f.bucket) FROM fleet_1m_folded f WHERE f.gpu_id = uk.id AND f.metric_id = uk.metric
                            AND f.bucket >= greatest(ur.lo, uk.fs) AND f.bucket < ur.hi AND f.max * uk.scale >= $2))
              FROM ur WHERE ur.hi > uk.fs),
             pu.busy) AS busy,
    pu.gpu_id IS NOT NULL OR EXISTS (SELECT FROM fleet_1m_folded f WHERE f.gpu_id = uk.id AND f.metric_id = uk.metric
       AND f.bucket >= uk.fs) AS measured,
    CASE WHEN v.time >= l.time OR l.time IS NULL THEN v.value ELSE l.value END * uk.scale AS util_now
  FROM uk
  LEFT JOIN pc pu ON pu.gpu_id = uk.id AND pu.metric_id = uk.metric
  LEFT JOIN pv v ON v.gpu_id = uk.id AND v.metric_id = uk.metric
  LEFT JOIN LATERAL (SELECT l.time, l.value FROM samples_latest l WHERE l.gpu_id = uk.id AND l.metric_id = uk.metric
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

/** A usage statement's grouping: the API's, or per GPU row and workload (the usage job's). */
type UsageMode = UsageGroupBy | 'row';

const GROUP_KEYS: Record<UsageMode, { select: string; group: string }> = {
  row: { select: 'm.gpu_id, m.namespace, m.pod', group: 'm.gpu_id, m.namespace, m.pod' },
  namespace: { select: 'm.namespace', group: 'm.namespace' },
  pod: { select: 'm.namespace, m.pod', group: 'm.namespace, m.pod' },
  host: { select: 'g.hostname', group: 'g.hostname' },
  gpu: { select: 'g.hostname, g.gpu_index, g.uuid', group: 'g.hostname, g.gpu_index, g.uuid' },
};

/**
 * The cluster's GPU rows as CLUSTER_GPUS, each with `shared`: whether its physical GPU has other
 * rows (MIG instances), whose energy it shares.
 */
const CLUSTER_GPUS_SHARED = `SELECT x.*, count(*) OVER (PARTITION BY x.host_id, x.gpu_index) > 1 AS shared
  FROM (${CLUSTER_GPUS}) x`;

/**
 * Usage per group over the minutes starting in [from, to): the allocation minutes with their
 * shares, joined with the GPU-minute's utilisation (sum, count of the GPU's utilisation metric)
 * and energy (the counter's increase with resets, else average power x 60 s).
 *
 * Shaped for the 1-minute tables of a large fleet (100,000 GPUs: 200,000 rollup rows and 100,000
 * allocation minutes a minute): each fleet metric's rows are read once, in one pass over the
 * range, and pivoted to one row per GPU-minute (`r`) that carries every metric; which utilisation
 * metric and which energy source a GPU uses in the range are window flags over its rows, not
 * index probes per GPU and metric; and a counter's value before the range comes from the minute
 * before it, read in the same pass (a probe only for a GPU silent in that minute). The job and
 * the readers run it over at most a 10-minute slice at a time (usage()): at 100,000 GPUs, 5.8 s a
 * slice; over a whole hour at once, 68 s (its hash tables and sorts spill).
 */
const USAGE = (groupBy: UsageMode): string => `
WITH g AS MATERIALIZED (${CLUSTER_GPUS_SHARED}
), mt AS (
  SELECT max(id) FILTER (WHERE name = '${PROF}') AS prof, max(id) FILTER (WHERE name = '${UTIL}') AS util,
         max(id) FILTER (WHERE name = '${POWER}') AS power, max(id) FILTER (WHERE name = '${ENERGY}') AS energy
  FROM metrics
), r AS (
  -- One row per GPU and minute, each fleet metric's rows combined: a key may have several (the
  -- readings not folded in yet; a late reading of a sealed window has a row in fleet_1m and in
  -- samples_1m until the next sealing pass, migration 014). The minute before the range is read
  -- for the energy counter only (the previous value of its first minute).
  SELECT x.gpu_id, x.bucket,
         sum(x.sum) FILTER (WHERE x.metric_id = mt.prof) AS psum, sum(x.count) FILTER (WHERE x.metric_id = mt.prof) AS pcount,
         sum(x.sum) FILTER (WHERE x.metric_id = mt.util) AS usum, sum(x.count) FILTER (WHERE x.metric_id = mt.util) AS ucount,
         sum(x.sum) FILTER (WHERE x.metric_id = mt.power) AS wsum, sum(x.count) FILTER (WHERE x.metric_id = mt.power) AS wcount,
         min(x.min) FILTER (WHERE x.metric_id = mt.energy) AS emin,
         (max(ARRAY[nexus_ms(x.last_time)::float8, x.last]) FILTER (WHERE x.metric_id = mt.energy))[2] AS elast
  FROM (
    SELECT f.gpu_id, f.metric_id, f.bucket, f.min, f.sum, f.count, f.last_time, f.last_value AS last
    FROM fleet_1m_folded f WHERE f.bucket >= nexus_ts($2) - interval '1 minute' AND f.bucket < nexus_ts($3)
    UNION ALL
    SELECT p.gpu_id, p.metric_id, date_bin('1 minute', p.time, timestamptz 'epoch'), p.value, p.value, 1, p.time, p.value
    FROM samples_pending p
    WHERE date_bin('1 minute', p.time, timestamptz 'epoch') >= nexus_ts($2) - interval '1 minute'
      AND date_bin('1 minute', p.time, timestamptz 'epoch') < nexus_ts($3)
  ) x JOIN g ON g.id = x.gpu_id CROSS JOIN mt
  WHERE x.metric_id IN (mt.prof, mt.util, mt.power, mt.energy) AND (x.bucket >= nexus_ts($2) OR x.metric_id = mt.energy)
  GROUP BY x.gpu_id, x.bucket
), en AS MATERIALIZED (
  -- Per GPU-minute: the utilisation (DCGM_FI_PROF_GR_ENGINE_ACTIVE as a percentage if the GPU
  -- reports it in the range, else DCGM_FI_DEV_GPU_UTIL) and the energy (the counter's increase,
  -- with resets, if the GPU reports it in the range; else average power x 60 s).
  SELECT r.gpu_id, r.bucket,
         CASE WHEN bool_or(r.pcount > 0 AND r.bucket >= nexus_ts($2)) OVER gw THEN r.psum * 100 ELSE r.usum END AS usum,
         CASE WHEN bool_or(r.pcount > 0 AND r.bucket >= nexus_ts($2)) OVER gw THEN r.pcount ELSE r.ucount END::float8 AS ucount,
         CASE WHEN NOT bool_or(r.elast IS NOT NULL AND r.bucket >= nexus_ts($2)) OVER gw THEN r.wsum / r.wcount * 60
              WHEN r.elast IS NOT NULL THEN (r.elast - CASE
                WHEN lag(r.elast) OVER w IS NOT NULL THEN CASE WHEN r.elast < lag(r.elast) OVER w THEN 0 ELSE lag(r.elast) OVER w END
                ELSE coalesce((SELECT CASE WHEN r.elast < f.last_value THEN 0 ELSE f.last_value END FROM fleet_1m_all f
                                 WHERE f.gpu_id = r.gpu_id AND f.metric_id = (SELECT energy FROM mt) AND f.bucket < r.bucket
                                 ORDER BY f.bucket DESC, f.last_time DESC LIMIT 1), r.emin) END) / 1000.0::float8
         END AS joules
  FROM r
  WINDOW gw AS (PARTITION BY r.gpu_id), w AS (PARTITION BY r.gpu_id, r.elast IS NULL ORDER BY r.bucket)
), ms AS (
  -- A MIG GPU's power and energy counter repeat on each of its instances' series: each of the
  -- rows of one physical GPU reporting energy in a minute counts its share of it, once in all.
  SELECT en.gpu_id, en.bucket, count(*) OVER (PARTITION BY g.host_id, g.gpu_index, en.bucket) AS n
  FROM en JOIN g ON g.id = en.gpu_id WHERE g.shared AND en.joules IS NOT NULL
), al AS (
  SELECT a.gpu_id, a.bucket, a.namespace, a.pod,
         count(*) FILTER (WHERE a.pod <> '') OVER (PARTITION BY a.gpu_id, a.bucket) AS k
  FROM gpu_allocations a JOIN g ON g.id = a.gpu_id
  WHERE a.bucket >= nexus_ts($2) AND a.bucket < nexus_ts($3)
), m AS (
  -- A workload's share of a GPU-minute: 1/k of the row's part of its GPU (frac: a MIG instance
  -- is a part of a GPU-hour). Energy is shared 1/k of the row's (already its part of its GPU's).
  SELECT al.gpu_id, al.namespace, al.pod, CASE WHEN al.k = 0 THEN NULL ELSE gr.frac / al.k END AS share,
         CASE WHEN al.k = 0 THEN NULL ELSE 1.0::float8 / al.k END AS eshare, gr.frac,
         en.usum, en.ucount, en.joules / coalesce(ms.n, 1) AS joules
  FROM al JOIN g gr ON gr.id = al.gpu_id
  LEFT JOIN en ON en.gpu_id = al.gpu_id AND en.bucket = al.bucket
  LEFT JOIN ms ON ms.gpu_id = al.gpu_id AND ms.bucket = al.bucket
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
const SLICE = USAGE_SLICE_MS;
const DAY = 86_400_000;

/** The kept tables of usage (migrations 011, 015), and the column each is keyed by. */
const KEPT = {
  usage_1mo: 'month',
  usage_1d: 'day',
  usage_1h: 'hour',
  usage_10m: 'slice',
} as const;

/** The start of the month (UTC) after the one starting at `t`. */
const nextMonth = (t: number): number => {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
};

/** The kept rows of the listed months, days, hours or slices ($2, epoch ms). */
const USAGE_KEPT = (groupBy: UsageGroupBy, table: keyof typeof KEPT): string => `
WITH g AS (${CLUSTER_GPUS})
SELECT ${GROUP_KEYS[groupBy].select}, (m.pod = '') AS unallocated,
       coalesce(sum(m.minutes) FILTER (WHERE m.pod <> ''), 0) AS allocated_minutes,
       sum(m.usum) FILTER (WHERE m.pod <> '') AS usum, sum(m.ucount) FILTER (WHERE m.pod <> '') AS ucount,
       coalesce(sum(m.joules) FILTER (WHERE m.pod <> ''), 0) AS allocated_joules,
       coalesce(sum(m.minutes) FILTER (WHERE m.pod = ''), 0) AS unallocated_minutes,
       coalesce(sum(m.joules) FILTER (WHERE m.pod = ''), 0) AS unallocated_joules
FROM ${table} m JOIN g ON g.id = m.gpu_id
WHERE m.${KEPT[table]} IN (SELECT nexus_ts(t) FROM unnest($2::bigint[]) AS t)
GROUP BY ${GROUP_KEYS[groupBy].group}, (m.pod = '')`;

/** What the usage tables hold of the slices of a range (migration 015). */
interface SliceStates {
  /** Slices marked since they were last computed (an hour marked by an earlier release: all six). */
  readonly marked: ReadonlySet<number>;
  /** Slices computed and not marked: `usage_10m` holds them. */
  readonly kept: ReadonlySet<number>;
  /** Days computed and not marked since: `usage_1d` holds them (if none of their slices is marked). */
  readonly days: ReadonlySet<number>;
  /** Days marked since they were last summed. */
  readonly markedDays: ReadonlySet<number>;
  /** Months computed and not marked since: `usage_1mo` holds them (if none of their days or slices is marked). */
  readonly months: ReadonlySet<number>;
}

async function sliceStates(db: SqlClient, from: number, to: number): Promise<SliceStates> {
  const res = await db.query<{ s: string; marked: boolean }>(
    `SELECT nexus_ms(u.slice)::text AS s, u.marked_at IS NOT NULL AS marked FROM usage_slices u
     WHERE u.slice >= nexus_ts($1) AND u.slice < nexus_ts($2) AND (u.marked_at IS NOT NULL OR u.computed_at IS NOT NULL)`,
    [from, to],
  );
  const marked = new Set<number>();
  const kept = new Set<number>();
  for (const r of res.rows) {
    const s = Number(r.s);
    if (r.marked) marked.add(s);
    else kept.add(s);
  }
  for (const s of marked) kept.delete(s);
  const sums = await db.query<{ t: string; month: boolean; marked: boolean }>(
    `SELECT nexus_ms(day)::text AS t, false AS month, marked_at IS NOT NULL AS marked FROM usage_days
     WHERE day >= nexus_ts($1) AND day < nexus_ts($2) AND (marked_at IS NOT NULL OR computed_at IS NOT NULL)
     UNION ALL
     SELECT nexus_ms(month)::text, true, marked_at IS NOT NULL FROM usage_months
     WHERE month >= nexus_ts($1) AND month < nexus_ts($2) AND (marked_at IS NOT NULL OR computed_at IS NOT NULL)`,
    [from, to],
  );
  const days = new Set<number>();
  const markedDays = new Set<number>();
  const months = new Set<number>();
  for (const r of sums.rows) {
    const t = Number(r.t);
    if (r.month) {
      if (!r.marked) months.add(t);
    } else if (r.marked) markedDays.add(t);
    else days.add(t);
  }
  return { marked, kept, days, markedDays, months };
}

/**
 * Usage over [from, to): its whole months (UTC) from `usage_1mo` where computed and none of their
 * days or slices is marked, its whole days from `usage_1d` where computed and none of their
 * slices is marked, its whole hours from `usage_1h` where none of their slices is marked, its whole
 * slices from `usage_10m` where computed and not marked since, and only the rest (partial slices
 * at the ends, slices marked since: at most ten minutes a statement) from the 1-minute tables;
 * the same figures either way (the conformance suite compares them).
 */
export async function usage(db: SqlClient, q: UsageQuery): Promise<UsageRows> {
  const states = await sliceStates(db, Math.floor(q.from / SLICE) * SLICE, q.to);
  const clean = (from: number, to: number): boolean => {
    for (let s = from; s < to; s += SLICE) if (states.marked.has(s)) return false;
    return true;
  };
  const monthClean = (from: number, to: number): boolean => {
    for (const d of states.markedDays) if (d >= from && d < to) return false;
    return clean(from, to);
  };
  const months: number[] = [];
  const days: number[] = [];
  const hours: number[] = [];
  const slices: number[] = [];
  const minuteRanges: [number, number][] = [];
  for (let t = q.from; t < q.to;) {
    if (states.months.has(t) && nextMonth(t) <= q.to && monthClean(t, nextMonth(t))) {
      months.push(t);
      t = nextMonth(t);
    } else if (t % DAY === 0 && t + DAY <= q.to && states.days.has(t) && clean(t, t + DAY)) {
      days.push(t);
      t += DAY;
    } else if (t % HOUR === 0 && t + HOUR <= q.to && clean(t, t + HOUR)) {
      hours.push(t);
      t += HOUR;
    } else if (t % SLICE === 0 && t + SLICE <= q.to && states.kept.has(t)) {
      slices.push(t);
      t += SLICE;
    } else {
      const end = Math.min(q.to, Math.floor(t / SLICE) * SLICE + SLICE);
      minuteRanges.push([t, end]);
      t = end;
    }
  }
  const rows: UsageSqlRow[] = [];
  if (months.length > 0)
    rows.push(
      ...(await db.query<UsageSqlRow>(USAGE_KEPT(q.groupBy, 'usage_1mo'), [q.cluster, months]))
        .rows,
    );
  if (days.length > 0)
    rows.push(
      ...(await db.query<UsageSqlRow>(USAGE_KEPT(q.groupBy, 'usage_1d'), [q.cluster, days])).rows,
    );
  if (hours.length > 0)
    rows.push(
      ...(await db.query<UsageSqlRow>(USAGE_KEPT(q.groupBy, 'usage_1h'), [q.cluster, hours])).rows,
    );
  if (slices.length > 0)
    rows.push(
      ...(await db.query<UsageSqlRow>(USAGE_KEPT(q.groupBy, 'usage_10m'), [q.cluster, slices]))
        .rows,
    );
  // From the minutes a slice at a time: the statement's cost grows faster than its range (a
  // whole hour of 100,000 GPUs in one: 68 s; by the slice: 6 x 5.8 s).
  for (const [from, to] of minuteRanges)
    rows.push(...(await db.query<UsageSqlRow>(USAGE(q.groupBy), [q.cluster, from, to])).rows);
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

const USAGE_LOCK = "hashtext('nexus_usage_hours')";

/**
 * Merges a slice's highest utilisation readings ([$1, $2), epoch ms) into `util_peaks` (migration
 * 016), per GPU row and utilisation metric, from the folded minutes and the readings still
 * pending: the earlier slices it reaches or passes are hidden (deleted), and it is kept unless a
 * later slice reached it. Run again for a slice (a late reading), it only raises its own maximum.
 */
const MERGE_PEAKS = `
WITH mt AS (SELECT id FROM metrics WHERE name IN ('${PROF}', '${UTIL}')
), n AS MATERIALIZED (
  SELECT x.gpu_id, x.metric_id, max(x.max) AS mx FROM (
    SELECT f.gpu_id, f.metric_id, f.max FROM fleet_1m_folded f
    WHERE f.bucket >= nexus_ts($1) AND f.bucket < nexus_ts($2) AND f.metric_id IN (SELECT id FROM mt)
    UNION ALL
    SELECT p.gpu_id, p.metric_id, p.value FROM samples_pending p
    WHERE p.time >= nexus_ts($1) AND p.time < nexus_ts($2) AND p.metric_id IN (SELECT id FROM mt)
  ) x GROUP BY x.gpu_id, x.metric_id
), hidden AS (
  DELETE FROM util_peaks u USING n
  WHERE u.gpu_id = n.gpu_id AND u.metric_id = n.metric_id AND u.slice < nexus_ts($1) AND u.max <= n.mx
)
INSERT INTO util_peaks (gpu_id, metric_id, slice, max)
SELECT n.gpu_id, n.metric_id, nexus_ts($1), n.mx FROM n
WHERE NOT EXISTS (SELECT FROM util_peaks u WHERE u.gpu_id = n.gpu_id AND u.metric_id = n.metric_id
                    AND u.slice > nexus_ts($1) AND u.max >= n.mx)
ON CONFLICT (gpu_id, metric_id, slice) DO UPDATE SET max = greatest(util_peaks.max, excluded.max)`;

/**
 * The usage job's last turn: the newest slice computed and not merged into `util_peaks` since
 * (computed before migration 016, or by an earlier release's job during a rolling upgrade) and not
 * marked since, merged now, so that idle reports stop reading its minutes.
 */
async function mergeUnmerged(tx: SqlClient): Promise<'peaks' | undefined> {
  const due = await tx.query<{ s: string }>(
    `UPDATE usage_slices SET peaks_at = clock_timestamp()
     WHERE slice = (SELECT slice FROM usage_slices
                    WHERE (peaks_at IS NULL OR peaks_at < computed_at) AND marked_at IS NULL
                    ORDER BY slice DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING nexus_ms(slice)::text AS s`,
  );
  const row = due.rows[0];
  if (row === undefined) return undefined;
  const s = Number(row.s);
  await reportPlanning(tx);
  await tx.query(MERGE_PEAKS, [s, s + SLICE]);
  return 'peaks';
}

/**
 * The usage job (migrations 015, 016): recomputes the slices marked in `usage_slices` whose mark
 * is at least USAGE_SETTLE_MS old, oldest first, each from the 1-minute tables for every cluster
 * (and merges its highest utilisation into `util_peaks`, for the idle report), in a
 * transaction of its own holding an advisory lock (one session at a time; another returns
 * `busy`), until none is due, `maxSlices` are done or `budgetMs` has passed. A slice's mark is
 * cleared in its transaction before it is read: a write that marks it meanwhile waits for the
 * transaction, then marks it again. Once none of an hour's six slices is marked, the hour's
 * `usage_1h` rows are rewritten as their sum; a slice never computed (an hour computed whole
 * before migration 015) is marked first, so that the sum misses nothing. Rewriting an hour marks
 * its day (UTC), and once no slice is due, a marked day none of whose slices is marked is summed
 * from its hours into `usage_1d`, a day a transaction; summing a day marks its month, summed from
 * its days into `usage_1mo` once no day or slice of it is marked. Last, when nothing else is due,
 * a slice computed before migration 016 is merged into `util_peaks`, newest first.
 */
export async function rollUpUsage(
  db: Database,
  settleMs = USAGE_SETTLE_MS,
  maxSlices = 144,
  budgetMs = 30_000,
): Promise<UsageRollUp> {
  const started = Date.now();
  let slices = 0;
  let hours = 0;
  let days = 0;
  let months = 0;
  let peaks = 0;
  while (slices + peaks < maxSlices && Date.now() - started < budgetMs) {
    const one = await db.transaction(async (tx) => {
      const lock = await tx.query<{ got: boolean }>(
        `SELECT pg_try_advisory_xact_lock(${USAGE_LOCK}) AS got`,
      );
      if (lock.rows[0]?.got !== true) return 'busy' as const;
      // Hours marked by an earlier release's collectors (schema 11): their six slices were marked
      // as each mark was made (migration 016's trigger); the marks themselves are done with.
      await tx.query('DELETE FROM usage_dirty');
      const due = await tx.query<{ s: string }>(
        `UPDATE usage_slices SET marked_at = NULL, computed_at = c.t, peaks_at = c.t
         FROM (SELECT clock_timestamp() AS t) c
         WHERE slice = (SELECT slice FROM usage_slices
                        WHERE marked_at <= clock_timestamp() - make_interval(secs => $1::float8 / 1000)
                        ORDER BY slice LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING nexus_ms(slice)::text AS s`,
        [settleMs],
      );
      const row = due.rows[0];
      if (row === undefined)
        return (
          (await sumDue(tx, 'day')) ??
          (await sumDue(tx, 'month')) ??
          (await mergeUnmerged(tx)) ??
          ('none' as const)
        );
      const s = Number(row.s);
      await reportPlanning(tx);
      await tx.query(MERGE_PEAKS, [s, s + SLICE]);
      await tx.query('DELETE FROM usage_10m WHERE slice = nexus_ts($1)', [s]);
      const clusters = await tx.query<{ name: string }>('SELECT name FROM clusters ORDER BY name');
      for (const c of clusters.rows) {
        await tx.query(
          `INSERT INTO usage_10m (gpu_id, slice, namespace, pod, minutes, usum, ucount, joules)
           SELECT x.gpu_id, nexus_ts($2), x.namespace, x.pod,
                  CASE WHEN x.unallocated THEN x.unallocated_minutes ELSE x.allocated_minutes END,
                  x.usum, x.ucount,
                  CASE WHEN x.unallocated THEN x.unallocated_joules ELSE x.allocated_joules END
           FROM (${USAGE('row')}) x`,
          [c.name, s, s + SLICE],
        );
      }
      // The hour: each of its slices known (those past and never computed marked now: an hour
      // computed whole before schema 15 has readings in them; a slice not begun yet has none, and
      // its first write marks it), and its sum once none is marked.
      const h = Math.floor(s / HOUR) * HOUR;
      await tx.query(
        `INSERT INTO usage_slices (slice, marked_at)
         SELECT t, timestamptz 'epoch'
         FROM generate_series(nexus_ts($1), nexus_ts($1) + interval '50 minutes', interval '10 minutes') AS t
         WHERE t <= clock_timestamp()
         ON CONFLICT (slice) DO NOTHING`,
        [h],
      );
      const open = await tx.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM usage_slices
         WHERE slice >= nexus_ts($1) AND slice < nexus_ts($1) + interval '1 hour' AND marked_at IS NOT NULL`,
        [h],
      );
      if ((open.rows[0]?.n ?? 0) > 0) return 'slice' as const;
      await rewriteSum(tx, 'hour', h);
      return 'hour' as const;
    });
    if (one === 'busy')
      return { slices, hours, days, months, peaks, busy: slices + days + months + peaks === 0 };
    if (one === 'none') break;
    if (one === 'day') days++;
    else if (one === 'month') months++;
    else if (one === 'peaks') peaks++;
    else slices++;
    if (one === 'hour') hours++;
  }
  return { slices, hours, days, months, peaks, busy: false };
}

/**
 * The sums kept above the slices (migrations 011, 015): each level's table and key, the level it
 * is summed from, its end (days and months are UTC's: 24 hours, and `nexus_month_end`, whatever
 * the session's time zone), and the level above it that a rewrite marks (its marks table).
 */
const SUMS = {
  hour: {
    table: 'usage_1h',
    from: 'usage_10m',
    fromKey: 'slice',
    end: (t: string) => `${t} + interval '1 hour'`,
    marks: undefined,
    up: 'day',
  },
  day: {
    table: 'usage_1d',
    from: 'usage_1h',
    fromKey: 'hour',
    end: (t: string) => `${t} + interval '24 hours'`,
    marks: 'usage_days',
    up: 'month',
  },
  month: {
    table: 'usage_1mo',
    from: 'usage_1d',
    fromKey: 'day',
    end: (t: string) => `nexus_month_end(${t})`,
    marks: 'usage_months',
    up: undefined,
  },
} as const;

type SumLevel = keyof typeof SUMS;

/** The start of the day or month holding `t` (epoch ms, $1), as SQL. */
const START: Record<'day' | 'month', string> = {
  day: "date_bin('1 day', nexus_ts($1), timestamptz 'epoch')",
  month: "date_trunc('month', nexus_ts($1), 'UTC')",
};

/**
 * Rewrites the `level` sum starting at `t` from the level below it, and marks the level above
 * (the hour's day, the day's month) for its own sum.
 */
async function rewriteSum(tx: SqlClient, level: SumLevel, t: number): Promise<void> {
  const l = SUMS[level];
  await tx.query(`DELETE FROM ${l.table} WHERE ${level} = nexus_ts($1)`, [t]);
  if (l.up !== undefined) {
    const up = SUMS[l.up];
    await tx.query(
      `INSERT INTO ${up.marks} (${l.up}, marked_at) VALUES (${START[l.up]}, clock_timestamp())
       ON CONFLICT (${l.up}) DO UPDATE SET marked_at = excluded.marked_at`,
      [t],
    );
  }
  await tx.query(
    `INSERT INTO ${l.table} (gpu_id, ${level}, namespace, pod, minutes, usum, ucount, joules)
     SELECT gpu_id, nexus_ts($1), namespace, pod, sum(minutes), sum(usum), sum(ucount), sum(joules)
     FROM ${l.from} WHERE ${l.fromKey} >= nexus_ts($1) AND ${l.fromKey} < ${l.end('nexus_ts($1)')}
     GROUP BY gpu_id, namespace, pod`,
    [t],
  );
}

/**
 * The usage job's turn when no slice is due: the oldest day marked since an hour of it was
 * rewritten, none of whose slices is marked; else the oldest month marked since a day of it was
 * summed, none of whose days or slices is marked. Summed from the level below.
 */
async function sumDue(tx: SqlClient, level: 'day' | 'month'): Promise<'day' | 'month' | undefined> {
  const l = SUMS[level];
  const days =
    level === 'month'
      ? `AND NOT EXISTS (SELECT FROM usage_days d WHERE d.marked_at IS NOT NULL
                           AND d.day >= m.${level} AND d.day < ${l.end(`m.${level}`)})`
      : '';
  const due = await tx.query<{ t: string }>(
    `UPDATE ${l.marks} SET marked_at = NULL, computed_at = clock_timestamp()
     WHERE ${level} = (SELECT m.${level} FROM ${l.marks} m
                       WHERE m.marked_at IS NOT NULL
                         AND NOT EXISTS (SELECT FROM usage_slices u WHERE u.marked_at IS NOT NULL
                                           AND u.slice >= m.${level} AND u.slice < ${l.end(`m.${level}`)})
                         ${days}
                       ORDER BY m.${level} LIMIT 1 FOR UPDATE SKIP LOCKED)
     RETURNING nexus_ms(${level})::text AS t`,
  );
  const row = due.rows[0];
  if (row === undefined) return undefined;
  await rewriteSum(tx, level, Number(row.t));
  return level;
}

/**
 * The report statements and their parameters, for a test to EXPLAIN them as they are planned
 * (test/integration/store-postgres.test.ts: no JIT).
 */
export const REPORT_STATEMENTS: Readonly<Record<'idle' | 'usage', string>> = {
  idle: IDLE, // $1 cluster, $2 utilisation %, $3 idle for (ms)
  usage: USAGE('row'), // $1 cluster, $2 from (ms), $3 to (ms)
};
