/**
 * Issue 15, item 1: which form should the hot tier keep? Measures, on PostgreSQL 15 (started the
 * way the bench starts it: data on disk, default durability) and on PGlite (in memory), each in a
 * scratch schema per form:
 *
 * - form A, today's: `samples (time, gpu_id, metric_id, value)`, a row per reading, PRIMARY KEY
 *   (gpu_id, metric_id, time), written by a copy of the statement of src/store/sql-store.ts
 *   (UPSERT_FROM over unnest: insert ... on conflict do nothing, the new rows appended to
 *   `samples_pending` on PostgreSQL, folded into `samples_1m` and `samples_latest` in the same
 *   statement on PGlite);
 * - form B: a row per GPU instant, `samples_wide (gpu_id, prior, time, metric_ids smallint[],
 *   vals float8[])`, PRIMARY KEY (gpu_id, time), exactly once: a GPU instant whose metrics come in
 *   two batches is merged by ON CONFLICT DO UPDATE, which appends only the metrics not there yet
 *   and records in `prior` (2 bytes that fit in the alignment padding before `time`) how many
 *   were there before, so that RETURNING gives exactly the new readings.
 *
 * Both get the same parameters (four arrays, as SqlStore.unnest sends them), built before the
 * clock starts. Reported per form: insert rate and database CPU per reading with batches of
 * 10,000 readings (4 writers on PostgreSQL, 1 on PGlite), a GPU instant's metrics all in one batch
 * or every GPU instant split over two batches; the same batches again (redelivery); the rollup
 * job's drain of the pending rows (PostgreSQL); bytes per reading after VACUUM; three reads the hot
 * tier serves. Every figure is checked: stored readings, inserted counts, which readings were new.
 *
 *   nice npx tsx bench/hot-forms.ts [--quick] [--reps N] [--backend postgres|pglite|both]
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { FOLD } from '../src/store/fold.js';
import { startPostgres } from '../test/helpers/postgres.js';
import { FLEET_METRICS, realisticFleet } from './fleet-data.js';
import { BENCH_DIR, fmtNumber, freshDatabase, log, table } from './lib.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const argValue = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
};
const REPS = Number(argValue('--reps') ?? (quick ? 1 : 3));
const BACKENDS =
  (argValue('--backend') ?? 'both') === 'both'
    ? ['postgres', 'pglite']
    : [argValue('--backend') ?? ''];
const HOSTS = quick ? 3 : 15;
const GPUS_PER_HOST = 8;
const METRICS = FLEET_METRICS.length;
const STEP_MS = 10_000;
const WINDOW_MS = 2 * 3_600_000;
/** One 2-hour window, starting a second after its boundary (the scrape jitter stays inside it). */
const WINDOW_START = Date.UTC(2025, 6, 18);
const BATCH = 10_000;
const PG_WRITERS = 4;

type Form = 'A' | 'B';
type Variant = 'whole' | 'split' | 'export';
const VARIANTS = ['whole', 'split', 'export'] as const;

// ---------------------------------------------------------------------------------------------
// Data: a realistic fleet, one window, in stream order (scrape by scrape, host, GPU, metric).

interface Data {
  readonly n: number;
  readonly t: Float64Array;
  readonly g: Int32Array;
  readonly m: Int16Array;
  readonly v: Float64Array;
  /**
   * The same readings timed as in the real DCGM export (/work/shared/data): a GPU's metrics of one
   * scrape carry four different timestamps, a second apart (utilisation, copy and power; then
   * temperatures and frame buffer; then decoder; then encoder and clocks), 2.5 readings per GPU
   * instant.
   */
  readonly tExport: Float64Array;
  /** Reading indexes in the export's order: per scrape, metric by metric, every GPU. */
  readonly exportOrder: Int32Array;
  readonly gpus: number;
}

/** Seconds after the scrape at which the export stamps each FLEET_METRICS metric. */
const EXPORT_OFFSET_S = [0, 0, 3, 2, 1, 1, 0, 1, 3, 3];
/** The export's metric order (indexes into FLEET_METRICS). */
const EXPORT_METRIC_ORDER = [0, 1, 6, 4, 7, 5, 3, 2, 8, 9];

