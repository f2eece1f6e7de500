import type { Logger } from '../core/logger.js';
import { decodeChunk, encodeChunk, encodeRollup, rollupOf } from './chunks/codec.js';
import type { CompactResult, Database, SqlClient } from './types.js';
import { parseNumberArray } from './series-reads.js';
import { WINDOW_LOCK_CLASS, WINDOW_MS, windowNumber, windowOf } from './windows.js';
import { FOLD_FLEET, LATEST } from './fold.js';

/**
 * The sealing job of storage engine v3 (migration 004): every closed 2-hour window of the hot
 * tier becomes one compressed chunk per series in `sample_chunks`, and its hot partitions go.
 * docs/storage.md, "The sealing job", explains the protocol; in short, per window, in one
 * transaction:
 *
 * 1. the window's advisory lock, exclusively: writers hold it shared while they write readings of
 *    the window, so none is half-way through, and the next ones see the window sealed and check
 *    their readings against its chunks;
 * 2. the rollup job's lock; the window's 1-minute rollup rows go (the chunks answer for the window
 *    from now on), those of the fleet metrics into `fleet_1m` (migration 014's trigger); its
 *    pending readings update the latest values (and `fleet_1m`) and leave;
 * 3. the window's hot readings are deleted (DELETE ... RETURNING is the read: what is sealed is
 *    exactly what left the hot tier), a group of GPUs at a time, merged with the window's chunks
 *    when it was sealed before (late readings), encoded, and upserted;
 * 4. the window is marked sealed.
 *
 * Then the emptied hot partitions are dropped, each in a short transaction of its own that gives
 * up (and tries again at the next pass) rather than wait for long reads.
 */

/** GPUs sealed per statement: bounds the readings held in memory at once. */
const GPUS_PER_STEP = 64;
/** How long dropping an emptied partition waits for reads of the table before trying later. */
const DROP_LOCK_TIMEOUT = '500ms';
/** Only one sealing job at a time across processes; another returns `busy`. */
const COMPACT_LOCK = "hashtext('nexus_compact')";
const ROLLUP_LOCK = "hashtext('nexus_rollup')";

interface Partition {
  readonly parent: 'samples' | 'samples_1m';
  readonly name: string;
  readonly lower: number;
  readonly upper: number;
  /** Rows ever inserted into it (PostgreSQL's statistics, flushed within seconds). */
  readonly inserted: number;
}

interface SeriesRow {
  gpu_id: number;
  metric_id: number;
  t: string;
  v: string;
}

interface ChunkRow {
  gpu_id: number;
  metric_id: number;
  data: Uint8Array | null;
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

/** A window's readings of one series, merged (the chunk's reading wins a tie). */
function merge(
  chunk: { times: Float64Array; values: Float64Array } | undefined,
  times: ArrayLike<number>,
  values: ArrayLike<number>,
): { times: ArrayLike<number>; values: ArrayLike<number>; ties: number } {
  if (chunk === undefined || chunk.times.length === 0) return { times, values, ties: 0 };
  const n = chunk.times.length + times.length;
  const t = new Float64Array(n);
  const v = new Float64Array(n);
  let i = 0;
  let j = 0;
  let k = 0;
  let ties = 0;
  while (i < chunk.times.length || j < times.length) {
    const a = i < chunk.times.length ? (chunk.times[i] ?? 0) : Infinity;
    const b = j < times.length ? (times[j] ?? 0) : Infinity;
    if (a <= b) {
      t[k] = a;
      v[k++] = chunk.values[i++] ?? 0;
      if (a === b) {
        j++;
        ties++;
      }
    } else {
      t[k] = b;
      v[k++] = values[j++] ?? 0;
    }
  }
  return { times: t.subarray(0, k), values: v.subarray(0, k), ties };
}

/** Aggregates of a window's readings, as stored beside its chunk. */
function summary(times: ArrayLike<number>, values: ArrayLike<number>) {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const x = values[i] ?? 0;
    if (x < min) min = x;
    if (x > max) max = x;
    sum += x;
  }
  const n = times.length;
  return {
    count: n,
    first: times[0] ?? 0,
    last: times[n - 1] ?? 0,
    min,
    max,
    sum,
    lastValue: values[n - 1] ?? 0,
  };
}

