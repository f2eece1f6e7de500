-- Nexus schema 11: usage by the hour, so a month of a fleet is a few thousand rows per GPU
-- instead of its minutes (docs/fleet.md, "Usage and showback"). `usage_1h` holds, per GPU row,
-- hour and workload (namespace, pod; '' and '' for the minutes observed without one), what the
-- per-minute computation gives for that hour: the workload's minutes (its shares), the
-- share-weighted utilisation sum and count, and its energy. The collectors' fleet job recomputes
-- an hour from the 1-minute tables once the hour is marked in `usage_dirty` (by every write into
-- it, and into the hour before: a counter's first minute depends on the minute before) and the
-- mark is 30 s old; readers take the hours not marked from here and the others (and the range's
-- partial hours) from the minutes.
CREATE TABLE usage_1h (
  gpu_id     integer NOT NULL,
  hour       timestamptz NOT NULL,
  namespace  text NOT NULL,
  pod        text NOT NULL,
  minutes    double precision NOT NULL,
  usum       double precision,
  ucount     double precision,
  joules     double precision NOT NULL,
  PRIMARY KEY (hour, gpu_id, namespace, pod)
);

CREATE TABLE usage_dirty (
  hour       timestamptz PRIMARY KEY,
  marked_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- What was written before this migration: every hour with allocation minutes is to be computed.
INSERT INTO usage_dirty (hour, marked_at)
SELECT DISTINCT date_bin('1 hour', bucket, timestamptz 'epoch'), timestamptz 'epoch' FROM gpu_allocations;