function fleetData(): Data {
  const steps = WINDOW_MS / STEP_MS;
  const gpus = HOSTS * GPUS_PER_HOST;
  const n = steps * gpus * METRICS;
  const t = new Float64Array(n);
  const g = new Int32Array(n);
  const m = new Int16Array(n);
  const v = new Float64Array(n);
  let s = 0;
  for (const series of realisticFleet({
    hosts: HOSTS,
    gpusPerHost: GPUS_PER_HOST,
    hours: 2,
    stepMs: STEP_MS,
    seed: 15,
    start: WINDOW_START + 1_000,
  })) {
    // Series come GPU by GPU, metric by metric: series s is GPU floor(s / METRICS), metric s % METRICS.
    const gpu = Math.floor(s / METRICS);
    const metric = s % METRICS;
    for (let i = 0; i < steps; i++) {
      const k = (i * gpus + gpu) * METRICS + metric;
      t[k] = series.times[i] ?? 0;
      g[k] = gpu + 1;
      m[k] = metric + 1;
      v[k] = series.values[i] ?? 0;
    }
    s++;
  }
  const tExport = new Float64Array(n);
  for (let k = 0; k < n; k++) tExport[k] = (t[k] ?? 0) + (EXPORT_OFFSET_S[k % METRICS] ?? 0) * 1000;
  const exportOrder = new Int32Array(n);
  let o = 0;
  for (let i = 0; i < steps; i++) {
    for (const metric of EXPORT_METRIC_ORDER) {
      for (let gpu = 0; gpu < gpus; gpu++) exportOrder[o++] = (i * gpus + gpu) * METRICS + metric;
    }
  }
  return { n, t, g, m, v, tExport, exportOrder, gpus };
}

/** The statement's parameters for some readings: array literals, as SqlStore.unnest sends them. */
function params(d: Data, idx: ArrayLike<number>, times = d.t): string[] {
  const pick = (a: ArrayLike<number>): string =>
    `{${Array.prototype.map.call(idx, (i: number) => a[i] ?? 0).join(',')}}`;
  return [pick(times), pick(d.g), pick(d.m), pick(d.v)];
}

/**
 * Batches of 10,000 readings. 'whole': stream order, so a GPU instant (10 readings) is never cut.
 * 'split': every GPU instant is cut in two: batch k holds metrics 6-10 of GPU instants
 * [1000(k-1), 1000k) and metrics 1-5 of [1000k, 1000(k+1)).
 * 'export': timed and ordered as the real export (Data.tExport, Data.exportOrder), cut every
 * 10,000 readings wherever that falls.
 */
