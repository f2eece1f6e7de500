-- Nexus schema 9: what the fleet features (docs/fleet.md: idle GPUs, usage and showback) read,
-- kept past the sealing job. The sealing job replaces a window's rows of `samples_1m` by
-- compressed chunks, which SQL cannot aggregate; these two narrow tables stay queryable for as
-- long as the rollup is kept (ROLLUP_RETENTION_DAYS), so a month of a fleet is one statement.

-- Allocation minutes: one row per GPU, 1-minute bucket and (namespace, pod) of the readings of
-- that minute that carry a pod; pod '' (namespace '') marks a minute observed with a reading
-- that carries none. Written by the collector with each batch (ON CONFLICT DO NOTHING: a
-- redelivered batch adds nothing).
CREATE TABLE gpu_allocations (
  gpu_id     integer NOT NULL,
  bucket     timestamptz NOT NULL,
  namespace  text NOT NULL,
  pod        text NOT NULL,
  PRIMARY KEY (gpu_id, bucket, namespace, pod)
);
CREATE INDEX gpu_allocations_bucket ON gpu_allocations (bucket);

-- The 1-minute rollup (as samples_1m: min, max, sum, count and last) of the metrics the fleet
-- features read: utilisation (DCGM_FI_PROF_GR_ENGINE_ACTIVE, DCGM_FI_DEV_GPU_UTIL), power
-- (DCGM_FI_DEV_POWER_USAGE) and the energy counter (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION).
-- Folded in the same statement as samples_1m, from exactly the rows inserted.
CREATE TABLE fleet_1m (
  bucket      timestamptz NOT NULL,
  gpu_id      integer NOT NULL,
  metric_id   smallint NOT NULL,
  min         double precision NOT NULL,
  max         double precision NOT NULL,
  sum         double precision NOT NULL,
  count       integer NOT NULL,
  last_time   timestamptz NOT NULL,
  last_value  double precision NOT NULL,
  PRIMARY KEY (gpu_id, metric_id, bucket)
);
CREATE INDEX fleet_1m_bucket ON fleet_1m (bucket);

-- Folded and pending (schema 2) partial aggregates of those metrics, for readers.
CREATE VIEW fleet_1m_all AS
  SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM fleet_1m
  UNION ALL
  SELECT date_bin('1 minute', p.time, timestamptz 'epoch'), p.gpu_id, p.metric_id, p.value, p.value, p.value, 1, p.time, p.value
  FROM samples_pending p
  WHERE p.metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                             'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'));

-- What the readings written so far would have put in fleet_1m (an upgrade keeps the history
-- the hot rollup still holds; sealed windows before this migration are not carried over).
INSERT INTO fleet_1m SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM samples_1m
WHERE metric_id IN (SELECT id FROM metrics WHERE name IN ('DCGM_FI_PROF_GR_ENGINE_ACTIVE', 'DCGM_FI_DEV_GPU_UTIL',
                                                        'DCGM_FI_DEV_POWER_USAGE', 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION'));
