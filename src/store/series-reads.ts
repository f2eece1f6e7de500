import type { Aggregate } from './reader.js';
import { decodeChunk, decodeRollup } from './chunks/codec.js';
import type { SqlClient } from './types.js';
import { WINDOW_MS, windowOf } from './windows.js';

/**
 * Reads of storage engine v3: a series' sealed windows come from their chunks (decoded into typed
 * arrays, no object per reading), the rest from the hot tier, in one statement (one snapshot: a
 * window sealed meanwhile is seen either hot or sealed, never both, never neither).
 */

/** One series' readings in a time range, in time order. */
export interface SeriesArrays {
  readonly gpu: number;
  readonly metric: number;
  readonly times: Float64Array;
  readonly values: Float64Array;
}

/** The earliest instant PostgreSQL holds (4713 BC); -END_OF_TIME is out of its range. */
export const BEGINNING_OF_TIME = -210_866_803_200_000;

interface RawRow {
  gpu_id: number;
  metric_id: number;
  data: Uint8Array | null;
  t: string | null;
  v: string | null;
}

/** `{1,2,3}` (a PostgreSQL array of numbers as text) into numbers. */
export function parseNumberArray(text: string): Float64Array {
  if (text.length <= 2) return new Float64Array(0);
  const parts = text.slice(1, -1).split(',');
  const out = new Float64Array(parts.length);
  for (let i = 0; i < parts.length; i++) out[i] = Number(parts[i]);
  return out;
}

const seriesKey = (gpu: number, metric: number): number => gpu * 65_536 + metric;

/**
 * Selections of at most this many GPUs (a GPU's history, a host's) run their statement prepared:
 * parsed once per connection (a helper's profile on the history bench's data: parsing took
 * 0.1-0.4 ms of a one-GPU page's PostgreSQL time). Every run is still planned for its parameters
 * (the pool sets plan_cache_mode, src/store/postgres/database.ts). Larger selections (a
 * cluster's heatmap, a fleet query) run unprepared, as every statement did before; the bound of 64
 * is not measured against them.
 */
const PREPARED_MAX_GPUS = 64;

/** The selection's conditions, shared by the statements: $1 GPUs, $2 metrics (null: all), $5 identity. */
const SELECTED = `gpu_id = ANY($1::int[]) AND ($2::smallint[] IS NULL OR metric_id = ANY($2)) AND nexus_expect_identity($5::text)`;

/**
 * Every reading of the selected series in [from, to): chunks of the windows overlapping the
 * range, and the hot readings (as one array pair per series), merged per series. `after` skips
 * what a previous page returned: series before (gpu, metric), and that series' readings up to its
 * time.
 */
export async function readRaw(
  db: SqlClient,
  q: {
    readonly gpus: readonly number[];
    readonly metrics: readonly number[] | null;
    readonly from: number;
    readonly to: number;
    readonly identity: string | null;
    readonly after?: { readonly gpu: number; readonly metric: number; readonly time: number };
  },
): Promise<SeriesArrays[]> {
  const from = Math.max(q.from, BEGINNING_OF_TIME);
  // $6: the start of the window holding `from` (chunks are found by their window's start).
  const params: unknown[] = [q.gpus, q.metrics, from, q.to, q.identity, windowOf(from)];
  let position = '';
  if (q.after !== undefined) {
    params.push(q.after.gpu, q.after.metric);
    position = 'AND (gpu_id, metric_id) >= ($7::int, $8::smallint)';
  }
  const res = await db.query<RawRow>(
    `SELECT gpu_id, metric_id, data, NULL::text AS t, NULL::text AS v FROM sample_chunks
     WHERE ${SELECTED} ${position} AND data IS NOT NULL
       AND window_start >= nexus_ts($6) AND window_start < nexus_ts($4)
       AND last_time >= nexus_ts($3) AND first_time < nexus_ts($4)
     UNION ALL
     SELECT gpu_id, metric_id, NULL, array_agg(nexus_ms(time) ORDER BY time)::text, array_agg(value ORDER BY time)::text
     FROM samples
     WHERE ${SELECTED} ${position} AND time >= nexus_ts($3) AND time < nexus_ts($4)
     GROUP BY gpu_id, metric_id`,
    params,
    { prepare: q.gpus.length <= PREPARED_MAX_GPUS },
  );
  const parts = new Map<number, { gpu: number; metric: number; pieces: Piece[] }>();
  for (const r of res.rows) {
    const k = seriesKey(r.gpu_id, r.metric_id);
    let entry = parts.get(k);
    if (entry === undefined) {
      entry = { gpu: r.gpu_id, metric: r.metric_id, pieces: [] };
      parts.set(k, entry);
    }
    if (r.data !== null) entry.pieces.push(decodeChunk(r.data));
    else if (r.t !== null && r.v !== null) {
      entry.pieces.push({ times: parseNumberArray(r.t), values: parseNumberArray(r.v) });
    }
  }
  const out: SeriesArrays[] = [];
  for (const k of [...parts.keys()].sort((a, b) => a - b)) {
    const e = parts.get(k);
    if (e === undefined) continue;
    const lower =
      q.after !== undefined && e.gpu === q.after.gpu && e.metric === q.after.metric
        ? q.after.time
        : undefined;
    const s = mergePieces(e.pieces, from, q.to, lower);
    if (s.times.length > 0) out.push({ gpu: e.gpu, metric: e.metric, ...s });
  }
  return out;
}