export interface CompactOptions {
  /** Seal windows that ended at least this long before `now`. */
  readonly delayMs: number;
  readonly now: number;
  /**
   * Rows inserted into each hot partition as the previous pass saw them: given, a partition still
   * being written (a backfill of old readings, whose windows ended long ago by the clock) waits
   * until a pass finds it quiet, instead of being sealed under its writers and merged into again
   * and again. Updated in place.
   */
  readonly insertsSeen?: Map<string, number>;
}

/** Runs the sealing job once: every closed window with hot readings (see the top of the file). */
export async function compact(
  db: Database,
  logger: Logger,
  o: CompactOptions,
): Promise<CompactResult> {
  const started = Date.now();
  const horizon = o.now - o.delayMs;
  const result = {
    windows: 0,
    merged: 0,
    readings: 0,
    chunks: 0,
    ties: 0,
    dropped: [] as string[],
    busy: false,
  };
  const partitions = await hotPartitions(db);
  const seen = o.insertsSeen;
  const closed = partitions.filter(
    (p) =>
      p.parent === 'samples' &&
      p.upper <= horizon &&
      (seen === undefined || seen.get(p.name) === p.inserted),
  );
  if (seen !== undefined) {
    seen.clear();
    for (const p of partitions) seen.set(p.name, p.inserted);
  }
  for (const p of closed) {
    for (let w = windowOf(p.lower); w < p.upper; w += WINDOW_MS) {
      const sealed = await sealWindow(db, w);
      if (sealed === undefined) {
        result.busy = true;
        return { ...result, ms: Date.now() - started };
      }
      if (sealed.readings > 0) {
        logger.debug({ window: new Date(w).toISOString(), ...sealed }, 'window sealed');
        result.windows++;
        if (sealed.merged) result.merged++;
        result.readings += sealed.readings;
        result.chunks += sealed.chunks;
        result.ties += sealed.ties;
      }
    }
  }
  // Drop the hot partitions (raw and rollup) that lie wholly in sealed windows and hold nothing.
  const sealedWindows = await sealedSet(db, horizon);
  for (const p of partitions) {
    if (p.upper > horizon) continue;
    let all = true;
    for (let w = windowOf(p.lower); w < p.upper && all; w += WINDOW_MS) all = sealedWindows.has(w);
    if (all && (await dropIfEmpty(db, p))) result.dropped.push(p.name);
  }
  if (result.ties > 0) {
    logger.warn(
      { readings: result.ties },
      'sealing met readings already in their chunks (stored twice by a writer of an older release?): the chunk kept its reading',
    );
  }
  return { ...result, ms: Date.now() - started };
}

async function hotPartitions(db: SqlClient): Promise<Partition[]> {
  const res = await db.query<{
    parent: string;
    name: string;
    lower: string;
    upper: string;
    inserted: string;
  }>(
    `SELECT parent::text, name::text, nexus_ms(lower) AS lower, nexus_ms(upper) AS upper,
            pg_stat_get_tuples_inserted(to_regclass(quote_ident(name::text))) AS inserted
     FROM nexus_hot_partitions ORDER BY lower, parent`,
  );
  return res.rows.map((r) => ({
    parent: r.parent === 'samples' ? 'samples' : 'samples_1m',
    name: r.name,
    lower: Number(r.lower),
    upper: Number(r.upper),
    inserted: Number(r.inserted),
  }));
}

async function sealedSet(db: SqlClient, before: number): Promise<Set<number>> {
  const res = await db.query<{ w: string }>(
    'SELECT nexus_ms(window_start) AS w FROM sealed_windows WHERE window_start < nexus_ts($1)',
    [before],
  );
  return new Set(res.rows.map((r) => Number(r.w)));
}

/**
 * Seals (or merges into its chunks) one window, in one transaction. Undefined when another
 * session runs the job.
 */
