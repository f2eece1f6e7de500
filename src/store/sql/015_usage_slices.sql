-- Nexus schema 15: usage kept by the 10-minute slice, so no read and no job computes more than
-- ten minutes of a fleet's minutes at a time, and by the day and the month, so that a month is
-- read from a row per GPU and workload (docs/fleet.md, "Usage and showback"). Schema 11
-- recomputed a whole hour from the 1-minute tables whenever a write marked it, and readers took
-- the current hour (always marked) from the minutes: at 100,000 GPUs, a full hour of minutes (12
-- million rollup rows, 6 million allocation minutes) took 68-108 s, past the 60 s statement
-- timeout (docs/scaling.md).
--
-- `usage_10m` holds what `usage_1h` holds, per 10-minute slice. `usage_slices` tracks each slice
-- written into: `marked_at` is set by every write into it (and into the minute before it: a
-- counter's first minute depends on the minute before) and cleared by the usage job when it
-- recomputes the slice from the minutes (marks at least 30 s old), which sets `computed_at`. An
-- hour's `usage_1h` rows are the sum of its six slices, rewritten once none is marked and all
-- have been computed. `usage_1d` holds the sum of a day's hours (UTC), recomputed once none of
-- the day's slices is marked after one of its hours was rewritten (`usage_days.marked_at`).
-- Readers take whole days from `usage_1d` when computed and none of their slices is marked, whole
-- hours from `usage_1h` when none of their slices is marked, whole slices from `usage_10m` when
-- computed and not marked, and only the rest (a range's partial slices, the slices marked since)
-- from the minutes. At 100,000 GPUs a day is 2.4 million rows of `usage_1h` and 100,000 of
-- `usage_1d` per workload on each GPU. `usage_1mo` holds the sum of a month's days (UTC), summed
-- the same way once a day of it was (`usage_months`): at 100,000 GPUs, 400 days (the API's
-- longest range) read from the days took 34-45 s.
CREATE TABLE usage_10m (
  gpu_id     integer NOT NULL,
  slice      timestamptz NOT NULL,
  namespace  text NOT NULL,
  pod        text NOT NULL,
  minutes    double precision NOT NULL,
  usum       double precision,
  ucount     double precision,
  joules     double precision NOT NULL,
  PRIMARY KEY (slice, gpu_id, namespace, pod)
);

CREATE TABLE usage_slices (
  slice        timestamptz PRIMARY KEY,
  marked_at    timestamptz,
  computed_at  timestamptz
);
CREATE INDEX usage_slices_marked ON usage_slices (marked_at) WHERE marked_at IS NOT NULL;

CREATE TABLE usage_1d (
  gpu_id     integer NOT NULL,
  day        timestamptz NOT NULL,
  namespace  text NOT NULL,
  pod        text NOT NULL,
  minutes    double precision NOT NULL,
  usum       double precision,
  ucount     double precision,
  joules     double precision NOT NULL,
  PRIMARY KEY (day, gpu_id, namespace, pod)
);

CREATE TABLE usage_days (
  day          timestamptz PRIMARY KEY,
  marked_at    timestamptz,
  computed_at  timestamptz
);

-- The end of the month (UTC) starting at `m`, whatever the session's time zone (days and months
-- of usage are UTC's; `timestamptz + interval '1 month'` counts in the session's zone).
CREATE FUNCTION nexus_month_end(m timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ((m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
$$;

CREATE TABLE usage_1mo (
  gpu_id     integer NOT NULL,
  month      timestamptz NOT NULL,
  namespace  text NOT NULL,
  pod        text NOT NULL,
  minutes    double precision NOT NULL,
  usum       double precision,
  ucount     double precision,
  joules     double precision NOT NULL,
  PRIMARY KEY (month, gpu_id, namespace, pod)
);

CREATE TABLE usage_months (
  month        timestamptz PRIMARY KEY,
  marked_at    timestamptz,
  computed_at  timestamptz
);

-- The days computed by the hour before: summed by the usage job, oldest first (and their months
-- after them).
INSERT INTO usage_days (day, marked_at)
SELECT DISTINCT date_bin('1 day', hour, timestamptz 'epoch'), timestamptz 'epoch' FROM usage_1h;

-- The hours marked for the schema 11 job become their six slices. An earlier release's collector,
-- running beside this one during an upgrade, still marks hours in `usage_dirty`: the usage job
-- turns those into slices as well, and readers treat an hour marked there as marked whole.
INSERT INTO usage_slices (slice, marked_at)
SELECT d.hour + make_interval(mins => 10 * k), d.marked_at
FROM usage_dirty d CROSS JOIN generate_series(0, 5) AS k
ON CONFLICT (slice) DO NOTHING;
DELETE FROM usage_dirty;
