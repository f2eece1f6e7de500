-- Nexus schema 19: the database's identity (schema 3) is read from a plan cached per connection.
--
-- Statements that use cached ids guard on nexus_expect_identity (schema 3), and each history read
-- runs the guard once per table it reads (chunks, hot readings). nexus_identity() was a SQL
-- function whose body reads a table: PostgreSQL cannot inline such a body, and runs it through the
-- SQL-function executor, parsing and planning it again for each statement that calls it. In
-- PL/pgSQL its query is planned once per connection and the plan kept. Measured on the history
-- bench's data (a helper's profile): the two guards of a one-GPU history statement 0.245-0.285 ms
-- of PostgreSQL's time, 0.166-0.169 ms in PL/pgSQL (a bare `SELECT true` is 0.09 ms). Same value
-- (NULL when the row is gone), same volatility.
CREATE OR REPLACE FUNCTION nexus_identity() RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (
    SELECT i.id::text || '/' || d.oid::text || '.' || i.tableoid::oid::text || '@'
           || (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint::text
    FROM nexus_identity i, pg_database d
    WHERE d.datname = current_database()
  );
END $$;
