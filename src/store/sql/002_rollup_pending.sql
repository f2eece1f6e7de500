-- Nexus schema 2: the latest values and the 1-minute rollup leave the write path.
--
-- A write inserts its new readings into `samples` and, in the same statement, appends the same
-- rows to `samples_pending` (no index, no conflict, no lock shared with other writers). A rollup
-- job (one session at a time, under an advisory lock) moves pending rows into `samples_1m` and
-- `samples_latest` in one transaction: DELETE ... RETURNING feeds the upserts, so each stored
-- reading is folded in exactly once, and a crash on either side loses nothing.
--
-- Readers that must see every committed reading read the `*_all` views, which add the pending
-- rows (as one-reading partial aggregates) to the folded ones. Within one statement the views
-- see a row either still pending or already folded, never both: the move is one transaction.
-- docs/storage.md explains the tables and the job.

CREATE TABLE samples_pending (
  time       timestamptz NOT NULL,
  gpu_id     integer NOT NULL,
  metric_id  smallint NOT NULL,
  value      double precision NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50000);

-- Partial 1-minute aggregates: several rows may share (gpu_id, metric_id, bucket); combine them
-- with min(min), max(max), sum(sum), sum(count) and the last_value of the greatest last_time.
CREATE VIEW samples_1m_all AS
  SELECT bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value FROM samples_1m
  UNION ALL
  SELECT date_bin('1 minute', time, timestamptz 'epoch'), gpu_id, metric_id, value, value, value, 1, time, value
  FROM samples_pending;

-- Candidate latest readings: several rows may share (gpu_id, metric_id); the newest wins.
CREATE VIEW samples_latest_all AS
  SELECT gpu_id, metric_id, time, value FROM samples_latest
  UNION ALL
  SELECT gpu_id, metric_id, time, value FROM samples_pending;
