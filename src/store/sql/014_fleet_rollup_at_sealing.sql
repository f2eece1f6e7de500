-- Nexus schema 14: `fleet_1m` (schema 9) is written by the sealing job, once per window, instead
-- of by the rollup job at every reading. Until its 2-hour window is sealed, a fleet metric's
-- minute is in `samples_1m` like any other metric's; sealing moves the window's rows of the fleet
-- metrics from `samples_1m` to `fleet_1m` in the transaction that replaces the rest by chunks. The
-- rollup job had upserted every reading of a fleet metric into `fleet_1m` as well as into
-- `samples_1m`: at 100,000 GPUs, where nearly every reading is its series' only one in its minute,
-- that was about half of the job's time (docs/scaling.md), and a table kept as long as the rollup
-- took an update that moves the row and adds index entries for most readings. It is now written
-- in bulk, one row per GPU, metric and minute, and never updated except by a late reading.
--
-- Readers see both through `fleet_1m_folded` (below). A window sealed with late readings after it
-- has a minute in both tables until the next sealing pass folds them together: readers that need
-- one row per minute combine the rows of a key (src/store/fleet-reads.ts).

-- The fleet metrics' rows of windows not sealed yet are in `samples_1m` as well (the rollup job
-- folded both in one statement): keep those, drop the copies.
DELETE FROM fleet_1m f
WHERE NOT EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', f.bucket, timestamptz 'epoch'));

-- Late readings of a sealed window folded before this migration are in `fleet_1m` already, and
-- in `samples_1m` until the window's next sealing pass, which would now add them to `fleet_1m`
-- again: their fleet-metric rows leave `samples_1m` here. Those readings stay in `samples`, and
-- that pass merges them into the window's chunks (which then answer for them, as for the rest of
-- the window).
DELETE FROM samples_1m s
WHERE s.metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                          'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'))
  AND EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', s.bucket, timestamptz 'epoch'));

-- Moves a sealed window's fleet-metric minutes from `samples_1m` to `fleet_1m` as the sealing job
-- deletes them (src/store/compactor.ts: the window's rollup rows go in the transaction that seals
-- it), whichever release's sealing job it is. A window sealed for the first time replaces what
-- `fleet_1m` holds of it (only an earlier release's rollup job, running beside this one during an
-- upgrade, writes there before sealing, and samples_1m holds those readings too); one sealed
-- again (late readings) combines with it. Statement-level, over the deleted rows at once.
CREATE FUNCTION nexus_fleet_rollup_sealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM fleet_1m f USING gone g
  WHERE f.gpu_id = g.gpu_id AND f.metric_id = g.metric_id AND f.bucket = g.bucket
    AND NOT EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', g.bucket, timestamptz 'epoch'));
  INSERT INTO fleet_1m AS r (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
  SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM gone
  WHERE metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                          'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'))
  ORDER BY gpu_id, metric_id, bucket
  ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET
    min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum, count = r.count + excluded.count,
    last_value = CASE WHEN excluded.last_time >= r.last_time THEN excluded.last_value ELSE r.last_value END,
    last_time = greatest(r.last_time, excluded.last_time);
  RETURN NULL;
END
$$;

CREATE TRIGGER samples_1m_fleet_sealed AFTER DELETE ON samples_1m
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION nexus_fleet_rollup_sealed();

-- Folded rows of the fleet metrics: sealed windows from `fleet_1m` (a row of a window not sealed
-- yet is an earlier release's, written beside this one during an upgrade: samples_1m holds its
-- readings), the others from `samples_1m`. A key may have two rows (a late reading of a sealed
-- window, until the next sealing pass).
CREATE VIEW fleet_1m_folded AS
  SELECT f.bucket, f.gpu_id, f.metric_id, f.min, f.max, f.sum, f.count, f.last_time, f.last_value
  FROM fleet_1m f
  WHERE EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', f.bucket, timestamptz 'epoch'))
  UNION ALL
  SELECT s.bucket, s.gpu_id, s.metric_id, s.min, s.max, s.sum, s.count, s.last_time, s.last_value
  FROM samples_1m s
  WHERE s.metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                            'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'));

-- Schema 9's view, over the folded rows of both tables and the pending readings.
CREATE OR REPLACE VIEW fleet_1m_all AS
  SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM fleet_1m_folded
  UNION ALL
  SELECT date_bin('1 minute', p.time, timestamptz 'epoch'), p.gpu_id, p.metric_id, p.value, p.value, p.value, 1, p.time, p.value
  FROM samples_pending p
  WHERE p.metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                             'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'));
