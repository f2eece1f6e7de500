-- Nexus schema 3: the database's identity, so that a process caching surrogate ids (the
-- collector's clusters, hosts, GPUs and metrics; the gateway's fleet and latest values) notices
-- when the database under it is another one, and drops those ids instead of writing or reading
-- under ids of the old one.
--
-- A random id, written once here; with the database's and this table's object ids, which a
-- restore (pg_restore into a new database, or --clean into the same one) or a drop and re-create
-- changes even when the dump brings the same random id back. The server's start time is a part
-- of its own: a restart or a failover to a replica changes it (a replica may lack the newest
-- dimension rows), and dropping the caches then costs one upsert per process.
-- docs/storage.md, "When the database is replaced".

CREATE TABLE nexus_identity (
  one         boolean PRIMARY KEY DEFAULT true CHECK (one),
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO nexus_identity DEFAULT VALUES;

-- "<random id>/<database oid>.<table oid>@<server start, epoch ms>"; NULL if the row is gone.
CREATE FUNCTION nexus_identity() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT i.id::text || '/' || d.oid::text || '.' || i.tableoid::oid::text || '@'
         || (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint::text
  FROM nexus_identity i, pg_database d
  WHERE d.datname = current_database()
$$;

-- A guard for statements that use cached ids: true when the identity is `expected` (or nothing
-- is expected yet), otherwise an error (SQLSTATE NX001) that aborts the whole statement.
CREATE FUNCTION nexus_expect_identity(expected text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
  actual text := nexus_identity();
BEGIN
  IF expected IS NOT NULL AND actual IS DISTINCT FROM expected THEN
    RAISE EXCEPTION 'the database identity is %, not % as cached', coalesce(actual, 'unknown'), expected
      USING ERRCODE = 'NX001';
  END IF;
  RETURN true;
END $$;
