import { NexusError, describeError, isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TelemetryRecord } from '../core/record.js';
import { Dimensions, type ResolvedIds } from './dimensions.js';
import { AllocationMinutes } from './allocations.js';
import { FOLD } from './fold.js';
import { isIdentityChanged, isSchemaMissing, reidentifier } from './identity.js';
import type { TelemetryReader } from './reader.js';
import { SqlReader } from './sql-reader.js';
import { assertCurrent, migrate } from './migrate.js';
import { decodeChunk } from './chunks/codec.js';
import { detectEvents, hasEventMetrics } from './events.js';
import { retireStale } from './retire.js';
import { rollUpUsage } from './fleet-reads.js';
import { chunkRetention, compact } from './compactor.js';
import { WINDOW_LOCK_CLASS, WINDOW_MS, windowNumber, windowOf } from './windows.js';
import type {
  CompactResult,
  Database,
  EngineStats,
  IdentityChanges,
  MigrationResult,
  RetireResult,
  RollupResult,
  SqlClient,
  TelemetryStore,
  UsageRollUp,
  WriteMethod,
  WriteResult,
} from './types.js';

export interface SqlStoreOptions {
  readonly db: Database;
  readonly logger: Logger;
  /** COPY into a staging table, or INSERT ... SELECT FROM unnest(arrays). */
  readonly writeMethod: WriteMethod;
  /** Raw readings older than this many days are dropped (by partition); 0 keeps them. */
  readonly retentionDays: number;
  /** The 1-minute rollup is kept this long; 0 keeps it. */
  readonly rollupRetentionDays: number;
  /** Hot partitions (2-hour windows) are created this far ahead (ms). */
  readonly partitionAheadMs: number;
  /** The sealing job seals windows that ended at least this long ago (ms). */
  readonly compactDelayMs: number;
  /**
   * Fold each write into the rollup and latest values in its own statement instead of leaving
   * it to the rollup job. Default: on PGlite (one connection: no writer waits for another, and
   * the pending table would only add work), off on PostgreSQL.
   */
  readonly foldOnWrite?: boolean;
  /**
   * The usage job recomputes a 10-minute slice once its mark is this old (default 30 s; writers
   * mark a slice at most every third of it).
   */
  readonly usageSettleMs?: number;
  /** Hosts, GPUs and workloads whose ids are kept in memory, of each kind (DIMENSION_CACHE_MAX). */
  readonly dimensionCacheMax?: number;
}

const DAY = 86_400_000;
/** The rollup job vacuums `samples_pending` after moving this many rows. */
const VACUUM_AFTER_ROWS = 500_000;

/** "no partition of relation found for row". */
function isPartitionMissing(err: unknown): boolean {
  return isNexusError(err) && err.details?.sqlstate === '23514' && /partition/i.test(err.message);
}

/**
 * Inserts new readings and skips ones already stored. Then either appends exactly the rows
 * inserted to `samples_pending`, from which the rollup job (`rollUp`) folds them into
 * `samples_1m` and `samples_latest` (migration 002): the write holds no lock another writer
 * needs, as the pending table has no index and no key. Or (`fold`) folds them in itself, in the
 * same statement. The rows are sorted by the primary key so that concurrent writers take the
 * index's locks in the same order.
 *
 * With `sealed` (migration 004), readings of a window already sealed into chunks are not written
 * here: their ordinals come back as `late`, and the writer checks them against their chunks
 * (a redelivered reading is in its chunk already) before writing the new ones without the check.
 */
