import { NexusError, describeError, isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TelemetryRecord } from '../core/record.js';
import { Dimensions, type ResolvedIds } from './dimensions.js';
import { isIdentityChanged, isSchemaMissing, reidentifier } from './identity.js';
import type { TelemetryReader } from './reader.js';
import { SqlReader } from './sql-reader.js';
import { assertCurrent, migrate } from './migrate.js';
import type {
  Database,
  EngineStats,
  IdentityChanges,
  MigrationResult,
  RollupResult,
  SqlClient,
  TelemetryStore,
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
  /** Daily partitions are created this many days ahead. */
  readonly partitionAheadDays: number;
  /**
   * Fold each write into the rollup and latest values in its own statement instead of leaving
   * it to the rollup job. Default: on PGlite (one connection: no writer waits for another, and
   * the pending table would only add work), off on PostgreSQL.
   */
  readonly foldOnWrite?: boolean;
}

const DAY = 86_400_000;
/** The rollup job vacuums `samples_pending` after moving this many rows. */
const VACUUM_AFTER_ROWS = 500_000;

/** "no partition of relation found for row". */
function isPartitionMissing(err: unknown): boolean {
  return isNexusError(err) && err.details?.sqlstate === '23514' && /partition/i.test(err.message);
}

/**
 * Folds rows (`rows`: time, gpu_id, metric_id, value) into the 1-minute rollup and the latest
 * values, as CTEs `rollup` and `latest`. The upserts are sorted by key, so that concurrent
 * statements take row locks in the same order.
 */
const FOLD = (rows: string): string => `rollup AS (
  INSERT INTO samples_1m AS r (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
  SELECT date_bin('1 minute', time, timestamptz 'epoch'), gpu_id, metric_id, min(value), max(value), sum(value), count(*),
         max(time), (array_agg(value ORDER BY time DESC))[1]
  FROM ${rows}
  GROUP BY 1, 2, 3 ORDER BY 2, 3, 1
  ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET
    min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum, count = r.count + excluded.count,
    last_value = CASE WHEN excluded.last_time >= r.last_time THEN excluded.last_value ELSE r.last_value END,
    last_time = greatest(r.last_time, excluded.last_time)
  RETURNING 1
), latest AS (
  INSERT INTO samples_latest AS l (gpu_id, metric_id, time, value)
  SELECT DISTINCT ON (gpu_id, metric_id) gpu_id, metric_id, time, value FROM ${rows}
  ORDER BY gpu_id, metric_id, time DESC
  ON CONFLICT (gpu_id, metric_id) DO UPDATE SET time = excluded.time, value = excluded.value
    WHERE l.time <= excluded.time
  RETURNING 1
)`;

/**
 * Inserts new readings and skips ones already stored. Then either appends exactly the rows
 * inserted to `samples_pending`, from which the rollup job (`rollUp`) folds them into
 * `samples_1m` and `samples_latest` (migration 002): the write holds no lock another writer
 * needs, as the pending table has no index and no key. Or (`fold`) folds them in itself, in the
 * same statement. The rows are sorted by the primary key so that concurrent writers take the
 * index's locks in the same order.
 */
