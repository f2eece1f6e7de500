-- Nexus schema 4: storage engine v3. Readings arrive in the hot tier (`samples`, a row per
-- reading, now in partitions of one 2-hour window each) and the sealing job (`nexus compact`,
-- SqlStore.compact) turns every closed window into compressed per-series chunks in
-- `sample_chunks`, then drops the window's hot partitions. docs/storage.md explains the format
-- and the protocol; src/store/chunks/codec.ts encodes and decodes the chunks.
--
-- Safe beside collectors and gateways of schema 3: nothing they use changes shape, and the new
-- partitions are created only where no existing partition covers an instant (the daily
-- `samples_YYYYMMDD` and monthly `samples_1m_YYYYMM` ones stay until they are sealed).

-- One chunk per series (GPU, metric) per 2-hour window, with the window's aggregates beside it:
-- `count`, `min`, `max`, `sum` and the last reading answer coarse queries without decoding.
-- `data` holds the raw readings (codec); once raw retention passes the window and the rollup is
-- kept longer, `data` is replaced by `rollup`, the window's 1-minute aggregates (codec).
CREATE TABLE sample_chunks (
  gpu_id        integer NOT NULL,
  metric_id     smallint NOT NULL,
  window_start  timestamptz NOT NULL,
  count         integer NOT NULL CHECK (count > 0),
  first_time    timestamptz NOT NULL,
  last_time     timestamptz NOT NULL,
  min           double precision NOT NULL,
  max           double precision NOT NULL,
  sum           double precision NOT NULL,
  last_value    double precision NOT NULL,
  data          bytea,
  rollup        bytea,
  PRIMARY KEY (gpu_id, metric_id, window_start),
  CHECK (data IS NOT NULL OR rollup IS NOT NULL)
);
-- The chunks are compressed already: no second compression by TOAST, only out-of-line storage.
ALTER TABLE sample_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE sample_chunks ALTER COLUMN rollup SET STORAGE EXTERNAL;

-- The windows sealed so far. A reading for a sealed window (late, or a redelivery) is checked
-- against its chunk as it is written, stored in the hot tier when new, and merged into the chunk
-- by the next pass of the job.
CREATE TABLE sealed_windows (
  window_start  timestamptz PRIMARY KEY,
  sealed_at     timestamptz NOT NULL DEFAULT now(),
  readings      bigint NOT NULL DEFAULT 0
);

-- Whether some partition of `parent` holds instant `t` (any range: the daily and monthly
-- partitions of schema 3 as well as the 2-hour ones of schema 4).
CREATE FUNCTION nexus_partition_covers(parent text, t timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = parent AND p.relnamespace = current_schema()::regnamespace
      AND (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz <= t
      AND t < (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz)
$$;

-- Creates, if missing, the hot partitions (raw and 1-minute rollup) of the 2-hour window holding
-- each given instant (epoch ms), unless an older partition covers it. Safe to call from many
-- sessions at once. Returns the number of tables created.
CREATE FUNCTION nexus_ensure_window_partitions(instants bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t        timestamptz;
  w        timestamptz;
  parent   text;
  name     text;
  created  integer := 0;
  locked   boolean := false;
BEGIN
  FOREACH w IN ARRAY coalesce((SELECT array_agg(DISTINCT date_bin('2 hours', 'epoch'::timestamptz + i * interval '1 millisecond', timestamptz 'epoch'))
                               FROM unnest(instants) i), '{}')
  LOOP
    FOREACH parent IN ARRAY ARRAY['samples', 'samples_1m'] LOOP
      name := parent || '_' || to_char(w AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24');
      IF to_regclass(name) IS NULL AND NOT nexus_partition_covers(parent, w) THEN
        -- One creator at a time, whatever the windows: CREATE TABLE ... PARTITION OF holds the
        -- parent's ACCESS EXCLUSIVE lock to the end of the transaction, so a lock per partition
        -- would let a call holding the parent wait for another's next partition while that one
        -- waits for the parent (a deadlock). Taken only when something is missing (rarely).
        IF NOT locked THEN
          PERFORM pg_advisory_xact_lock(hashtext('nexus_create_partitions'));
          locked := true;
        END IF;
        -- Re-checked in pg_class, this statement's fresh snapshot: after waiting for the lock,
        -- to_regclass can still answer from this session's catalog cache (schema 1 explains).
        IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = current_schema()::regnamespace)
           AND NOT nexus_partition_covers(parent, w) THEN
          EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', name, parent, w, w + interval '2 hours');
          created := created + 1;
        END IF;
      END IF;
    END LOOP;
  END LOOP;
  RETURN created;
END $$;

-- Schema 3's function, for collectors of that release still running beside this one: they pass
-- the start of each UTC day they write and expect the day covered. Every 2-hour window of it is.
CREATE OR REPLACE FUNCTION nexus_ensure_partitions(instants bigint[]) RETURNS integer
LANGUAGE sql AS $$
  SELECT nexus_ensure_window_partitions(coalesce(array_agg(DISTINCT d.day + w * 7200000), '{}'))
  FROM (SELECT floor(i / 86400000.0)::bigint * 86400000 AS day FROM unnest(instants) i) d,
       generate_series(0, 11) w
$$;

-- The same for writers of schema 4: only for windows not sealed yet (a redelivered batch of a
-- sealed window does not bring its emptied partitions back; a late reading that is new gets its
-- window's partitions from nexus_ensure_window_partitions, as the writer checks it against the
-- chunks).
CREATE FUNCTION nexus_ensure_open_partitions(instants bigint[]) RETURNS integer
LANGUAGE sql AS $$
  SELECT nexus_ensure_window_partitions(coalesce(array_agg(i), '{}')) FROM unnest(instants) i
  WHERE NOT EXISTS (SELECT FROM sealed_windows w
                    WHERE w.window_start = date_bin('2 hours', 'epoch'::timestamptz + i * interval '1 millisecond', timestamptz 'epoch'))
$$;

-- Every partition of the hot tables, with its range: what the sealing job and retention look at.
CREATE VIEW nexus_hot_partitions AS
  SELECT p.relname AS parent, c.relname AS name,
         (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS lower,
         (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
  WHERE p.relname IN ('samples', 'samples_1m') AND p.relnamespace = current_schema()::regnamespace;