async function sealWindow(
  db: Database,
  w: number,
): Promise<{ readings: number; chunks: number; merged: boolean; ties: number } | undefined> {
  return db.transaction(async (tx) => {
    const lock = await tx.query<{ got: boolean }>(
      `SELECT pg_try_advisory_xact_lock(${COMPACT_LOCK}) AS got`,
    );
    if (lock.rows[0]?.got !== true) return undefined;
    await tx.query(`SELECT pg_advisory_xact_lock(${WINDOW_LOCK_CLASS}, $1::int)`, [
      windowNumber(w),
    ]);
    await tx.query(`SELECT pg_advisory_xact_lock(${ROLLUP_LOCK})`);
    const end = w + WINDOW_MS;
    const gpus = await tx.query<{ gpu_id: number }>(
      'SELECT DISTINCT gpu_id FROM samples WHERE time >= nexus_ts($1) AND time < nexus_ts($2) ORDER BY 1',
      [w, end],
    );
    if (gpus.rows.length === 0) return { readings: 0, chunks: 0, merged: false, ties: 0 };
    // The window's 1-minute rollup rows: its chunks answer for it from now on. Those of the fleet
    // metrics move to fleet_1m as they go (migration 014's trigger: a window sealed for the first
    // time replaces what fleet_1m held of it, one sealed again adds to it).
    await tx.query(
      'DELETE FROM samples_1m WHERE bucket >= nexus_ts($1) AND bucket < nexus_ts($2)',
      [w, end],
    );
    // Its pending readings: into the latest values and, for the fleet metrics, fleet_1m (after
    // the rollup rows, which they add to), and out of the pending table.
    await tx.query(
      `WITH moved AS (
         DELETE FROM samples_pending WHERE time >= nexus_ts($1) AND time < nexus_ts($2)
         RETURNING time, gpu_id, metric_id, value
       ), ${LATEST('moved')}${FOLD_FLEET('moved')}`,
      [w, end],
    );
    const before = await tx.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM sealed_windows WHERE window_start = nexus_ts($1)',
      [w],
    );
    const merged = (before.rows[0]?.n ?? 0) > 0;
    let readings = 0;
    let chunks = 0;
    let ties = 0;
    const ids = gpus.rows.map((r) => r.gpu_id);
    for (let i = 0; i < ids.length; i += GPUS_PER_STEP) {
      const step = ids.slice(i, i + GPUS_PER_STEP);
      const rows = await tx.query<SeriesRow>(
        `WITH gone AS (
           DELETE FROM samples WHERE time >= nexus_ts($1) AND time < nexus_ts($2) AND gpu_id = ANY($3::int[])
           RETURNING time, gpu_id, metric_id, value
         )
         SELECT gpu_id, metric_id, array_agg(nexus_ms(time) ORDER BY time)::text AS t,
                array_agg(value ORDER BY time)::text AS v
         FROM gone GROUP BY gpu_id, metric_id ORDER BY gpu_id, metric_id`,
        [w, end, step],
      );
      const existing = new Map<string, { times: Float64Array; values: Float64Array }>();
      if (merged) {
        const old = await tx.query<ChunkRow>(
          `SELECT gpu_id, metric_id, data FROM sample_chunks
           WHERE window_start = nexus_ts($1) AND gpu_id = ANY($2::int[]) AND data IS NOT NULL`,
          [w, step],
        );
        for (const c of old.rows) {
          if (c.data !== null) existing.set(`${c.gpu_id}:${c.metric_id}`, decodeChunk(c.data));
        }
      }
      const cols = {
        gpu: [] as number[],
        metric: [] as number[],
        count: [] as number[],
        first: [] as number[],
        last: [] as number[],
        min: [] as number[],
        max: [] as number[],
        sum: [] as number[],
        lastValue: [] as number[],
        data: [] as string[],
      };
      for (const r of rows.rows) {
        const times = parseNumberArray(r.t);
        const values = parseNumberArray(r.v);
        readings += times.length;
        const m = merge(existing.get(`${r.gpu_id}:${r.metric_id}`), times, values);
        ties += m.ties;
        const s = summary(m.times, m.values);
        cols.gpu.push(r.gpu_id);
        cols.metric.push(r.metric_id);
        cols.count.push(s.count);
        cols.first.push(s.first);
        cols.last.push(s.last);
        cols.min.push(s.min);
        cols.max.push(s.max);
        cols.sum.push(s.sum);
        cols.lastValue.push(s.lastValue);
        cols.data.push(hex(encodeChunk(m.times, m.values)));
      }
      if (cols.gpu.length === 0) continue;
      chunks += cols.gpu.length;
      await tx.query(
        `INSERT INTO sample_chunks AS c (gpu_id, metric_id, window_start, count, first_time, last_time, min, max, sum, last_value, data)
         SELECT g, m, nexus_ts($3), n, nexus_ts(f), nexus_ts(l), lo, hi, s, lv, decode(d, 'hex')
         FROM unnest($1::int[], $2::smallint[], $4::int[], $5::bigint[], $6::bigint[], $7::float8[], $8::float8[],
                     $9::float8[], $10::float8[], $11::text[]) AS u(g, m, n, f, l, lo, hi, s, lv, d)
         ON CONFLICT (gpu_id, metric_id, window_start) DO UPDATE SET
           count = excluded.count, first_time = excluded.first_time, last_time = excluded.last_time,
           min = excluded.min, max = excluded.max, sum = excluded.sum, last_value = excluded.last_value,
           data = excluded.data, rollup = NULL`,
        [
          cols.gpu,
          cols.metric,
          w,
          cols.count,
          cols.first,
          cols.last,
          cols.min,
          cols.max,
          cols.sum,
          cols.lastValue,
          cols.data,
        ],
      );
    }
    // The window's mark.
    await tx.query(
      `INSERT INTO sealed_windows (window_start, readings) VALUES (nexus_ts($1), $2)
       ON CONFLICT (window_start) DO UPDATE SET readings = sealed_windows.readings + excluded.readings, sealed_at = now()`,
      [w, readings - ties],
    );
    return { readings, chunks, merged, ties };
  });
}