const UPSERT_FROM = (source: string, fold: boolean): string => `
WITH input AS (
  ${source}
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
SELECT c.inserted,
       -- Which readings were new, only when some were and some were not (a partly redelivered batch).
       CASE WHEN c.inserted > 0 AND c.inserted < c.given
            THEN (SELECT array_agg(nexus_ms(time)::text || ':' || gpu_id || ':' || metric_id) FROM ins) END AS fresh
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
  readonly fresh: string[] | null;
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
const FROM_ARRAYS = `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value
   FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) AS u(t, g, m, v)
   WHERE nexus_expect_identity($5::text)`;
const FROM_STAGE = `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value FROM nexus_stage
   WHERE nexus_expect_identity($1::text)`;

/**
 * The telemetry store on SQL: one implementation for PostgreSQL and PGlite (same migrations, same
 * statements); only the bulk-load path differs (COPY where the database has it).
 */
export class SqlStore implements TelemetryStore {
  readonly backend: 'postgres' | 'pglite';
  readonly reader: TelemetryReader;
  readonly foldsOnWrite: boolean;
  private readonly dims = new Dimensions();
  private readonly partitions = new Set<number>();
  /** Changes of the database's identity noticed here, by the writer and the reader. */
  private readonly changes: IdentityChanges = { database: 0, server: 0 };
  /**
   * The database is not the one the cached ids came from: read its identity, drop the dimension
   * ids and the partitions known, say so. One at a time; a no-op when another write did it.
   */
  private readonly reidentify: () => Promise<void>;
  private remigrating: Promise<void> | undefined;
  private readonly writeMethod: WriteMethod;
  private readonly fromArrays: string;
  private readonly fromStage: string;
  private movedSinceVacuum = 0;

  constructor(private readonly o: SqlStoreOptions) {
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
    this.fromArrays = UPSERT_FROM(FROM_ARRAYS, this.foldsOnWrite);
    this.fromStage = UPSERT_FROM(FROM_STAGE, this.foldsOnWrite);
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
    let partitionsRetried = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.writeOnce(clusterId, records);
      } catch (err) {
        if (attempt < 5 && isIdentityChanged(err)) {
          await this.reidentify();
          continue;
        }
        if (attempt < 5 && isSchemaMissing(err)) {
          await this.remigrate(err);
          continue;
        }
        // "no partition of relation found for row": another process's retention dropped a
        // partition this one had cached (or it is brand new elsewhere). Look again, once.
        if (!partitionsRetried && isPartitionMissing(err)) {
          partitionsRetried = true;
          this.partitions.clear();
          continue;
        }
        throw err;
      }
    }
  }

  private async writeOnce(
    clusterId: string,
    records: readonly TelemetryRecord[],
  ): Promise<WriteResult> {
    const ids = await this.dims.resolve(this.o.db, clusterId, records);
    await this.ensurePartitions(records);
    const res =
      this.writeMethod === 'copy'
        ? await this.o.db.transaction((tx) => this.copy(tx, records, ids))
        : await this.unnest(this.o.db, records, ids);
    return {
      inserted: res.inserted,
      duplicates: records.length - res.inserted,
      ...(res.fresh === null ? {} : { fresh: freshIndexes(res.fresh, records, ids) }),
    };
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
    const res = await db.query<Written>(this.fromArrays, [
      arrayLiteral(t),
      arrayLiteral(ids.gpu),
      arrayLiteral(ids.metric),
      arrayLiteral(v),
      ids.identity,
    ]);
    return res.rows[0] ?? { inserted: 0, fresh: null };
  }

  private async copy(
    tx: SqlClient,
    records: readonly TelemetryRecord[],
    ids: ResolvedIds,
  ): Promise<Written> {
    if (this.o.db.copyInto === undefined) return this.unnest(tx, records, ids);
    await tx.query(
      'CREATE TEMP TABLE IF NOT EXISTS nexus_stage (t bigint, g integer, m smallint, v float8) ON COMMIT DELETE ROWS',
    );
    const lines = new Array<string>(records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      lines[i] =
        `${r?.timestamp ?? 0}\t${ids.gpu[i] ?? 0}\t${ids.metric[i] ?? 0}\t${r?.value ?? 0}\n`;
    }
    await this.o.db.copyInto(tx, 'nexus_stage', ['t', 'g', 'm', 'v'], lines);
    const res = await tx.query<Written>(this.fromStage, [ids.identity]);
    return res.rows[0] ?? { inserted: 0, fresh: null };
  }

  /** Makes sure the partitions for these readings exist (cached: one query per new day). */
  private async ensurePartitions(records: readonly TelemetryRecord[]): Promise<void> {
    const missing = new Set<number>();
    for (const r of records) {
      const day = Math.floor(r.timestamp / DAY) * DAY;
      if (!this.partitions.has(day)) missing.add(day);
    }
    if (missing.size === 0) return;
    const days = [...missing].sort((a, b) => a - b);
    await this.o.db.transaction((tx) =>
      tx.query('SELECT nexus_ensure_partitions($1::bigint[])', [days]),
    );
    for (const d of days) this.partitions.add(d);
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
              `SELECT nexus_ensure_partitions(array_agg(DISTINCT nexus_ms(date_bin('1 day', time, timestamptz 'epoch'))))
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
      await this.o.db.query('VACUUM (SKIP_LOCKED) samples_pending');
    }
    return { ...total, busy: false, ms: Date.now() - started };
  }

  async maintain(now = Date.now()): Promise<{ created: number; dropped: readonly string[] }> {
    const today = Math.floor(now / DAY) * DAY;
    const ahead = Array.from({ length: this.o.partitionAheadDays + 1 }, (_, i) => today + i * DAY);
    const created = await this.o.db.transaction(async (tx) => {
      const res = await tx.query<{ n: number }>(
        'SELECT nexus_ensure_partitions($1::bigint[]) AS n',
        [ahead],
      );
      return res.rows[0]?.n ?? 0;
    });
    for (const d of ahead) this.partitions.add(d);
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
        await tx.query("SELECT pg_advisory_xact_lock(hashtext('nexus_drop_partitions'))");
        const res = await tx.query<{ name: string }>(
          'SELECT nexus_drop_partitions(CASE WHEN $1::bigint IS NULL THEN NULL ELSE nexus_ts($1::bigint) END, CASE WHEN $2::bigint IS NULL THEN NULL ELSE nexus_ts($2::bigint) END) AS name',
          [rawBefore, rollupBefore],
        );
        return res.rows.map((r) => r.name);
      });
      if (dropped.length > 0) {
        this.partitions.clear();
        this.o.logger.info({ dropped }, 'retention dropped partitions');
      }
    }
    return { created, dropped };
  }

  close(): Promise<void> {
    return this.o.db.close();
  }
}
