-- Nexus schema 1: dimensions, the narrow samples table (partitioned by day), latest values, the
-- 1-minute rollup (partitioned by month), and the partition helpers. docs/storage.md explains
-- every table and index.

CREATE TABLE clusters (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text NOT NULL UNIQUE CHECK (name <> ''),
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL
);

CREATE TABLE hosts (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  cluster_id  integer NOT NULL REFERENCES clusters (id),
  hostname    text NOT NULL CHECK (hostname <> ''),
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  UNIQUE (cluster_id, hostname)
);

CREATE TABLE gpus (
  id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  host_id     integer NOT NULL REFERENCES hosts (id),
  gpu_index   smallint NOT NULL CHECK (gpu_index >= 0),
  uuid        text,
  model       text,
  device      text,
  -- Prometheus labels of the GPU's latest reading, without __name__.
  labels      jsonb NOT NULL DEFAULT '{}',
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  UNIQUE (host_id, gpu_index)
);
CREATE INDEX gpus_uuid ON gpus (uuid);

CREATE TABLE metrics (
  id    smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name  text NOT NULL UNIQUE CHECK (name <> ''),
  unit  text NOT NULL DEFAULT '',
  type  text NOT NULL DEFAULT 'gauge' CHECK (type IN ('gauge', 'counter')),
  help  text NOT NULL DEFAULT ''
);

-- Which Kubernetes workloads a GPU served, and when (first and last reading seen with them).
CREATE TABLE gpu_workloads (
  gpu_id      integer NOT NULL REFERENCES gpus (id),
  namespace   text NOT NULL DEFAULT '',
  pod         text NOT NULL,
  container   text NOT NULL DEFAULT '',
  first_seen  timestamptz NOT NULL,
  last_seen   timestamptz NOT NULL,
  PRIMARY KEY (gpu_id, namespace, pod, container)
);
CREATE INDEX gpu_workloads_pod ON gpu_workloads (namespace, pod);

-- One row per reading. The primary key is the natural key: a redelivered batch is a no-op, and
-- it serves "one GPU, one metric, a time range" as an index range scan.
CREATE TABLE samples (
  time       timestamptz NOT NULL,
  gpu_id     integer NOT NULL,
  metric_id  smallint NOT NULL,
  value      double precision NOT NULL,
  PRIMARY KEY (gpu_id, metric_id, time)
) PARTITION BY RANGE (time);
-- Fleet-wide time ranges ("everything between two instants"): a tiny BRIN index per partition.
CREATE INDEX samples_time_brin ON samples USING brin (time);

-- The latest reading of every GPU and metric, kept by the collector in the same transaction.
CREATE TABLE samples_latest (
  gpu_id     integer NOT NULL,
  metric_id  smallint NOT NULL,
  time       timestamptz NOT NULL,
  value      double precision NOT NULL,
  PRIMARY KEY (gpu_id, metric_id)
);

-- 1-minute rollup: min, max, sum, count and last reading per GPU, metric and minute
-- (avg = sum / count).
CREATE TABLE samples_1m (
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
) PARTITION BY RANGE (bucket);
-- Fleet-wide rollup queries ("every GPU's 1-minute average of a metric over a day").
CREATE INDEX samples_1m_metric_bucket ON samples_1m (metric_id, bucket);

-- Creates, if missing, the daily samples partition and the monthly rollup partition holding each
-- given instant (epoch ms). Safe to call from many sessions at once.
CREATE FUNCTION nexus_ensure_partitions(instants bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  t        timestamptz;
  day      timestamptz;
  month    timestamptz;
  name     text;
  created  integer := 0;
BEGIN
  FOREACH t IN ARRAY (SELECT array_agg(DISTINCT 'epoch'::timestamptz + i * interval '1 millisecond') FROM unnest(instants) i)
  LOOP
    day := date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name := 'samples_' || to_char(day AT TIME ZONE 'UTC', 'YYYYMMDD');
    IF to_regclass(name) IS NULL THEN
      PERFORM pg_advisory_xact_lock(hashtext(name));
      -- Re-check in pg_class (this statement's fresh snapshot), not with to_regclass: after waiting
      -- for the lock, to_regclass can still answer from this session's catalog cache, which has not
      -- seen the other session's commit yet, and CREATE TABLE would fail with "already exists".
      IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = current_schema()::regnamespace) THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF samples FOR VALUES FROM (%L) TO (%L)', name, day, day + interval '24 hours');
        created := created + 1;
      END IF;
    END IF;
    month := date_trunc('month', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name := 'samples_1m_' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM');
    IF to_regclass(name) IS NULL THEN
      PERFORM pg_advisory_xact_lock(hashtext(name));
      IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = current_schema()::regnamespace) THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF samples_1m FOR VALUES FROM (%L) TO (%L)', name, month,
          ((month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
        created := created + 1;
      END IF;
    END IF;
  END LOOP;
  RETURN created;
END $$;

-- Drops samples partitions that end before `raw_before` and rollup partitions that end before
-- `rollup_before` (NULL: keep). Returns the dropped tables.
CREATE FUNCTION nexus_drop_partitions(raw_before timestamptz, rollup_before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT c.relname AS name, p.relname AS parent,
           (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname IN ('samples', 'samples_1m')
  LOOP
    IF (r.parent = 'samples' AND raw_before IS NOT NULL AND r.upper <= raw_before)
       OR (r.parent = 'samples_1m' AND rollup_before IS NOT NULL AND r.upper <= rollup_before) THEN
      EXECUTE format('DROP TABLE %I', r.name);
      RETURN NEXT r.name;
    END IF;
  END LOOP;
END $$;

-- Epoch milliseconds <-> timestamptz, exactly (inlined by the planner).
CREATE FUNCTION nexus_ts(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'epoch'::timestamptz + ms * interval '1 millisecond' $$;

CREATE FUNCTION nexus_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT floor(extract(epoch FROM t) * 1000)::bigint $$;