/**
 * Drops an emptied hot partition, unless a reading arrived in it since (a late one: the next pass
 * merges it) or reads of the table hold it longer than DROP_LOCK_TIMEOUT (the next pass tries
 * again). The function (migration 017) waits longer on the partition itself, for an autovacuum of
 * it to be cancelled, before it takes the table's lock.
 */
async function dropIfEmpty(db: Database, p: Partition): Promise<boolean> {
  try {
    return await db.transaction(async (tx) => {
      if (db.backend === 'postgres')
        await tx.query(`SET LOCAL lock_timeout = '${DROP_LOCK_TIMEOUT}'`);
      // As the tables' owner (migration 006): the collector's role may not drop a table itself.
      const res = await tx.query<{ dropped: boolean }>(
        'SELECT nexus_drop_empty_partition($1, $2) AS dropped',
        [p.parent, p.name],
      );
      return res.rows[0]?.dropped === true;
    });
  } catch {
    return false;
  }
}

/**
 * Raw retention on chunks: a window whose raw readings are past `rawBefore` keeps its 1-minute
 * rollup (encoded from its chunk) when the rollup is kept longer, or goes; a window past both goes.
 * Returns the chunks converted and deleted.
 */
export async function chunkRetention(
  db: Database,
  rawBefore: number | null,
  rollupBefore: number | null,
): Promise<{ converted: number; deleted: number }> {
  let deleted = 0;
  let converted = 0;
  // Past both (raw kept for ever, rawBefore null, answers rollup queries too): gone.
  if (rawBefore !== null && rollupBefore !== null) {
    const res = await db.query(
      `DELETE FROM sample_chunks WHERE window_start + interval '2 hours' <= nexus_ts($1)`,
      [Math.min(rawBefore, rollupBefore)],
    );
    deleted += res.rowCount;
  }
  if (rawBefore !== null) {
    // Past raw retention, within the rollup's: the raw readings give way to their rollup.
    for (;;) {
      const done = await db.transaction(async (tx) => {
        const rows = await tx.query<{
          gpu_id: number;
          metric_id: number;
          w: string;
          data: Uint8Array;
        }>(
          `SELECT gpu_id, metric_id, nexus_ms(window_start) AS w, data FROM sample_chunks
           WHERE data IS NOT NULL AND window_start + interval '2 hours' <= nexus_ts($1)
           ORDER BY gpu_id, metric_id, window_start LIMIT 1000 FOR UPDATE`,
          [rawBefore],
        );
        if (rows.rows.length === 0) return true;
        const g: number[] = [];
        const m: number[] = [];
        const ws: number[] = [];
        const r: string[] = [];
        for (const row of rows.rows) {
          const d = decodeChunk(row.data);
          g.push(row.gpu_id);
          m.push(row.metric_id);
          ws.push(Number(row.w));
          r.push(hex(encodeRollup(rollupOf(d.times, d.values))));
        }
        await tx.query(
          `UPDATE sample_chunks c SET data = NULL, rollup = decode(u.r, 'hex')
           FROM unnest($1::int[], $2::smallint[], $3::bigint[], $4::text[]) AS u(g, m, w, r)
           WHERE c.gpu_id = u.g AND c.metric_id = u.m AND c.window_start = nexus_ts(u.w)`,
          [g, m, ws, r],
        );
        converted += rows.rows.length;
        return rows.rows.length < 1000;
      });
      if (done) break;
    }
  }
  return { converted, deleted };
}