interface Piece {
  readonly times: Float64Array;
  readonly values: Float64Array;
}

/**
 * Pieces of one series (chunks of disjoint windows, hot readings) into one time-ordered array
 * pair, within [from, to) and after `after` (exclusive).
 */
function mergePieces(
  pieces: Piece[],
  from: number,
  to: number,
  after: number | undefined,
): { times: Float64Array; values: Float64Array } {
  const lo = after === undefined ? from : Math.max(from, after + 1);
  pieces.sort((a, b) => (a.times[0] ?? 0) - (b.times[0] ?? 0));
  let n = 0;
  for (const p of pieces) n += p.times.length;
  const times = new Float64Array(n);
  const values = new Float64Array(n);
  let k = 0;
  let sorted = true;
  let last = -Infinity;
  for (const p of pieces) {
    for (let i = 0; i < p.times.length; i++) {
      const t = p.times[i] ?? 0;
      if (t < lo || t >= to) continue;
      if (t < last) sorted = false;
      last = t;
      times[k] = t;
      values[k++] = p.values[i] ?? 0;
    }
  }
  if (sorted) return { times: times.subarray(0, k), values: values.subarray(0, k) };
  // A late reading in the hot tier inside a sealed window's span: order by time.
  const order = Array.from({ length: k }, (_, i) => i).sort(
    (a, b) => (times[a] ?? 0) - (times[b] ?? 0),
  );
  return {
    times: Float64Array.from(order, (i) => times[i] ?? 0),
    values: Float64Array.from(order, (i) => values[i] ?? 0),
  };
}

/** Per series, per step: the partial aggregates a step's value is made of. */
export interface SeriesBuckets {
  readonly gpu: number;
  readonly metric: number;
  /** Bucket starts, ascending, of buckets holding at least one reading. */
  readonly buckets: number[];
  readonly values: number[];
  readonly counts: number[];
}

interface AggRow {
  src: number;
  gpu_id: number;
  metric_id: number;
  b: string | null;
  s: number | null;
  n: string | null;
  lo: number | null;
  hi: number | null;
  lt: string | null;
  lv: number | null;
  data: Uint8Array | null;
  rollup: Uint8Array | null;
  ws: string | null;
}

/** Partial aggregates of one series: arrays indexed by bucket number from the first bucket. */
class Accumulator {
  readonly sum: Float64Array;
  readonly count: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  readonly lastTime: Float64Array;
  readonly lastValue: Float64Array;
  constructor(readonly size: number) {
    this.sum = new Float64Array(size);
    this.count = new Float64Array(size);
    this.min = new Float64Array(size).fill(Infinity);
    this.max = new Float64Array(size).fill(-Infinity);
    this.lastTime = new Float64Array(size).fill(-Infinity);
    this.lastValue = new Float64Array(size);
  }
  add(i: number, sum: number, n: number, min: number, max: number, lt: number, lv: number): void {
    this.sum[i] = (this.sum[i] ?? 0) + sum;
    this.count[i] = (this.count[i] ?? 0) + n;
    if (min < (this.min[i] ?? Infinity)) this.min[i] = min;
    if (max > (this.max[i] ?? -Infinity)) this.max[i] = max;
    if (lt >= (this.lastTime[i] ?? -Infinity)) {
      this.lastTime[i] = lt;
      this.lastValue[i] = lv;
    }
  }
}

