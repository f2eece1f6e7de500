-- Nexus schema 6: partition DDL for a writer that does not own the tables. With the roles of
-- `nexus migrate --create-roles` (docs/operations.md, "PostgreSQL roles and TLS") the collector
-- writes readings but owns nothing, and only a table's owner may create or drop its partitions.
-- So the three functions that do it run as their owner (SECURITY DEFINER), with a search_path of
-- their own (this schema, then pg_temp last: nothing of the caller's can stand in for a table or
-- a function of theirs), and only roles granted EXECUTE may call them (not PUBLIC). Nothing else
-- changes for a deployment that runs everything as one user, the owner.

-- Drops hot partition `name` of `parent` (samples or samples_1m) if it holds no reading, after
-- taking the parent's lock (within the caller's lock_timeout). The sealing job calls it for each
-- partition of a window it sealed. Returns whether it dropped the partition: false when a reading
-- arrived in it since (a late one, which the next pass merges) or it is gone or not a partition
-- of `parent`.
CREATE FUNCTION nexus_drop_empty_partition(parent text, name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  has_rows boolean;
BEGIN
  IF parent NOT IN ('samples', 'samples_1m') THEN
    RETURN false;
  END IF;
  EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', parent);
  IF NOT EXISTS (
    SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = parent AND c.relname = name AND p.relnamespace = current_schema()::regnamespace
  ) THEN
    RETURN false;
  END IF;
  EXECUTE format('SELECT EXISTS (SELECT FROM %I)', name) INTO has_rows;
  IF has_rows THEN
    RETURN false;
  END IF;
  EXECUTE format('DROP TABLE %I', name);
  RETURN true;
END $$;

DO $$
DECLARE
  f text;
BEGIN
  FOREACH f IN ARRAY ARRAY['nexus_ensure_window_partitions(bigint[])',
                           'nexus_drop_partitions(timestamptz, timestamptz)',
                           'nexus_drop_empty_partition(text, text)'] LOOP
    EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp', f, current_schema());
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
  END LOOP;
END $$;