function batches(d: Data, variant: Variant): string[][] {
  const out: string[][] = [];
  if (variant === 'export') {
    for (let i = 0; i < d.n; i += BATCH) {
      out.push(params(d, d.exportOrder.subarray(i, Math.min(d.n, i + BATCH)), d.tExport));
    }
    return out;
  }
  if (variant === 'whole') {
    for (let i = 0; i < d.n; i += BATCH) {
      const idx = new Int32Array(Math.min(BATCH, d.n - i));
      for (let j = 0; j < idx.length; j++) idx[j] = i + j;
      out.push(params(d, idx));
    }
    return out;
  }
  const instants = d.n / METRICS;
  const per = BATCH / METRICS;
  const half = METRICS / 2;
  for (let k = 0; (k - 1) * per < instants; k++) {
    const idx: number[] = [];
    for (let gi = (k - 1) * per; gi < k * per; gi++) {
      if (gi < 0 || gi >= instants) continue;
      for (let mm = half; mm < METRICS; mm++) idx.push(gi * METRICS + mm);
    }
    for (let gi = k * per; gi < (k + 1) * per && gi < instants; gi++) {
      for (let mm = 0; mm < half; mm++) idx.push(gi * METRICS + mm);
    }
    if (idx.length > 0) out.push(params(d, idx));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SQL. FOLD is the store's own (src/store/fold.ts); UPSERT_A and ROLL_UP.A follow its
// UPSERT_FROM and ROLL_UP (the unnest source, without the database identity guard, which costs the
// same in both forms).

const SOURCE = `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value, i::int AS i
   FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) WITH ORDINALITY AS u(t, g, m, v, i)`;

const SEALED_FILTER = `WHERE NOT EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', src.time, timestamptz 'epoch'))`;

/** What both statements answer, from `ins` (the new readings) and `input`. */
const ANSWER = `c AS MATERIALIZED (
  SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM input)::int AS given
)
SELECT c.inserted, c.given,
       CASE WHEN c.inserted > 0 AND c.inserted < c.given
            THEN (SELECT array_agg(nexus_ms(time)::text || ':' || gpu_id || ':' || metric_id) FROM ins) END AS fresh,
       (SELECT array_agg(i) FROM src WHERE EXISTS (
            SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', src.time, timestamptz 'epoch'))) AS late
FROM c`;

/** Form A: today's statement (UPSERT_FROM(FROM_ARRAYS, fold, sealed = true)). */
const UPSERT_A = (fold: boolean): string => `
WITH src AS (
  ${SOURCE}
), input AS (
  SELECT time, gpu_id, metric_id, value FROM src ${SEALED_FILTER}
), ins AS (
  INSERT INTO samples (time, gpu_id, metric_id, value)
  SELECT time, gpu_id, metric_id, value FROM input ORDER BY gpu_id, metric_id, time
  ON CONFLICT DO NOTHING
  RETURNING time, gpu_id, metric_id, value
), ${
  fold
    ? FOLD('ins')
    : `pending AS (
  INSERT INTO samples_pending (time, gpu_id, metric_id, value)
  SELECT time, gpu_id, metric_id, value FROM ins
)`
}, ${ANSWER}`;

/**
 * Form B: the batch grouped by GPU instant (a reading given twice in the batch counts once, the
 * first one); a new instant is inserted with `prior` 0; an existing one gets only the metrics it
 * lacks appended, `prior` set to how many it had (the row lock of ON CONFLICT DO UPDATE makes this
 * exact under concurrent writers); an instant with nothing new is left alone and not returned.
 * The new readings are then the elements after `prior` of each returned row.
 */
const UPSERT_B = (fold: boolean): string => `
WITH src AS (
  ${SOURCE}
), input AS (
  SELECT time, gpu_id, metric_id, value, i FROM src ${SEALED_FILTER}
), grp AS (
  SELECT gpu_id, time, array_agg(metric_id ORDER BY metric_id) AS metric_ids, array_agg(value ORDER BY metric_id) AS vals
  FROM (SELECT DISTINCT ON (gpu_id, time, metric_id) gpu_id, time, metric_id, value FROM input
        ORDER BY gpu_id, time, metric_id, i) d
  GROUP BY gpu_id, time
), up AS (
  INSERT INTO samples_wide AS h (gpu_id, prior, time, metric_ids, vals)
  SELECT gpu_id, 0, time, metric_ids, vals FROM grp ORDER BY gpu_id, time
  ON CONFLICT (gpu_id, time) DO UPDATE SET (prior, metric_ids, vals) = (
    SELECT cardinality(h.metric_ids), h.metric_ids || array_agg(x.m ORDER BY x.m), h.vals || array_agg(x.v ORDER BY x.m)
    FROM unnest(excluded.metric_ids, excluded.vals) AS x(m, v) WHERE x.m <> ALL (h.metric_ids))
  WHERE NOT (excluded.metric_ids <@ h.metric_ids)
  RETURNING gpu_id, prior, time, metric_ids, vals
), ins AS (
  SELECT up.time, up.gpu_id, x.m AS metric_id, x.v AS value
  FROM up, unnest(up.metric_ids[up.prior + 1:], up.vals[up.prior + 1:]) AS x(m, v)
), ${
  fold
    ? FOLD('ins')
    : `pending AS (
  INSERT INTO samples_wide_pending (gpu_id, time, metric_ids, vals)
  SELECT gpu_id, time, metric_ids[prior + 1:], vals[prior + 1:] FROM up
)`
}, ${ANSWER}`;

/** The rollup job's statement (ROLL_UP), per form; $1 readings at most (about, for B). */
const ROLL_UP: Record<Form, string> = {
  A: `
WITH moved AS (
  DELETE FROM samples_pending
  WHERE ctid = ANY(ARRAY(SELECT ctid FROM samples_pending LIMIT $1))
  RETURNING time, gpu_id, metric_id, value
), ${FOLD('moved')}
SELECT (SELECT count(*) FROM moved)::int AS moved`,
  B: `
WITH gone AS (
  DELETE FROM samples_wide_pending
  WHERE ctid = ANY(ARRAY(SELECT ctid FROM samples_wide_pending LIMIT $1 / 10))
  RETURNING gpu_id, time, metric_ids, vals
), moved AS (
  SELECT g.time, g.gpu_id, x.m AS metric_id, x.v AS value FROM gone g, unnest(g.metric_ids, g.vals) AS x(m, v)
), ${FOLD('moved')}
SELECT (SELECT count(*) FROM moved)::int AS moved`,
};

const FUNCTIONS = `
CREATE OR REPLACE FUNCTION public.nexus_ts(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'epoch'::timestamptz + ms * interval '1 millisecond' $$;
CREATE OR REPLACE FUNCTION public.nexus_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT floor(extract(epoch FROM t) * 1000)::bigint $$;`;

const windowBounds = `FROM ('${new Date(WINDOW_START).toISOString()}') TO ('${new Date(WINDOW_START + WINDOW_MS).toISOString()}')`;

/** The scratch schema of a form: its hot table (one 2-hour partition), pending, rollup, latest. */
const SCHEMA = (form: Form): string => `
DROP SCHEMA IF EXISTS hf_${form} CASCADE;
CREATE SCHEMA hf_${form};
SET search_path = hf_${form}, public;
CREATE TABLE sealed_windows (window_start timestamptz PRIMARY KEY);
CREATE TABLE samples_latest (gpu_id integer NOT NULL, metric_id smallint NOT NULL, time timestamptz NOT NULL,
  value double precision NOT NULL, PRIMARY KEY (gpu_id, metric_id));
CREATE TABLE samples_1m (bucket timestamptz NOT NULL, gpu_id integer NOT NULL, metric_id smallint NOT NULL,
  min double precision NOT NULL, max double precision NOT NULL, sum double precision NOT NULL, count integer NOT NULL,
  last_time timestamptz NOT NULL, last_value double precision NOT NULL, PRIMARY KEY (gpu_id, metric_id, bucket));
${
  form === 'A'
    ? `CREATE TABLE samples (time timestamptz NOT NULL, gpu_id integer NOT NULL, metric_id smallint NOT NULL,
  value double precision NOT NULL, PRIMARY KEY (gpu_id, metric_id, time)) PARTITION BY RANGE (time);
CREATE INDEX samples_time_brin ON samples USING brin (time);
CREATE TABLE hot PARTITION OF samples FOR VALUES ${windowBounds};
CREATE TABLE samples_pending (time timestamptz NOT NULL, gpu_id integer NOT NULL, metric_id smallint NOT NULL,
  value double precision NOT NULL) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50000);`
    : `CREATE TABLE samples_wide (gpu_id integer NOT NULL, prior smallint NOT NULL, time timestamptz NOT NULL,
  metric_ids smallint[] NOT NULL, vals double precision[] NOT NULL, PRIMARY KEY (gpu_id, time)) PARTITION BY RANGE (time);
CREATE INDEX samples_wide_time_brin ON samples_wide USING brin (time);
CREATE TABLE hot PARTITION OF samples_wide FOR VALUES ${windowBounds};
CREATE TABLE samples_wide_pending (gpu_id integer NOT NULL, time timestamptz NOT NULL, metric_ids smallint[] NOT NULL,
  vals double precision[] NOT NULL) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000);`
}`;