/**
 * Downsampled series: each step (buckets aligned on the epoch, like date_bin) the aggregate
 * `agg` of the readings in it. With `rollup` (a step of whole minutes) the range is taken in
 * whole minutes (from the minute holding `from`, buckets starting before `to`) as the 1-minute
 * rollup holds it; otherwise readings in [from, to). Sealed windows are aggregated here from their
 * chunks (or, from the window's aggregates beside the chunk when a step holds the whole window;
 * or from its 1-minute rollup once raw retention took the readings); the hot tier is aggregated
 * by PostgreSQL (from `samples_1m_all` with `rollup`, else from `samples`).
 */
export async function readAggregated(
  db: SqlClient,
  q: {
    readonly gpus: readonly number[];
    readonly metrics: readonly number[] | null;
    readonly from: number;
    readonly to: number;
    readonly stepMs: number;
    readonly agg: Aggregate;
    readonly rollup: boolean;
    readonly identity: string | null;
  },
): Promise<SeriesBuckets[]> {
  const step = q.stepMs;
  // The readings' span: [lo, hi), exactly the query's.
  const lo = Math.max(q.from, BEGINNING_OF_TIME);
  const hi = q.to;
  // With the rollup, its whole minutes inside the span, [innerLo, innerHi); the parts of minutes
  // at either end from the readings, so that a step counts only the span's readings whatever the
  // step (a range within one minute: the readings alone).
  const innerLo = Math.ceil(lo / 60_000) * 60_000;
  const innerHi = Math.floor(hi / 60_000) * 60_000;
  const rollup = q.rollup && innerLo < innerHi;
  const first = Math.floor(lo / step) * step;
  const size = Math.max(0, Math.ceil((hi - first) / step));
  const readings = (where: string): string =>
    `SELECT 1 AS src, gpu_id, metric_id, nexus_ms(date_bin($6 * interval '1 millisecond', time, timestamptz 'epoch')) AS b,
              sum(value) AS s, count(*)::bigint AS n, min(value) AS lo, max(value) AS hi,
              nexus_ms(max(time)) AS lt, (array_agg(value ORDER BY time DESC))[1] AS lv,
              NULL::bytea AS data, NULL::bytea AS rollup, NULL::bigint AS ws
       FROM samples
       WHERE ${SELECTED} AND ${where}
       GROUP BY 2, 3, 4`;
  // The parts of the end minutes, when the span starts or ends inside a minute.
  const ends = [
    ...(lo < innerLo ? ['(time >= nexus_ts($3) AND time < nexus_ts($9))'] : []),
    ...(innerHi < hi ? ['(time >= nexus_ts($10) AND time < nexus_ts($4))'] : []),
  ];
  const hot = rollup
    ? `SELECT 1 AS src, gpu_id, metric_id, nexus_ms(date_bin($6 * interval '1 millisecond', bucket, timestamptz 'epoch')) AS b,
              sum(sum) AS s, sum(count)::bigint AS n, min(min) AS lo, max(max) AS hi,
              nexus_ms(max(last_time)) AS lt, (array_agg(last_value ORDER BY last_time DESC))[1] AS lv,
              NULL::bytea AS data, NULL::bytea AS rollup, NULL::bigint AS ws
       FROM samples_1m_all
       WHERE ${SELECTED} AND bucket >= nexus_ts($9) AND bucket < nexus_ts($10)
       GROUP BY 2, 3, 4${ends.length === 0 ? '' : `\n     UNION ALL\n     ${readings(`(${ends.join(' OR ')})`)}`}`
    : readings(`time >= nexus_ts($3) AND time < nexus_ts($4)`);
  // A window wholly inside the span and inside one step: its aggregates beside the chunk do.
  const whole = step % WINDOW_MS === 0;
  const res = await db.query<AggRow>(
    `SELECT 0 AS src, gpu_id, metric_id, NULL::bigint AS b, sum AS s, count::bigint AS n, min AS lo, max AS hi,
            nexus_ms(last_time) AS lt, last_value AS lv,
            CASE WHEN $7::boolean AND window_start >= nexus_ts($3) AND window_start + interval '2 hours' <= nexus_ts($4) THEN NULL ELSE data END AS data,
            CASE WHEN $7::boolean AND window_start >= nexus_ts($3) AND window_start + interval '2 hours' <= nexus_ts($4) THEN NULL ELSE rollup END AS rollup,
            nexus_ms(window_start) AS ws
     FROM sample_chunks
     WHERE ${SELECTED} AND window_start >= nexus_ts($8) AND window_start < nexus_ts($4)
       AND last_time >= nexus_ts($3) AND first_time < nexus_ts($4)
     UNION ALL
     ${hot}`,
    [
      q.gpus,
      q.metrics,
      lo,
      hi,
      q.identity,
      step,
      whole,
      windowOf(lo),
      ...(rollup ? [innerLo, innerHi] : []),
    ],
    { prepare: q.gpus.length <= PREPARED_MAX_GPUS },
  );
  const acc = new Map<number, { gpu: number; metric: number; a: Accumulator }>();
  const of = (gpu: number, metric: number): Accumulator => {
    const k = seriesKey(gpu, metric);
    let e = acc.get(k);
    if (e === undefined) {
      e = { gpu, metric, a: new Accumulator(size) };
      acc.set(k, e);
    }
    return e.a;
  };
  for (const r of res.rows) {
    const a = of(r.gpu_id, r.metric_id);
    if (r.src === 1) {
      const i = Math.floor((Number(r.b) - first) / step);
      if (i >= 0 && i < size)
        a.add(i, r.s ?? 0, Number(r.n), r.lo ?? 0, r.hi ?? 0, Number(r.lt), r.lv ?? 0);
      continue;
    }
    if (r.data !== null) {
      const d = decodeChunk(r.data);
      addReadings(a, d.times, d.values, lo, hi, first, step);
    } else if (r.rollup !== null) {
      // Past raw retention only the minutes are left: the end minutes count whole.
      addRollup(a, r.rollup, Math.floor(lo / 60_000) * 60_000, hi, first, step, q.rollup);
    } else {
      // The window's aggregates (the statement left data out: the window is wholly in the span).
      const i = Math.floor((Number(r.ws) - first) / step);
      if (i >= 0 && i < size)
        a.add(i, r.s ?? 0, Number(r.n), r.lo ?? 0, r.hi ?? 0, Number(r.lt), r.lv ?? 0);
    }
  }
  const out: SeriesBuckets[] = [];
  for (const k of [...acc.keys()].sort((x, y) => x - y)) {
    const e = acc.get(k);
    if (e === undefined) continue;
    const buckets: number[] = [];
    const values: number[] = [];
    const counts: number[] = [];
    const a = e.a;
    for (let i = 0; i < size; i++) {
      const n = a.count[i] ?? 0;
      if (n === 0) continue;
      buckets.push(first + i * step);
      counts.push(n);
      values.push(
        q.agg === 'avg'
          ? (a.sum[i] ?? 0) / n
          : q.agg === 'min'
            ? (a.min[i] ?? 0)
            : q.agg === 'max'
              ? (a.max[i] ?? 0)
              : (a.lastValue[i] ?? 0),
      );
    }
    if (buckets.length > 0) out.push({ gpu: e.gpu, metric: e.metric, buckets, values, counts });
  }
  return out;
}

