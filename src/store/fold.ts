/**
 * The SQL that folds readings into the 1-minute rollups (migrations 002, 009, 013, 014): the
 * rollup job's and the write path's fold (`FOLD`), and the sealing job's of a window's pending
 * readings of the fleet metrics (`FOLD_FLEET`).
 */
import { FLEET_METRICS } from './allocations.js';

/** The metrics kept in `fleet_1m` (migration 009), as an SQL list. */
const FLEET_METRIC_LIST = FLEET_METRICS.map((m) => `'${m}'`).join(', ');

/** How a folded row (alias `r`) takes in `excluded`: min, max, sum, count and last. */
const COMBINE = `min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum, count = r.count + excluded.count,
    last_value = CASE WHEN excluded.last_time >= r.last_time THEN excluded.last_value ELSE r.last_value END,
    last_time = greatest(r.last_time, excluded.last_time)`;

/** A minute's partial aggregate of rows (time, gpu_id, metric_id, value), per key. */
const MINUTE_AGGREGATE = `date_bin('1 minute', time, timestamptz 'epoch') AS bucket, gpu_id, metric_id,
         min(value) AS min, max(value) AS max, sum(value) AS sum, count(*) AS count, max(time) AS last_time,
         (array_agg(value ORDER BY time DESC))[1] AS last_value`;

/**
 * The CTE `latest`: the newest of rows (time, gpu_id, metric_id, value) per series into
 * `samples_latest`, unless a newer reading is there.
 */
export const LATEST = (rows: string): string => `latest AS (
  INSERT INTO samples_latest AS l (gpu_id, metric_id, time, value)
  SELECT DISTINCT ON (gpu_id, metric_id) gpu_id, metric_id, time, value FROM ${rows}
  ORDER BY gpu_id, metric_id, time DESC
  ON CONFLICT (gpu_id, metric_id) DO UPDATE SET time = excluded.time, value = excluded.value
    WHERE l.time <= excluded.time
  RETURNING 1
)`;

/**
 * Folds rows (`rows`: time, gpu_id, metric_id, value) into the 1-minute rollup and the latest
 * values, as CTEs `rollup` and `latest`. The upserts are sorted by key, so that concurrent
 * statements take row locks in the same order. The fleet metrics' minutes reach `fleet_1m` when
 * their window is sealed (migration 014), not here.
 */
export const FOLD = (rows: string): string => `rollup AS (
  INSERT INTO samples_1m AS r (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
  SELECT ${MINUTE_AGGREGATE}
  FROM ${rows}
  GROUP BY 1, 2, 3 ORDER BY 2, 3, 1
  ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET
    ${COMBINE}
  RETURNING 1
), ${LATEST(rows)}`;

/**
 * The end of a statement whose CTE `rows` (time, gpu_id, metric_id, value) holds readings of a
 * window being sealed: folds those of the fleet metrics into `fleet_1m`, adding to the minutes it
 * holds. The sealing job's, for the window's pending readings, after its rollup rows moved there
 * (migration 014).
 */
export const FOLD_FLEET = (rows: string): string => `, fleet_rows AS (
  SELECT ${MINUTE_AGGREGATE}
  FROM ${rows}
  WHERE metric_id IN (SELECT id FROM metrics WHERE name IN (${FLEET_METRIC_LIST}))
  GROUP BY 1, 2, 3
)
INSERT INTO fleet_1m AS r (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM fleet_rows
ORDER BY gpu_id, metric_id, bucket
ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET
  ${COMBINE}`;