const STORED: Record<Form, string> = {
  A: 'SELECT count(*)::bigint AS n FROM samples',
  B: 'SELECT coalesce(sum(cardinality(metric_ids)), 0)::bigint AS n FROM samples_wide',
};

/** The reads, as the hot tier answers them ($1 GPUs, $2 metrics, $3..$4 epoch ms). */
const READS: Record<Form, Record<string, string>> = {
  A: {
    // series-reads.ts readRaw's hot half.
    series: `SELECT gpu_id, metric_id, array_agg(nexus_ms(time) ORDER BY time)::text AS t, array_agg(value ORDER BY time)::text AS v
      FROM samples WHERE gpu_id = ANY($1::int[]) AND metric_id = ANY($2::smallint[]) AND time >= nexus_ts($3) AND time < nexus_ts($4)
      GROUP BY gpu_id, metric_id`,
    // Every GPU and metric's newest reading in the hot table (served from memory and
    // samples_latest in production, the same for both forms).
    latest: `SELECT s.id AS gpu_id, mm.id AS metric_id, nexus_ms(x.time) AS t, x.value
      FROM unnest($1::int[]) s(id) CROSS JOIN unnest($2::smallint[]) mm(id)
      CROSS JOIN LATERAL (SELECT time, value FROM samples WHERE gpu_id = s.id AND metric_id = mm.id
                          AND time >= nexus_ts($3) AND time < nexus_ts($4) ORDER BY time DESC LIMIT 1) x`,
    // series-reads.ts readBuckets' raw hot half, one metric, every GPU, 1-minute steps.
    minutes: `SELECT gpu_id, metric_id, nexus_ms(date_bin('1 minute', time, timestamptz 'epoch')) AS b,
        sum(value) AS s, count(*)::bigint AS n, min(value) AS lo, max(value) AS hi
      FROM samples WHERE gpu_id = ANY($1::int[]) AND metric_id = ANY($2::smallint[]) AND time >= nexus_ts($3) AND time < nexus_ts($4)
      GROUP BY 1, 2, 3`,
  },
  B: {
    series: `SELECT w.gpu_id, mm.id AS metric_id, array_agg(nexus_ms(w.time) ORDER BY w.time)::text AS t,
        array_agg(w.vals[array_position(w.metric_ids, mm.id)] ORDER BY w.time)::text AS v
      FROM samples_wide w JOIN unnest($2::smallint[]) mm(id) ON mm.id = ANY (w.metric_ids)
      WHERE w.gpu_id = ANY($1::int[]) AND w.time >= nexus_ts($3) AND w.time < nexus_ts($4)
      GROUP BY w.gpu_id, mm.id`,
    latest: `SELECT s.id AS gpu_id, mm.id AS metric_id, nexus_ms(x.time) AS t, x.value
      FROM unnest($1::int[]) s(id) CROSS JOIN unnest($2::smallint[]) mm(id)
      CROSS JOIN LATERAL (SELECT time, vals[array_position(metric_ids, mm.id)] AS value FROM samples_wide
                          WHERE gpu_id = s.id AND mm.id = ANY (metric_ids) AND time >= nexus_ts($3) AND time < nexus_ts($4)
                          ORDER BY time DESC LIMIT 1) x`,
    // The value picked once per row (OFFSET 0 keeps the subquery, so that sum, min and max do not
    // each search the row's metric ids again).
    minutes: `SELECT gpu_id, metric_id, nexus_ms(date_bin('1 minute', time, timestamptz 'epoch')) AS b,
        sum(value) AS s, count(*)::bigint AS n, min(value) AS lo, max(value) AS hi
      FROM (SELECT w.gpu_id, mm.id AS metric_id, w.time, w.vals[array_position(w.metric_ids, mm.id)] AS value
            FROM samples_wide w JOIN unnest($2::smallint[]) mm(id) ON mm.id = ANY (w.metric_ids)
            WHERE w.gpu_id = ANY($1::int[]) AND w.time >= nexus_ts($3) AND w.time < nexus_ts($4) OFFSET 0) x
      GROUP BY 1, 2, 3`,
  },
};

