-- Nexus schema 18: the epoch-millisecond conversions are inlined into the statements that call
-- them, instead of being called as SQL functions once per row.
--
-- PostgreSQL inlines a one-line SQL function into the calling statement only if its expression is
-- no more volatile than the function is declared; schema 1's bodies used `timestamptz + interval`
-- and `extract(epoch FROM timestamptz)`, which are STABLE (they can depend on the session's time
-- zone), so the IMMUTABLE functions were never inlined: every call ran the SQL-function executor,
-- about 1-1.5 µs a row. The write statement calls nexus_ts once per reading and the rollup job
-- again, reads call nexus_ms once per row returned: on the cardinality bench's 600,000 readings,
-- over a million calls of nexus_ts and 225,000 of nexus_ms during ingest (pg_stat_statements).
--
-- The same conversions with IMMUTABLE parts only: arithmetic on `timestamp` (no time zone) and
-- the conversion at UTC. They give the same result for every value (checked on millions of random
-- values across years 4713 BC to 294276 AD, in several session time zones), and the same errors
-- (out of range, infinity); the store conformance suite (test/conformance/store-suite.ts) checks
-- the results, and that they are inlined.
CREATE OR REPLACE FUNCTION nexus_ts(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ('epoch'::timestamp + ms * interval '1 millisecond') AT TIME ZONE 'UTC' $$;

CREATE OR REPLACE FUNCTION nexus_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT floor(extract(epoch FROM t AT TIME ZONE 'UTC') * 1000)::bigint $$;
