-- Nexus schema 13: room on every page of the tables the rollup job updates in place, so that an
-- update stays on its page (a HOT update: no new index entry, about half the WAL). A series'
-- row in `samples_1m` is inserted at its first reading of a minute and updated at each later one;
-- its row in `samples_latest` at every reading. Full pages (the default fillfactor of 100) made
-- each of those updates move the row to another page and add an entry to every index: at 100,000
-- GPUs that was most of the rollup job's time (docs/scaling.md). Half of each page is left free:
-- one update of every row of a page fits before the page must be pruned.
--
-- The cost is disk: `samples_latest` holds a row per series, and a `samples_1m` partition lives
-- only until its 2-hour window is sealed into chunks (which this does not change). `fleet_1m`,
-- kept as long as the rollup, keeps full pages. Existing pages keep their rows; new ones are
-- filled to half. Partitions that exist already are left as they are (a sealing job may be
-- dropping one meanwhile): each window after this one gets a new partition.
ALTER TABLE samples_latest SET (fillfactor = 50);

-- Schema 4's function, creating each new `samples_1m` partition with that fillfactor (its body
-- restated whole: a migration cannot amend a function in place).
CREATE OR REPLACE FUNCTION nexus_ensure_window_partitions(instants bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
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
        -- One creator at a time (schema 4 explains).
        IF NOT locked THEN
          PERFORM pg_advisory_xact_lock(hashtext('nexus_create_partitions'));
          locked := true;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_class WHERE relname = name AND relnamespace = current_schema()::regnamespace)
           AND NOT nexus_partition_covers(parent, w) THEN
          EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)%s', name, parent, w,
                         w + interval '2 hours', CASE WHEN parent = 'samples_1m' THEN ' WITH (fillfactor = 50)' ELSE '' END);
          created := created + 1;
        END IF;
      END IF;
    END LOOP;
  END LOOP;
  RETURN created;
END $$;

-- CREATE OR REPLACE resets what schema 6 set (its grants stay): it runs as its owner again.
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION nexus_ensure_window_partitions(bigint[]) SECURITY DEFINER SET search_path = %I, pg_temp',
                 current_schema());
END $$;
