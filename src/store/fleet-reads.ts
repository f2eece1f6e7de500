/**
 * The fleet features' reads (docs/fleet.md): idle GPUs and usage (GPU-hours, utilisation while
 * allocated, energy), each one statement over the allocation minutes (`gpu_allocations`) and the
 * fleet metrics' 1-minute rollup (`fleet_1m_all`), migration 009. No raw reading is read.
 */
import type {
  IdleGpu,
  IdleQuery,
  UsageGroupBy,
  UsageQuery,
  UsageRow,
  UsageRows,
} from './reader.js';
import type { SqlClient } from './types.js';

const PROF = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const POWER = 'DCGM_FI_DEV_POWER_USAGE';
const ENERGY = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION';

const CLUSTER_GPUS = `SELECT gp.id, h.hostname, gp.gpu_index, gp.uuid, gp.model
  FROM clusters c JOIN hosts h ON h.cluster_id = c.id JOIN gpus gp ON gp.host_id = h.id WHERE c.name = $1`;

/**
 * Idle GPUs: the workload of the last reading's minute (the newest pod when several), the
 * utilisation metric over its tenure, the end of the last minute its utilisation reached the
 * threshold, and the GPUs idle for at least `for` up to their last reading.
 */
const IDLE = `
WITH g AS (${CLUSTER_GPUS}
), mt AS (
  SELECT (SELECT id FROM metrics WHERE name = '${PROF}') AS prof, (SELECT id FROM metrics WHERE name = '${UTIL}') AS util
), lt AS (
  SELECT g.*, (SELECT max(l.time) FROM samples_latest_all l WHERE l.gpu_id = g.id) AS last FROM g
), cur AS (
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
), um AS (
  SELECT cur.*, m.id AS metric, m.name AS metric_name, CASE WHEN m.id = mt.prof THEN 100 ELSE 1 END AS scale
  FROM cur CROSS JOIN mt
  JOIN metrics m ON m.id = CASE
    WHEN EXISTS (SELECT FROM fleet_1m_all f WHERE f.gpu_id = cur.id AND f.metric_id = mt.prof
                 AND f.bucket >= date_bin('1 minute', cur.first_seen, timestamptz 'epoch')) THEN mt.prof
    ELSE mt.util END
), b AS (
  SELECT um.*,
    (SELECT max(f.bucket) FROM fleet_1m_all f WHERE f.gpu_id = um.id AND f.metric_id = um.metric
       AND f.bucket >= date_bin('1 minute', um.first_seen, timestamptz 'epoch') AND f.max * um.scale >= $2) AS busy,
    EXISTS (SELECT FROM fleet_1m_all f WHERE f.gpu_id = um.id AND f.metric_id = um.metric
       AND f.bucket >= date_bin('1 minute', um.first_seen, timestamptz 'epoch')) AS measured,
    (SELECT l.value FROM samples_latest_all l WHERE l.gpu_id = um.id AND l.metric_id = um.metric
       ORDER BY l.time DESC LIMIT 1) * um.scale AS util_now
  FROM um
), s AS (
  SELECT b.*, greatest(b.busy + interval '1 minute', b.first_seen) AS idle_since FROM b WHERE b.measured
)
SELECT hostname, gpu_index, uuid, model, namespace, pod, container, metric_name, util_now,
       nexus_ms(idle_since) AS idle_since, nexus_ms(last) AS last
FROM s WHERE nexus_ms(last) - nexus_ms(idle_since) >= $3
ORDER BY nexus_ms(last) - nexus_ms(idle_since) DESC, hostname, gpu_index`;

