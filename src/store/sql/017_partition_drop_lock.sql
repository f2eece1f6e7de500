-- Nexus schema 17: dropping an emptied hot partition no longer waits on the whole table.
--
-- Schema 6's nexus_drop_empty_partition took `LOCK TABLE parent`, which also locks every
-- partition of the table, within the sealing job's lock_timeout (500 ms). An autovacuum on any
-- partition (and the sealing job's own DELETEs leave every sealed partition for autovacuum to
-- clean) holds a lock that conflicts with it, and PostgreSQL cancels an autovacuum that is in a
-- lock's way only after deadlock_timeout (1 s): so the pass gave up, and emptied partitions stayed
-- on disk until a later pass happened to find no autovacuum anywhere in the table (the history
-- bench of 2026-12-07 needed 4 passes, and one pass left 100-360 MB).
--
-- Now the function locks the partition itself first, within the caller's lock_timeout: an
-- autovacuum of another partition no longer stands in its way (one of that partition still does:
-- the pass gives up and the next one drops it, once the vacuum of an empty table has ended; a
-- longer wait would hold up every read of the window's range queued behind the lock). Then it
-- locks the parent alone (`LOCK TABLE ONLY`: what DROP TABLE of a partition needs), within the
-- caller's lock_timeout but at most half of deadlock_timeout. Locking the partition before its
-- parent is the reverse of a query's order: a query of the window's range that holds the parent
-- and waits for the partition makes the parent's lock wait, and this side gives up before
-- PostgreSQL's deadlock check (after deadlock_timeout) would abort the query instead.
CREATE OR REPLACE FUNCTION nexus_drop_empty_partition(parent text, name text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  has_rows boolean;
  caller_timeout text := current_setting('lock_timeout');
  caller_ms bigint := (SELECT setting::bigint FROM pg_settings WHERE pg_settings.name = 'lock_timeout');
  deadlock_ms bigint := (SELECT setting::bigint FROM pg_settings WHERE pg_settings.name = 'deadlock_timeout');
BEGIN
  IF parent NOT IN ('samples', 'samples_1m') OR NOT EXISTS (
    SELECT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = parent AND c.relname = name AND p.relnamespace = current_schema()::regnamespace
  ) THEN
    RETURN false;
  END IF;
  -- The partition, within the caller's lock_timeout.
  EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', name);
  -- The parent alone, giving up before a deadlock check could abort a query waiting on this.
  PERFORM set_config('lock_timeout',
                     (CASE WHEN caller_ms > 0 THEN least(caller_ms, greatest(deadlock_ms / 2, 1))
                           ELSE greatest(deadlock_ms / 2, 1) END)::text, true);
  EXECUTE format('LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE', parent);
  PERFORM set_config('lock_timeout', caller_timeout, true);
  -- Still a partition of `parent` (it may have been dropped or detached while this waited).
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

-- As schema 6 made it: run as the owner, with a search_path of its own, for the roles granted it.
-- (CREATE OR REPLACE keeps the grants, but not these.)
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION nexus_drop_empty_partition(text, text) SECURITY DEFINER SET search_path = %I, pg_temp',
                 current_schema());
  REVOKE EXECUTE ON FUNCTION nexus_drop_empty_partition(text, text) FROM PUBLIC;
END $$;
