import type { Database, RetireResult } from './types.js';

/** Key of the advisory lock that makes the retirement job one session at a time. */
const RETIRE_LOCK = "hashtext('nexus_retire')";

/**
 * A SQL number of seconds as people say it: "40 s", "14 min", "2 h 5 min", "1 d 2 h" (as the
 * dashboard's formatSpan does). `seconds` is an expression, written here more than once.
 */
export function spoken(seconds: string): string {
  const s = `floor(${seconds})::bigint`;
  return `concat_ws(' ',
    CASE WHEN ${s} >= 86400 THEN ${s} / 86400 || ' d' END,
    CASE WHEN ${s} % 86400 >= 3600 THEN ${s} % 86400 / 3600 || ' h' END,
    CASE WHEN ${s} < 86400 AND ${s} % 3600 >= 60 THEN ${s} % 3600 / 60 || ' min' END,
    CASE WHEN ${s} < 60 THEN ${s} || ' s' END)`;
}

/**
 * The retirement job (docs/fleet.md, "Retired GPU" and "Stopped and reappeared"): in one
 * statement, GPUs whose last reading is more than `staleAfterMs` older than their cluster's newest
 * reading are marked retired (`gpus.retired_at` = that last reading) with a `stopped` event; a
 * retired GPU with readings newer than its mark, and no longer stale, is marked live again with a
 * `reappeared` event at its first reading after the mark. Data time (the readings' instants), not
 * the wall clock. Last readings come from `samples_latest` (on PostgreSQL as of the last rollup
 * job run).
 */
const RETIRE = `
WITH last AS (
  SELECT l.gpu_id, h.cluster_id, max(l.time) AS t
  FROM samples_latest l JOIN gpus g ON g.id = l.gpu_id JOIN hosts h ON h.id = g.host_id
  GROUP BY l.gpu_id, h.cluster_id
), newest AS (
  SELECT cluster_id, max(t) AS t FROM last GROUP BY cluster_id
), judged AS (
  SELECT last.gpu_id, last.t, newest.t AS newest,
         last.t < newest.t - make_interval(secs => $1::float8 / 1000) AS stale
  FROM last JOIN newest USING (cluster_id)
), stopped AS (
  UPDATE gpus g SET retired_at = j.t FROM judged j
  WHERE g.id = j.gpu_id AND j.stale AND g.retired_at IS NULL
  RETURNING g.id, j.t, j.newest
), back AS (
  UPDATE gpus g SET retired_at = NULL FROM judged j, gpus old
  WHERE g.id = j.gpu_id AND old.id = g.id AND NOT j.stale AND g.retired_at IS NOT NULL
    AND j.t > g.retired_at
  RETURNING g.id, j.t, old.retired_at AS since,
    coalesce((SELECT min(s.time) FROM samples s WHERE s.gpu_id = g.id AND s.time > old.retired_at), j.t) AS first
), ev AS (
  INSERT INTO gpu_events (gpu_id, type, time, severity, message, details)
  SELECT id, 'stopped', t, 'warning',
         'Stopped reporting: no reading for more than ' || ${spoken('$1::float8 / 1000')} || ' (STALE_AFTER) while its cluster went on',
         jsonb_build_object('last_seen', to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                            'cluster_newest', to_char(newest AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                            'stale_after_seconds', $1::float8 / 1000)
  FROM stopped
  UNION ALL
  SELECT id, 'reappeared', first, 'info', 'Reporting again after ' || ${spoken('gap')} || ' without readings',
         jsonb_build_object('retired_since', to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                            'gap_seconds', gap)
  FROM back, LATERAL (SELECT extract(epoch FROM first - since)::float8 AS gap) g
  ORDER BY 1, 3
  ON CONFLICT (gpu_id, type, time) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM stopped)::int AS stopped, (SELECT count(*) FROM back)::int AS reappeared,
       (SELECT count(*) FROM ev)::int AS events`;

export async function retireStale(db: Database, staleAfterMs: number): Promise<RetireResult> {
  return db.transaction(async (tx) => {
    const lock = await tx.query<{ got: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${RETIRE_LOCK}) AS got`,
    );
    if (lock.rows[0]?.got !== true) return { stopped: 0, reappeared: 0, busy: true };
    const res = await tx.query<{ stopped: number; reappeared: number }>(RETIRE, [staleAfterMs]);
    return {
      stopped: res.rows[0]?.stopped ?? 0,
      reappeared: res.rows[0]?.reappeared ?? 0,
      busy: false,
    };
  });
}