// ---------------------------------------------------------------------------------------------
// Databases: a session per writer, the database's CPU time.

interface Session {
  query<R>(text: string, params?: readonly unknown[]): Promise<R[]>;
  exec(script: string): Promise<void>;
}

interface Backend {
  readonly name: 'postgres' | 'pglite';
  readonly sessions: readonly Session[];
  /** CPU seconds the database has spent so far (PostgreSQL: its writers' backends). */
  cpu(): Promise<number>;
  close(): Promise<void>;
}

const TICK = 100;

function procCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICK;
}

async function postgresBackend(): Promise<Backend> {
  mkdirSync(BENCH_DIR, { recursive: true });
  const server = await startPostgres({ durable: true, baseDir: BENCH_DIR });
  const url = await freshDatabase(server, 'hot');
  const clients: pg.Client[] = [];
  const pids: number[] = [];
  for (let i = 0; i < PG_WRITERS; i++) {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    pids.push(r.rows[0]?.pid ?? 0);
    clients.push(c);
  }
  await clients[0]?.query(FUNCTIONS);
  return {
    name: 'postgres',
    sessions: clients.map((c) => ({
      query: async <R>(text: string, p?: readonly unknown[]): Promise<R[]> =>
        (await c.query(text, p as unknown[] | undefined)).rows as R[],
      exec: async (script: string): Promise<void> => {
        await c.query(script);
      },
    })),
    cpu: () => Promise.resolve(pids.reduce((s, p) => s + procCpu(p), 0)),
    close: async () => {
      await Promise.all(clients.map((c) => c.end()));
      await server.destroy();
    },
  };
}

async function pgliteBackend(): Promise<Backend> {
  const db = new PGlite('memory://');
  await db.waitReady;
  await db.exec(FUNCTIONS);
  const cpu = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  return {
    name: 'pglite',
    sessions: [
      {
        query: async <R>(text: string, p?: readonly unknown[]): Promise<R[]> =>
          (await db.query<R>(text, p === undefined ? [] : [...p])).rows,
        exec: async (script: string): Promise<void> => {
          await db.exec(script);
        },
      },
    ],
    cpu: () => Promise.resolve(cpu()),
    close: () => db.close(),
  };
}

const first = (b: Backend): Session => {
  const s = b.sessions[0];
  if (s === undefined) throw new Error('no session');
  return s;
};