export async function idleGpus(db: SqlClient, q: IdleQuery): Promise<IdleGpu[]> {
  const res = await db.query<{
    hostname: string;
    gpu_index: number;
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

const GROUP_KEYS: Record<UsageGroupBy, { select: string; group: string }> = {
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
const USAGE = (groupBy: UsageGroupBy): string => `
WITH g AS (${CLUSTER_GPUS}
), mt AS (
  SELECT max(id) FILTER (WHERE name = '${PROF}') AS prof, max(id) FILTER (WHERE name = '${UTIL}') AS util,
         max(id) FILTER (WHERE name = '${POWER}') AS power, max(id) FILTER (WHERE name = '${ENERGY}') AS energy
  FROM metrics
), r AS (
  SELECT f.gpu_id, f.metric_id, f.bucket, min(f.min) AS min, sum(f.sum) AS sum, sum(f.count) AS count,
         (array_agg(f.last_value ORDER BY f.last_time DESC))[1] AS last
  FROM fleet_1m_all f JOIN g ON g.id = f.gpu_id
  WHERE f.bucket >= nexus_ts($2) AND f.bucket < nexus_ts($3)
  GROUP BY 1, 2, 3
), has AS (
  SELECT r.gpu_id, coalesce(bool_or(r.metric_id = mt.prof), false) AS prof,
         coalesce(bool_or(r.metric_id = mt.energy), false) AS counter
  FROM r CROSS JOIN mt GROUP BY r.gpu_id
), ctr AS (
  SELECT r.gpu_id, r.bucket, r.min, r.last,
         coalesce(lag(r.last) OVER (PARTITION BY r.gpu_id ORDER BY r.bucket),
                  (SELECT f.last_value FROM fleet_1m_all f WHERE f.gpu_id = r.gpu_id AND f.metric_id = r.metric_id
                     AND f.bucket < nexus_ts($2) ORDER BY f.bucket DESC, f.last_time DESC LIMIT 1)) AS prev
  FROM r CROSS JOIN mt WHERE r.metric_id = mt.energy
), en AS (
  SELECT gpu_id, bucket,
         (CASE WHEN prev IS NULL THEN last - min WHEN last < prev THEN last ELSE last - prev END) / 1000.0::float8 AS joules
  FROM ctr
  UNION ALL
  SELECT r.gpu_id, r.bucket, r.sum / r.count * 60
  FROM r JOIN has ON has.gpu_id = r.gpu_id CROSS JOIN mt WHERE r.metric_id = mt.power AND NOT has.counter
), ut AS (
  SELECT r.gpu_id, r.bucket, r.sum * CASE WHEN has.prof THEN 100 ELSE 1 END AS usum, r.count::float8 AS ucount
  FROM r JOIN has ON has.gpu_id = r.gpu_id CROSS JOIN mt
  WHERE r.metric_id = CASE WHEN has.prof THEN mt.prof ELSE mt.util END
), al AS (
  SELECT a.gpu_id, a.bucket, a.namespace, a.pod,
         count(*) FILTER (WHERE a.pod <> '') OVER (PARTITION BY a.gpu_id, a.bucket) AS k
  FROM gpu_allocations a JOIN g ON g.id = a.gpu_id
  WHERE a.bucket >= nexus_ts($2) AND a.bucket < nexus_ts($3)
), m AS (
  SELECT al.gpu_id, al.namespace, al.pod, CASE WHEN al.k = 0 THEN NULL ELSE 1.0::float8 / al.k END AS share,
         ut.usum, ut.ucount, en.joules
  FROM al
  LEFT JOIN ut ON ut.gpu_id = al.gpu_id AND ut.bucket = al.bucket
  LEFT JOIN en ON en.gpu_id = al.gpu_id AND en.bucket = al.bucket
  WHERE al.pod <> '' OR al.k = 0
)
SELECT ${GROUP_KEYS[groupBy].select}, (m.share IS NULL) AS unallocated,
       coalesce(sum(m.share), 0) AS allocated_minutes,
       sum(m.share * m.usum) AS usum, sum(m.share * m.ucount) AS ucount,
       coalesce(sum(m.share * m.joules), 0) AS allocated_joules,
       count(*) FILTER (WHERE m.share IS NULL)::int AS unallocated_minutes,
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

export async function usage(db: SqlClient, q: UsageQuery): Promise<UsageRows> {
  const res = await db.query<UsageSqlRow>(USAGE(q.groupBy), [q.cluster, q.from, q.to]);
  const groups = new Map<string, UsageRow>();
  let unallocatedMinutes = 0;
  let unallocatedJoules = 0;
  const byWorkload = q.groupBy === 'namespace' || q.groupBy === 'pod';
  for (const r of res.rows) {
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