const UPSERT_FROM = (source: string, fold: boolean, sealed: boolean): string => `
WITH src AS (
  ${source}
), input AS (
  SELECT time, gpu_id, metric_id, value FROM src${
    sealed
      ? `
  WHERE NOT EXISTS (SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', src.time, timestamptz 'epoch'))`
      : ''
  }
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
}, c AS MATERIALIZED (
  -- Counted once (inlined, each reference to a count would scan the CTE again).
  SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM input)::int AS given
)
SELECT c.inserted, c.given,
       -- Which readings were new, only when some were and some were not (a partly redelivered batch).
       CASE WHEN c.inserted > 0 AND c.inserted < c.given
            THEN (SELECT array_agg(nexus_ms(time)::text || ':' || gpu_id || ':' || metric_id) FROM ins) END AS fresh,
       ${
         sealed
           ? `(SELECT array_agg(i) FROM src WHERE EXISTS (
            SELECT FROM sealed_windows w WHERE w.window_start = date_bin('2 hours', src.time, timestamptz 'epoch')))`
           : 'NULL::int[]'
       } AS late
FROM c`;

/**
 * Moves up to $1 pending rows into the rollup and the latest values, in one statement: what is
 * deleted is exactly what is folded in.
 */
const ROLL_UP = `
WITH moved AS (
  DELETE FROM samples_pending
  WHERE ctid = ANY(ARRAY(SELECT ctid FROM samples_pending LIMIT $1))
  RETURNING time, gpu_id, metric_id, value
), ${FOLD('moved')}
SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM rollup)::int AS buckets,
       (SELECT count(*) FROM latest)::int AS latest`;

/** Key of the advisory lock that makes the rollup job one session at a time. */
const ROLLUP_LOCK = "hashtext('nexus_rollup')";

interface Written {
  readonly inserted: number;
  /** Readings written without conflict check against chunks (all but the late ones). */
  readonly given: number;
  readonly fresh: string[] | null;
  /** Ordinals (1-based) of the readings that belong to sealed windows, not written. */
  readonly late: number[] | null;
}

/**
 * Indexes of the records whose `time:gpu:metric` key is in `keys`: the first record of each key
 * only (a batch may hold the same reading twice; it was stored, and is announced, once).
 */
function freshIndexes(
  keys: readonly string[],
  records: readonly TelemetryRecord[],
  ids: ResolvedIds,
): number[] {
  const pending = new Set(keys);
  const out: number[] = [];
  for (let i = 0; i < records.length && pending.size > 0; i++) {
    const k = `${records[i]?.timestamp ?? 0}:${ids.gpu[i] ?? 0}:${ids.metric[i] ?? 0}`;
    if (pending.delete(k)) out.push(i);
  }
  return out;
}

/**
 * A PostgreSQL array literal of finite numbers (`{1,2.5,-3}`). JavaScript's shortest round-trip
 * formatting reads back as the same float8; exponents (`1e+21`) are valid input too.
 */
function arrayLiteral(values: ArrayLike<number>): string {
  return `{${Array.prototype.join.call(values, ',')}}`;
}

// The ids are for the database the guard names ($5, $1): nothing is written into another one.
const FROM_ARRAYS = `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value, i::int AS i
   FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) WITH ORDINALITY AS u(t, g, m, v, i)
   WHERE nexus_expect_identity($5::text)`;
const FROM_STAGE = `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value, i FROM nexus_stage
   WHERE nexus_expect_identity($1::text)`;

/**
 * Takes, shared, the advisory lock of every window the readings fall in (in window order, so
 * that writers and the sealing job, which takes one window at a time, cannot deadlock).
 */
async function lockWindows(client: SqlClient, records: readonly TelemetryRecord[]): Promise<void> {
  const windows = new Set<number>();
  for (const r of records) windows.add(windowNumber(r.timestamp));
  await client.query(
    `SELECT count(pg_advisory_xact_lock_shared(${WINDOW_LOCK_CLASS}, w)) FROM unnest($1::int[]) AS w`,
    [[...windows].sort((a, b) => a - b)],
  );
}

const seriesWindowKey = (gpu: number, metric: number, t: number): string =>
  `${gpu}:${metric}:${windowOf(t)}`;

/**
 * The readings' times already in the chunks of their (sealed) windows, by series and window:
 * 'all' where the chunk's raw readings are gone (past raw retention: nothing is stored again).
 */
async function chunkTimes(
  client: SqlClient,
  readings: readonly { gpu: number; metric: number; time: number }[],
): Promise<Map<string, Set<number> | 'all'>> {
  const keys = new Map<string, { gpu: number; metric: number; w: number }>();
  for (const r of readings) {
    keys.set(seriesWindowKey(r.gpu, r.metric, r.time), {
      gpu: r.gpu,
      metric: r.metric,
      w: windowOf(r.time),
    });
  }
  const k = [...keys.values()];
  const res = await client.query<{
    gpu_id: number;
    metric_id: number;
    w: string;
    data: Uint8Array | null;
  }>(
    `SELECT c.gpu_id, c.metric_id, nexus_ms(c.window_start) AS w, c.data
     FROM unnest($1::int[], $2::smallint[], $3::bigint[]) AS k(g, m, w)
     JOIN sample_chunks c ON c.gpu_id = k.g AND c.metric_id = k.m AND c.window_start = nexus_ts(k.w)`,
    [k.map((x) => x.gpu), k.map((x) => x.metric), k.map((x) => x.w)],
  );
  const out = new Map<string, Set<number> | 'all'>();
  for (const row of res.rows) {
    out.set(
      seriesWindowKey(row.gpu_id, row.metric_id, Number(row.w)),
      row.data === null ? 'all' : new Set(decodeChunk(row.data).times),
    );
  }
  return out;
}

/**
 * The telemetry store on SQL: one implementation for PostgreSQL and PGlite (same migrations, same
 * statements); only the bulk-load path differs (COPY where the database has it).
 */
/**
 * The fleet features' tables kept as long as the 1-minute rollup (migrations 009, 011, 015, 016),
 * each with the column retention compares.
 */
const ROLLUP_KEPT: readonly (readonly [string, string])[] = [
  ['gpu_allocations', 'bucket'],
  ['fleet_1m', 'bucket'],
  ['usage_1h', 'hour'],
  ['usage_dirty', 'hour'],
  ['usage_10m', 'slice'],
  ['usage_slices', 'slice'],
  ['util_peaks', 'slice'],
  ['usage_1d', 'day'],
  ['usage_days', 'day'],
  ['usage_1mo', 'month'],
  ['usage_months', 'month'],
];

export class SqlStore implements TelemetryStore {
  readonly backend: 'postgres' | 'pglite';
  readonly reader: TelemetryReader;
  readonly foldsOnWrite: boolean;
  private readonly dims: Dimensions;
  private readonly allocations: AllocationMinutes;
  private readonly partitions = new Set<number>();

  get dimensionsCached(): { hosts: number; gpus: number; workloads: number } {
    return this.dims.cached;
  }
  /** Changes of the database's identity noticed here, by the writer and the reader. */
  private readonly changes: IdentityChanges = { database: 0, server: 0 };
  /**
   * The database is not the one the cached ids came from: read its identity, drop the dimension
   * ids and the partitions known, say so. One at a time; a no-op when another write did it.
   */
  private readonly reidentify: () => Promise<void>;
  private remigrating: Promise<void> | undefined;
  private readonly writeMethod: WriteMethod;
  /** The write statements: from arrays or the COPY stage; checking sealed windows or not. */
  private readonly statements: {
    readonly arrays: string;
    readonly stage: string;
    readonly lateArrays: string;
  };
  /**
   * Writers take their windows' advisory locks (shared) against the sealing job: on PostgreSQL.
   * PGlite has one connection: a statement runs wholly before or after a sealing transaction.
   */
  private readonly windowLocks: boolean;
  private movedSinceVacuum = 0;
  private vacuums: Promise<boolean> | undefined;
  /** Rows inserted into each hot partition as the previous quiet pass of compact() saw them. */
  private readonly insertsSeen = new Map<string, number>();
  /** Windows known sealed (PGlite only, see touchesSealed). */
  private sealed: Set<number> | undefined;

  constructor(private readonly o: SqlStoreOptions) {
    this.dims = new Dimensions(o.dimensionCacheMax);
    this.allocations = new AllocationMinutes(undefined, o.usageSettleMs);
    this.backend = o.db.backend;
    this.reader = new SqlReader(o.db, {
      logger: o.logger,
      onIdentityChange: (kind) => this.changes[kind]++,
    });
    this.reidentify = reidentifier({
      db: o.db,
      known: () => this.dims.identity,
      drop: (now) => {
        this.dims.forget(now);
        this.allocations.forget();
        this.partitions.clear();
      },
      onChange: (kind) => this.changes[kind]++,
      logger: o.logger,
      messages: {
        database:
          'the database was replaced (another identity): dropped the dimension ids cached for the old one; writing under the new one',
        server:
          'the PostgreSQL server restarted or failed over since the dimension ids were cached: dropped them, reading them again',
      },
    });
    this.writeMethod = o.writeMethod === 'copy' && o.db.copyInto !== undefined ? 'copy' : 'unnest';
    this.foldsOnWrite = o.foldOnWrite ?? o.db.backend === 'pglite';
    this.statements = {
      arrays: UPSERT_FROM(FROM_ARRAYS, this.foldsOnWrite, true),
      stage: UPSERT_FROM(FROM_STAGE, this.foldsOnWrite, true),
      lateArrays: UPSERT_FROM(FROM_ARRAYS, this.foldsOnWrite, false),
    };
    this.windowLocks = o.db.backend === 'postgres';
  }

  migrate(): Promise<MigrationResult> {
    return migrate(this.o.db, this.o.logger);
  }

  poolStats(): { total: number; idle: number; waiting: number } | undefined {
    return this.o.db.poolStats?.();
  }

  engineStats(): EngineStats | undefined {
    return this.o.db.engineStats?.();
  }

  identityChanges(): IdentityChanges {
    return { ...this.changes };
  }

  async ping(): Promise<void> {
    await this.o.db.query('SELECT 1');
    await assertCurrent(this.o.db);
  }

  /**
   * Writes under the ids of the database it writes into: when the database is not the one the
   * cached ids came from (dropped and re-created, restored, failed over), the statement using
   * them fails before it writes anything, the caches are dropped and the write runs again; when
   * the schema is gone, it is migrated again first.
   */
  async write(clusterId: string, records: readonly TelemetryRecord[]): Promise<WriteResult> {
    if (records.length === 0) return { inserted: 0, duplicates: 0 };
    let partitionRetries = 0;
    let forcePartitions = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.writeOnce(clusterId, records, forcePartitions);
      } catch (err) {
        if (attempt < 5 && isIdentityChanged(err)) {
          await this.reidentify();
          continue;
        }
        if (attempt < 5 && isSchemaMissing(err)) {
          await this.remigrate(err);
          continue;
        }
        // "no partition of relation found for row": another process's retention or sealing job
        // dropped a partition this one had cached, or the write holds new readings of a sealed
        // window (whose partitions were dropped when it was sealed). Make sure every window of
        // the batch has its partitions, outside the write's transaction (creating a partition
        // there, holding the parent's lock, would deadlock with another writer doing the same),
        // and write again: the write was rolled back whole.
        if (partitionRetries < 3 && isPartitionMissing(err)) {
          partitionRetries++;
          this.partitions.clear();
          forcePartitions = true;
          continue;
        }
        throw err;
      }
    }
  }

  private async writeOnce(
    clusterId: string,
    records: readonly TelemetryRecord[],
    forcePartitions: boolean,
  ): Promise<WriteResult> {
    const ids = await this.dims.resolve(this.o.db, clusterId, records);
    await this.ensurePartitions(records, forcePartitions);
    // The usage slices of the batch marked before its readings are written, and again after (at
    // most every third of the settle time): no reader sees a reading in a slice that is not
    // marked, as the kept usage and utilisation peaks of a slice do not hold it (migration 016).
    const slices = AllocationMinutes.slicesOf(records);
    await this.allocations.markSlices(this.o.db, slices);
    // One statement needs no transaction of its own (it is atomic, and it reaches the database in
    // one round trip; on PGlite in a worker, a transaction would hold the only connection across
    // several hops through a busy event loop). The window locks and COPY need one.
    const result =
      this.windowLocks || this.writeMethod === 'copy' || (await this.touchesSealed(records))
        ? await this.o.db.transaction((tx) => this.writeIn(tx, records, ids, true))
        : await this.writeIn(this.o.db, records, ids, false);
    // The batch's allocation minutes (docs/fleet.md), once its readings are stored: a failure
    // here fails the batch, and its redelivery writes the readings as duplicates and these again.
    await this.allocations.write(this.o.db, records, ids);
    // Again for a write that took longer than the mark's throttle (a no-op otherwise).
    await this.allocations.markSlices(this.o.db, slices);
    // Events (XID, throttle, health) of batches that hold their metrics, after the readings are
    // stored: a crash in between leaves the detection state behind, and the redelivered batch
    // detects them then (src/store/events.ts).
    if (!hasEventMetrics(records)) return result;
    const events = await this.o.db.transaction((tx) => detectEvents(tx, records, ids));
    return { ...result, events };
  }

  /**
   * Whether readings fall in windows sealed already (PGlite: this process is the only one using
   * the database, and its own sealing job keeps the set). Such a write runs in one transaction,
   * so that its readings of open windows and its late ones are stored, or not, together.
   */
  private async touchesSealed(records: readonly TelemetryRecord[]): Promise<boolean> {
    if (this.sealed === undefined) {
      const res = await this.o.db.query<{ w: string }>(
        'SELECT nexus_ms(window_start) AS w FROM sealed_windows',
      );
      this.sealed = new Set(res.rows.map((r) => Number(r.w)));
    }
    if (this.sealed.size === 0) return false;
    for (const r of records) if (this.sealed.has(windowOf(r.timestamp))) return true;
    return false;
  }

  /**
   * The write: the readings of open windows in one statement; those of sealed windows (late or
   * redelivered, rare) checked against their chunks first, in a transaction.
   */
  private async writeIn(
    client: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
    inTransaction: boolean,
  ): Promise<WriteResult> {
    if (this.windowLocks) await lockWindows(client, records);
    const first =
      this.writeMethod === 'copy'
        ? await this.copy(client, records, ids)
        : await this.unnest(client, records, ids, this.statements.arrays);
    const late = first.late ?? [];
    if (late.length === 0) {
      return {
        inserted: first.inserted,
        duplicates: records.length - first.inserted,
        ...(first.fresh === null ? {} : { fresh: freshIndexes(first.fresh, records, ids) }),
      };
    }
    const isLate = new Set(late.map((i) => i - 1));
    const fresh = new Set<number>();
    if (first.fresh !== null) for (const i of freshIndexes(first.fresh, records, ids)) fresh.add(i);
    else if (first.inserted > 0) {
      for (let i = 0; i < records.length; i++) if (!isLate.has(i)) fresh.add(i);
    }
    const lateFresh = inTransaction
      ? await this.writeLate(client, records, ids, [...isLate])
      : await this.o.db.transaction((tx) => this.writeLate(tx, records, ids, [...isLate]));
    for (const i of lateFresh) fresh.add(i);
    const inserted = first.inserted + lateFresh.length;
    return {
      inserted,
      duplicates: records.length - inserted,
      ...(inserted === 0 || inserted === records.length
        ? {}
        : { fresh: [...fresh].sort((x, y) => x - y) }),
    };
  }

  /**
   * Readings of sealed windows: those already in their chunk are skipped (a redelivery), the new
   * ones go to the hot tier, where the next pass of the sealing job merges them into their chunk.
   * Returns the indexes (in `records`) of the readings stored.
   */
  private async writeLate(
    client: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
    indexes: readonly number[],
  ): Promise<number[]> {
    const present = await chunkTimes(
      client,
      indexes.map((i) => ({
        gpu: ids.gpu[i] ?? 0,
        metric: ids.metric[i] ?? 0,
        time: records[i]?.timestamp ?? 0,
      })),
    );
    const keep = indexes.filter((i) => {
      const times = present.get(
        seriesWindowKey(ids.gpu[i] ?? 0, ids.metric[i] ?? 0, records[i]?.timestamp ?? 0),
      );
      return times !== undefined && times !== 'all'
        ? !times.has(records[i]?.timestamp ?? 0)
        : times === undefined;
    });
    if (keep.length === 0) return [];
    // Their hot partitions went when the window was sealed: the insert then fails with "no
    // partition", and write() makes them outside the transaction and writes again.
    const sub = keep.map((i) => records[i] as TelemetryRecord);
    const subIds: ResolvedIds = {
      gpu: Int32Array.from(keep, (i) => ids.gpu[i] ?? 0),
      metric: Int16Array.from(keep, (i) => ids.metric[i] ?? 0),
      identity: ids.identity,
    };
    const w = await this.unnest(client, sub, subIds, this.statements.lateArrays);
    if (w.inserted === 0) return [];
    if (w.fresh === null) return keep;
    return freshIndexes(w.fresh, sub, subIds).map((j) => keep[j] ?? 0);
  }

  /** The schema is gone (a dropped schema, an empty re-created database): migrate again. */
  private remigrate(cause: unknown): Promise<void> {
    this.remigrating ??= (async () => {
      this.o.logger.warn(
        { err: describeError(cause) },
        'the schema is missing from the database: applying the migrations again',
      );
      this.partitions.clear();
      try {
        await this.migrate();
      } catch (err) {
        throw new NexusError(
          'STORE_UNAVAILABLE',
          `the schema is missing and could not be created again: ${describeError(err)}`,
          { retryable: true, cause: err },
        );
      }
    })().finally(() => {
      this.remigrating = undefined;
    });
    return this.remigrating;
  }

  /**
   * One statement, so no transaction around it: it is atomic on its own, and it reaches the
   * database in one round trip with its parameters already built (on PGlite in a worker, a
   * transaction would hold the only connection across several hops through a busy event loop).
   */
  private async unnest(
    db: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
    statement: string,
  ): Promise<Written> {
    const n = records.length;
    const t = new Array<number>(n);
    const v = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const r = records[i];
      t[i] = r?.timestamp ?? 0;
      v[i] = r?.value ?? 0;
    }
    // Array literals built here, in one join each: numbers need no quoting, and the drivers'
    // element-by-element array serialisers cost more than the rest of the statement's preparation.
    const res = await db.query<Written>(statement, [
      arrayLiteral(t),
      arrayLiteral(ids.gpu),
      arrayLiteral(ids.metric),
      arrayLiteral(v),
      ids.identity,
    ]);
    return res.rows[0] ?? { inserted: 0, given: 0, fresh: null, late: null };
  }

  private async copy(
    tx: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
  ): Promise<Written> {
    if (this.o.db.copyInto === undefined)
      return this.unnest(tx, records, ids, this.statements.arrays);
    await tx.query(
      'CREATE TEMP TABLE IF NOT EXISTS nexus_stage (t bigint, g integer, m smallint, v float8, i integer) ON COMMIT DELETE ROWS',
    );
    const lines = new Array<string>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      lines[i] =
        `${r?.timestamp ?? 0}\t${ids.gpu[i] ?? 0}\t${ids.metric[i] ?? 0}\t${r?.value ?? 0}\t${i + 1}\n`;
    }
    await this.o.db.copyInto(tx, 'nexus_stage', ['t', 'g', 'm', 'v', 'i'], lines);
    const res = await tx.query<Written>(this.statements.stage, [ids.identity]);
    return res.rows[0] ?? { inserted: 0, given: 0, fresh: null, late: null };
  }

  /**
   * Makes sure the partitions for these readings exist (cached: one query per new window): of the
   * open windows only, unless `force` (a sealed window's too: the write holds new late readings).
   */
  private async ensurePartitions(
    records: readonly TelemetryRecord[],
    force = false,
  ): Promise<void> {
    const missing = new Set<number>();
    for (const r of records) {
      const w = windowOf(r.timestamp);
      if (force || !this.partitions.has(w)) missing.add(w);
    }
    if (missing.size === 0) return;
    const windows = [...missing].sort((a, b) => a - b);
    const fn = force ? 'nexus_ensure_window_partitions' : 'nexus_ensure_open_partitions';
    await this.o.db.transaction((tx) => tx.query(`SELECT ${fn}($1::bigint[])`, [windows]));
    for (const w of windows) this.partitions.add(w);
  }

  /**
   * Folds pending readings into `samples_1m` and `samples_latest` (the rollup job): in
   * transactions of up to `chunk` rows until none is left, under an advisory lock so that one
   * session at a time does it; another session's call returns at once with `busy`. Safe to call
   * from every collector, as often as wanted, and after a crash: nothing is folded twice.
   */
  async rollUp(chunk = 100_000): Promise<RollupResult> {
    const started = Date.now();
    const total = { moved: 0, buckets: 0, latest: 0 };
    for (let repaired = false; ;) {
      let res: { moved: number; buckets: number; latest: number } | undefined;
      try {
        res = await this.o.db.transaction(async (tx) => {
          const lock = await tx.query<{ got: boolean }>(
            `SELECT pg_try_advisory_xact_lock(${ROLLUP_LOCK}) AS got`,
          );
          if (lock.rows[0]?.got !== true) return undefined;
          const r = await tx.query<{ moved: number; buckets: number; latest: number }>(ROLL_UP, [
            chunk,
          ]);
          return r.rows[0] ?? { moved: 0, buckets: 0, latest: 0 };
        });
      } catch (err) {
        // A pending reading whose monthly rollup partition is gone (retention dropped it while
        // the job was held elsewhere, or an operator did): create it again, then try once more.
        // The reading is folded in, and the next maintain() applies retention to it as to the
        // rest.
        if (!repaired && isPartitionMissing(err)) {
          repaired = true;
          await this.o.db.transaction((tx) =>
            tx.query(
              `SELECT nexus_ensure_window_partitions(array_agg(DISTINCT nexus_ms(date_bin('2 hours', time, timestamptz 'epoch'))))
               FROM samples_pending`,
            ),
          );
          continue;
        }
        throw err;
      }
      if (res === undefined) return { ...total, busy: true, ms: Date.now() - started };
      total.moved += res.moved;
      total.buckets += res.buckets;
      total.latest += res.latest;
      if (res.moved < chunk) break;
    }
    this.movedSinceVacuum += total.moved;
    if (this.movedSinceVacuum >= VACUUM_AFTER_ROWS) {
      // The pending table is emptied over and over: reclaim its dead rows now rather than when
      // autovacuum comes round (PGlite has no autovacuum at all).
      this.movedSinceVacuum = 0;
      if (await this.mayVacuum()) await this.o.db.query('VACUUM (SKIP_LOCKED) samples_pending');
    }
    return { ...total, busy: false, ms: Date.now() - started };
  }

  /**
   * Whether this session may vacuum the pending table: only its owner may (a collector role of
   * `nexus migrate --create-roles` may not: PostgreSQL's autovacuum, set low on that table, does
   * it then, instead of a warning in the server's log at each try).
   */
  private mayVacuum(): Promise<boolean> {
    this.vacuums ??= this.o.db
      .query<{ ok: boolean }>(
        `SELECT pg_has_role(relowner, 'USAGE') AS ok FROM pg_class WHERE oid = 'samples_pending'::regclass`,
      )
      .then((r) => r.rows[0]?.ok === true)
      .catch(() => {
        this.vacuums = undefined; // asked again next time
        return false;
      });
    return this.vacuums;
  }

  retire(staleAfterMs: number): Promise<RetireResult> {
    return retireStale(this.o.db, staleAfterMs);
  }

  rollUpUsage(): Promise<UsageRollUp> {
    return rollUpUsage(this.o.db, this.o.usageSettleMs);
  }

  async compact(
    options: { now?: number; delayMs?: number; quiet?: boolean } = {},
  ): Promise<CompactResult> {
    try {
      return await compact(this.o.db, this.o.logger, {
        now: options.now ?? Date.now(),
        delayMs: options.delayMs ?? this.o.compactDelayMs,
        ...(options.quiet === true ? { insertsSeen: this.insertsSeen } : {}),
      });
    } finally {
      // Partitions it dropped, windows it sealed: known again from the database when needed.
      this.partitions.clear();
      this.sealed = undefined;
    }
  }

  async maintain(now = Date.now()): Promise<{ created: number; dropped: readonly string[] }> {
    const ahead: number[] = [];
    for (let w = windowOf(now); w <= windowOf(now + this.o.partitionAheadMs); w += WINDOW_MS) {
      ahead.push(w);
    }
    const created = await this.o.db.transaction(async (tx) => {
      const res = await tx.query<{ n: number }>(
        'SELECT nexus_ensure_window_partitions($1::bigint[]) AS n',
        [ahead],
      );
      return res.rows[0]?.n ?? 0;
    });
    for (const w of ahead) this.partitions.add(w);
    let dropped: string[] = [];
    if (this.o.retentionDays > 0 || this.o.rollupRetentionDays > 0) {
      // Fold in what is pending first, so that no pending reading refers to a rollup partition
      // about to go (it would come back, empty but for that reading, at the next job).
      await this.rollUp();
      const rawBefore = this.o.retentionDays > 0 ? now - this.o.retentionDays * DAY : null;
      const rollupBefore =
        this.o.rollupRetentionDays > 0 ? now - this.o.rollupRetentionDays * DAY : null;
      dropped = await this.o.db.transaction(async (tx) => {
        // One dropper at a time: another transaction's listing would still see a partition this
        // one drops, and fail to drop it once this one commits. Each statement after the lock
        // sees what the previous holder dropped.
        // And no rollup under way (another maintain() whose rollUp() ran while this one's found
        // the job busy): a rollup folding into a partition dropped here would make it again,
        // for the next maintain() to drop a second time. The rollup lock first, as the sealing
        // job takes it (after its window's), so that no two of them wait for each other.
        await tx.query(`SELECT pg_advisory_xact_lock(${ROLLUP_LOCK})`);
        await tx.query("SELECT pg_advisory_xact_lock(hashtext('nexus_drop_partitions'))");
        const res = await tx.query<{ name: string }>(
          'SELECT nexus_drop_partitions(CASE WHEN $1::bigint IS NULL THEN NULL ELSE nexus_ts($1::bigint) END, CASE WHEN $2::bigint IS NULL THEN NULL ELSE nexus_ts($2::bigint) END) AS name',
          [rawBefore, rollupBefore],
        );
        return res.rows.map((r) => r.name);
      });
      if (dropped.length > 0) this.partitions.clear();
      if (rollupBefore !== null) {
        // The fleet features' tables (migration 009) are kept as long as the rollup; a day or
        // month partly past retention loses its sum (readers take what is left of it).
        for (const [table, key] of ROLLUP_KEPT)
          await this.o.db.query(`DELETE FROM ${table} WHERE ${key} < nexus_ts($1)`, [rollupBefore]);
      }
      const chunks = await chunkRetention(this.o.db, rawBefore, rollupBefore);
      if (dropped.length > 0 || chunks.converted > 0 || chunks.deleted > 0) {
        this.o.logger.info({ dropped, chunks }, 'retention applied');
      }
    }
    return { created, dropped };
  }

  close(): Promise<void> {
    return this.o.db.close();
  }
}