/** Readings (time order) in [lo, hi) into their steps. */
function addReadings(
  a: Accumulator,
  times: Float64Array,
  values: Float64Array,
  lo: number,
  hi: number,
  first: number,
  step: number,
): void {
  let i = -1;
  let end = -Infinity;
  for (let j = 0; j < times.length; j++) {
    const t = times[j] ?? 0;
    if (t < lo || t >= hi) continue;
    if (t >= end) {
      i = Math.floor((t - first) / step);
      end = first + (i + 1) * step;
    }
    const v = values[j] ?? 0;
    a.sum[i] = (a.sum[i] ?? 0) + v;
    a.count[i] = (a.count[i] ?? 0) + 1;
    if (v < (a.min[i] ?? Infinity)) a.min[i] = v;
    if (v > (a.max[i] ?? -Infinity)) a.max[i] = v;
    if (t >= (a.lastTime[i] ?? -Infinity)) {
      a.lastTime[i] = t;
      a.lastValue[i] = v;
    }
  }
}

/** A window's 1-minute rollup (raw readings past retention) into the steps: whole-minute steps only. */
function addRollup(
  a: Accumulator,
  data: Uint8Array,
  lo: number,
  hi: number,
  first: number,
  step: number,
  wholeMinutes: boolean,
): void {
  if (!wholeMinutes) return;
  const r = decodeRollup(data);
  for (let j = 0; j < r.buckets.length; j++) {
    const b = r.buckets[j] ?? 0;
    if (b < lo || b >= hi) continue;
    const i = Math.floor((b - first) / step);
    a.add(
      i,
      r.sum[j] ?? 0,
      r.counts[j] ?? 0,
      r.min[j] ?? 0,
      r.max[j] ?? 0,
      r.lastTimes[j] ?? 0,
      r.lastValues[j] ?? 0,
    );
  }
}