async function useForm(b: Backend, form: Form): Promise<void> {
  for (const s of b.sessions) await s.exec(`SET search_path = hf_${form}, public`);
}

// ---------------------------------------------------------------------------------------------
// Measurements.

interface WriteAnswer {
  inserted: number;
  given: number;
  fresh: string[] | null;
  late: number[] | null;
}

interface Timed {
  readonly seconds: number;
  readonly cpu: number;
  readonly inserted: number;
}

async function writeAll(b: Backend, statement: string, work: readonly string[][]): Promise<Timed> {
  let next = 0;
  let inserted = 0;
  const cpu0 = await b.cpu();
  const t0 = performance.now();
  await Promise.all(
    b.sessions.map(async (s) => {
      for (;;) {
        const p = work[next++];
        if (p === undefined) return;
        const [r] = await s.query<WriteAnswer>(statement, p);
        if (r === undefined) throw new Error('no answer');
        if (r.late !== null) throw new Error('readings of a sealed window');
        inserted += r.inserted;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, cpu: (await b.cpu()) - cpu0, inserted };
}

async function drain(b: Backend, form: Form): Promise<Timed> {
  const s = first(b);
  let moved = 0;
  const cpu0 = await b.cpu();
  const t0 = performance.now();
  for (;;) {
    const [r] = await s.query<{ moved: number }>(ROLL_UP[form], [100_000]);
    if ((r?.moved ?? 0) === 0) break;
    moved += r?.moved ?? 0;
  }
  return { seconds: (performance.now() - t0) / 1000, cpu: (await b.cpu()) - cpu0, inserted: moved };
}

async function bytes(
  b: Backend,
  form: Form,
): Promise<{ heap: number; total: number; rows: number }> {
  const s = first(b);
  await s.exec(`VACUUM ANALYZE hf_${form}.hot`);
  const [r] = await s.query<{ heap: string; total: string; rows: string }>(
    `SELECT pg_table_size('hf_${form}.hot')::bigint AS heap, pg_total_relation_size('hf_${form}.hot')::bigint AS total,
            (SELECT count(*) FROM hf_${form}.hot)::bigint AS rows`,
  );
  return { heap: Number(r?.heap ?? 0), total: Number(r?.total ?? 0), rows: Number(r?.rows ?? 0) };
}

async function stored(b: Backend, form: Form): Promise<number> {
  const [r] = await first(b).query<{ n: string }>(STORED[form]);
  return Number(r?.n ?? -1);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}

/** Median wall time (ms) of `runs` runs of a read, after one to warm up; and its answer. */
async function timeRead(
  b: Backend,
  sql: string,
  p: readonly unknown[],
  runs: number,
): Promise<{ ms: number; rows: unknown[] }> {
  const s = first(b);
  let rows = await s.query<unknown>(sql, p);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    rows = await s.query<unknown>(sql, p);
    times.push(performance.now() - t0);
  }
  times.sort((x, y) => x - y);
  return { ms: times[times.length >> 1] ?? Number.NaN, rows };
}

/**
 * Exactly once, checked on a small case: 100 GPU instants, metrics 1-7 first, then metrics 4-10
 * with 50 of them given twice in the batch: exactly the 300 readings of metrics 8-10 are new, and
 * said to be; the second batch again inserts nothing; 1,000 readings stored, and folded once.
 */
async function exactlyOnce(b: Backend, d: Data, form: Form, fold: boolean): Promise<void> {
  const s = first(b);
  await s.exec(SCHEMA(form));
  await useForm(b, form);
  const statement = form === 'A' ? UPSERT_A(fold) : UPSERT_B(fold);
  const x: number[] = [];
  const y: number[] = [];
  const expected = new Set<string>();
  for (let gi = 0; gi < 100; gi++) {
    for (let mm = 0; mm < METRICS; mm++) {
      const k = gi * METRICS + mm;
      if (mm < 7) x.push(k);
      if (mm >= 3) y.push(k);
      if (mm >= 7) expected.add(`${d.t[k]}:${d.g[k]}:${d.m[k]}`);
    }
  }
  y.push(...y.slice(0, 50));
  const [a1] = await s.query<WriteAnswer>(statement, params(d, x));
  check(a1?.inserted === 700 && a1.fresh === null, `${form}: first batch inserts 700`);
  const [a2] = await s.query<WriteAnswer>(statement, params(d, y));
  check(a2?.inserted === 300 && a2.given === 750, `${form}: second batch inserts 300 of 750`);
  const fresh = new Set(a2?.fresh ?? []);
  check(
    fresh.size === 300 && [...expected].every((k) => fresh.has(k)),
    `${form}: the 300 new readings are said to be new`,
  );
  const [a3] = await s.query<WriteAnswer>(statement, params(d, y));
  check(a3?.inserted === 0, `${form}: redelivery inserts nothing`);
  check((await stored(b, form)) === 1000, `${form}: 1,000 readings stored`);
  if (!fold) await drain(b, form);
  const [f] = await s.query<{ n: string }>('SELECT sum(count)::bigint AS n FROM samples_1m');
  check(Number(f?.n) === 1000, `${form}: 1,000 readings folded into samples_1m`);
}

interface Run {
  write: Timed;
  again: Timed;
  drain: Timed | undefined;
  bytes: { heap: number; total: number; rows: number };
  reads: Record<string, number> | undefined;
}

async function runForm(
  b: Backend,
  d: Data,
  form: Form,
  variant: Variant,
  work: readonly string[][],
  withReads: boolean,
  answers: Map<string, string>,
): Promise<Run> {
  const fold = b.name === 'pglite';
  const statement = form === 'A' ? UPSERT_A(fold) : UPSERT_B(fold);
  await first(b).exec(SCHEMA(form));
  await useForm(b, form);
  const write = await writeAll(b, statement, work);
  check(write.inserted === d.n, `${form}/${variant}: inserted ${write.inserted} of ${d.n}`);
  check((await stored(b, form)) === d.n, `${form}/${variant}: every reading stored once`);
  const again = await writeAll(b, statement, work);
  check(again.inserted === 0, `${form}/${variant}: redelivery inserted ${again.inserted}`);
  const drained = fold ? undefined : await drain(b, form);
  if (drained !== undefined)
    check(drained.inserted === d.n, `${form}/${variant}: drained ${drained.inserted}`);
  const [f] = await first(b).query<{ n: string }>('SELECT sum(count)::bigint AS n FROM samples_1m');
  check(Number(f?.n) === d.n, `${form}/${variant}: samples_1m counts every reading once`);
  const size = await bytes(b, form);
  let reads: Record<string, number> | undefined;
  if (withReads) {
    const all = Array.from({ length: d.gpus }, (_, i) => i + 1);
    const metric = 7; // power
    const span = [WINDOW_START, WINDOW_START + WINDOW_MS];
    const cases: [string, unknown[], number][] = [
      ['series', [`{${Math.ceil(d.gpus / 2)}}`, `{${metric}}`, ...span], 30],
      [
        'latest',
        [
          `{${all.join(',')}}`,
          `{${Array.from({ length: METRICS }, (_, i) => i + 1).join(',')}}`,
          ...span,
        ],
        10,
      ],
      ['minutes', [`{${all.join(',')}}`, `{${metric}}`, ...span], 10],
    ];
    reads = {};
    for (const [name, p, runs] of cases) {
      const r = await timeRead(b, READS[form][name] ?? '', p, runs);
      reads[name] = r.ms;
      // Both forms must give the same answer (sorted, as text; sums to 12 digits, as they add
      // the same numbers in another order).
      const text = JSON.stringify(
        r.rows
          .map((row) =>
            JSON.stringify(row, (_k, v: unknown) =>
              typeof v === 'number' ? Number(v.toPrecision(12)) : v,
            ),
          )
          .sort(),
      );
      const other = answers.get(`${b.name}/${name}`);
      if (other === undefined) answers.set(`${b.name}/${name}`, text);
      else check(other === text, `${form}: ${name} answers as the other form does`);
      check(r.rows.length > 0, `${form}: ${name} answers something`);
    }
  }
  return { write, again, drain: drained, bytes: size, reads };
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : s.length % 2 === 1
      ? (s[s.length >> 1] ?? 0)
      : ((s[s.length / 2 - 1] ?? 0) + (s[s.length / 2] ?? 0)) / 2;
};

async function measure(backend: 'postgres' | 'pglite', d: Data): Promise<string> {
  const b = backend === 'postgres' ? await postgresBackend() : await pgliteBackend();
  try {
    log(`${backend}: exactly-once checks`);
    for (const form of ['A', 'B'] as const) await exactlyOnce(b, d, form, backend === 'pglite');
    const work = {
      whole: batches(d, 'whole'),
      split: batches(d, 'split'),
      export: batches(d, 'export'),
    };
    const runs = new Map<string, Run[]>();
    const answers = new Map<string, string>();
    for (let rep = 0; rep < REPS; rep++) {
      // Alternate the order, so that neither form always runs first.
      const forms: Form[] = rep % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
      for (const variant of VARIANTS) {
        for (const form of forms) {
          const r = await runForm(b, d, form, variant, work[variant], variant === 'whole', answers);
          const key = `${form}/${variant}`;
          runs.set(key, [...(runs.get(key) ?? []), r]);
          log(
            `${backend} rep ${rep + 1} ${key}: write ${fmtNumber(d.n / r.write.seconds)}/s (cpu ${fmtNumber((r.write.cpu / d.n) * 1e6)} us), again ${fmtNumber(d.n / r.again.seconds)}/s, drain ${r.drain === undefined ? '-' : fmtNumber(d.n / r.drain.seconds)}/s, ${fmtNumber(r.bytes.total / d.n)} B/reading${
              r.reads === undefined
                ? ''
                : `, reads ${Object.entries(r.reads)
                    .map(([k, v]) => `${k} ${v.toFixed(2)} ms`)
                    .join(', ')}`
            }`,
          );
        }
      }
    }
    for (const s of b.sessions)
      await s.exec('DROP SCHEMA IF EXISTS hf_A CASCADE; DROP SCHEMA IF EXISTS hf_B CASCADE');
    const rows: (string | number)[][] = [];
    const get = (key: string, f: (r: Run) => number | undefined): number =>
      median((runs.get(key) ?? []).map(f).filter((x): x is number => x !== undefined));
    const both = (label: string, f: (form: Form) => number): void => {
      const a = f('A');
      const bb = f('B');
      rows.push([label, a, bb, `${(bb / a).toFixed(2)}x`]);
    };
    for (const variant of VARIANTS) {
      const what =
        variant === 'whole'
          ? 'a scrape, one timestamp, metrics of an instant in one batch'
          : variant === 'split'
            ? 'a scrape, one timestamp, every instant split over 2 batches'
            : 'timed and ordered as the real export: 2.5 readings per instant';
      both(`insert, readings/s (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => d.n / r.write.seconds),
      );
      both(`insert, database CPU us/reading (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => (r.write.cpu / d.n) * 1e6),
      );
      both(`redelivery, readings/s (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => d.n / r.again.seconds),
      );
      both(`redelivery, database CPU us/reading (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => (r.again.cpu / d.n) * 1e6),
      );
      if (backend === 'postgres') {
        both(`rollup job drain, readings/s (${what})`, (f) =>
          get(`${f}/${variant}`, (r) =>
            r.drain === undefined ? undefined : d.n / r.drain.seconds,
          ),
        );
        both(`rollup job drain, database CPU us/reading (${what})`, (f) =>
          get(`${f}/${variant}`, (r) =>
            r.drain === undefined ? undefined : (r.drain.cpu / d.n) * 1e6,
          ),
        );
      }
      both(`hot table bytes/reading after VACUUM (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => r.bytes.total / d.n),
      );
      both(`hot table rows per 10 readings (${what})`, (f) =>
        get(`${f}/${variant}`, (r) => (r.bytes.rows / d.n) * 10),
      );
    }
    both('of which heap and TOAST (a scrape, one timestamp, in one batch)', (f) =>
      get(`${f}/whole`, (r) => r.bytes.heap / d.n),
    );
    for (const [name, label] of [
      ['series', 'read: 1 GPU, 1 metric, 2 h raw (720 points), ms'],
      ['latest', `read: newest reading of every GPU and metric (${d.gpus * METRICS}), ms`],
      ['minutes', `read: 1-minute sums of 1 metric for all ${d.gpus} GPUs over 2 h, ms`],
    ] as const) {
      both(label, (f) => get(`${f}/whole`, (r) => r.reads?.[name]));
    }
    return table(
      [`${backend} (median of ${REPS})`, 'A: row per reading', 'B: row per GPU instant', 'B / A'],
      rows,
    );
  } finally {
    await b.close();
  }
}

async function main(): Promise<void> {
  const d = fleetData();
  log(
    `${d.n.toLocaleString('en-US')} readings: ${d.gpus} GPUs x ${METRICS} metrics x ${WINDOW_MS / STEP_MS} scrapes (one 2-hour window)`,
  );
  const out: string[] = [];
  for (const backend of BACKENDS) {
    if (backend !== 'postgres' && backend !== 'pglite')
      throw new Error(`unknown backend ${backend}`);
    out.push(await measure(backend, d), '');
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
