import { isNexusError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { TelemetryRecord } from '../core/record.js';
import { Dimensions, type ResolvedIds } from './dimensions.js';
import type { TelemetryReader } from './reader.js';
import { SqlReader } from './sql-reader.js';
import { assertCurrent, migrate } from './migrate.js';
import type {
  Database,
  MigrationResult,
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
}

const DAY = 86_400_000;

/**
 * Inserts new readings, skips ones already stored, and keeps `samples_latest` and `samples_1m` in
 * step with exactly the rows inserted, in one statement. The rows are sorted by the primary key
 * so that concurrent writers take row locks in the same order.
 */
const UPSERT_FROM = (source: string): string => `
WITH input AS (
  ${source}
), ins AS (
  INSERT INTO samples (time, gpu_id, metric_id, value)
  SELECT time, gpu_id, metric_id, value FROM input ORDER BY gpu_id, metric_id, time
  ON CONFLICT DO NOTHING
  RETURNING time, gpu_id, metric_id, value
), rollup AS (
  INSERT INTO samples_1m AS r (bucket, gpu_id, metric_id, min, max, sum, count, last_time, last_value)
  SELECT date_bin('1 minute', time, timestamptz 'epoch'), gpu_id, metric_id, min(value), max(value), sum(value), count(*),
         max(time), (array_agg(value ORDER BY time DESC))[1]
  FROM ins GROUP BY 1, 2, 3 ORDER BY 2, 3, 1
  ON CONFLICT (gpu_id, metric_id, bucket) DO UPDATE SET
    min = least(r.min, excluded.min), max = greatest(r.max, excluded.max),
    sum = r.sum + excluded.sum, count = r.count + excluded.count,
    last_value = CASE WHEN excluded.last_time >= r.last_time THEN excluded.last_value ELSE r.last_value END,
    last_time = greatest(r.last_time, excluded.last_time)
  RETURNING 1
), latest AS (
  INSERT INTO samples_latest AS l (gpu_id, metric_id, time, value)
  SELECT DISTINCT ON (gpu_id, metric_id) gpu_id, metric_id, time, value FROM ins
  ORDER BY gpu_id, metric_id, time DESC
  ON CONFLICT (gpu_id, metric_id) DO UPDATE SET time = excluded.time, value = excluded.value
    WHERE l.time <= excluded.time
  RETURNING 1
)
SELECT c.inserted, (SELECT count(*) FROM rollup)::int AS buckets, (SELECT count(*) FROM latest)::int AS latest,
       -- Which readings were new, only when some were and some were not (a partly redelivered batch).
       CASE WHEN c.inserted > 0 AND c.inserted < c.given
            THEN (SELECT array_agg(nexus_ms(time)::text || ':' || gpu_id || ':' || metric_id) FROM ins) END AS fresh
FROM (SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM input)::int AS given) c`;

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

const FROM_ARRAYS = UPSERT_FROM(
  `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value
   FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::float8[]) AS u(t, g, m, v)`,
);
const FROM_STAGE = UPSERT_FROM(
  `SELECT nexus_ts(t) AS time, g AS gpu_id, m AS metric_id, v AS value FROM nexus_stage`,
);

/**
 * The telemetry store on SQL: one implementation for PostgreSQL and PGlite (same migrations, same
 * statements); only the bulk-load path differs (COPY where the database has it).
 */
export class SqlStore implements TelemetryStore {
  readonly backend: 'postgres' | 'pglite';
  readonly reader: TelemetryReader;
  private readonly dims = new Dimensions();
  private readonly partitions = new Set<number>();
  private readonly writeMethod: WriteMethod;

  constructor(private readonly o: SqlStoreOptions) {
    this.backend = o.db.backend;
    this.reader = new SqlReader(o.db);
    this.writeMethod = o.writeMethod === 'copy' && o.db.copyInto !== undefined ? 'copy' : 'unnest';
  }

  migrate(): Promise<MigrationResult> {
    return migrate(this.o.db, this.o.logger);
  }

  poolStats(): { total: number; idle: number; waiting: number } | undefined {
    return this.o.db.poolStats?.();
  }

  async ping(): Promise<void> {
    await this.o.db.query('SELECT 1');
    await assertCurrent(this.o.db);
  }

  async write(clusterId: string, records: readonly TelemetryRecord[]): Promise<WriteResult> {
    if (records.length === 0) return { inserted: 0, duplicates: 0 };
    const ids = await this.dims.resolve(this.o.db, clusterId, records);
    for (let attempt = 1; ; attempt++) {
      await this.ensurePartitions(records);
      try {
        const res = await this.o.db.transaction((tx) =>
          this.writeMethod === 'copy' ? this.copy(tx, records, ids) : this.unnest(tx, records, ids),
        );
        return {
          inserted: res.inserted,
          duplicates: records.length - res.inserted,
          ...(res.fresh === null ? {} : { fresh: freshIndexes(res.fresh, records, ids) }),
        };
      } catch (err) {
        // "no partition of relation found for row": another process's retention dropped a
        // partition this one had cached (or it is brand new elsewhere). Look again, once.
        if (
          attempt === 1 &&
          isNexusError(err) &&
          err.details?.sqlstate === '23514' &&
          /partition/i.test(err.message)
        ) {
          this.partitions.clear();
          continue;
        }
        throw err;
      }
    }
  }

  private async unnest(
    tx: SqlClient,
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
    const res = await tx.query<Written>(FROM_ARRAYS, [
      arrayLiteral(t),
      arrayLiteral(ids.gpu),
      arrayLiteral(ids.metric),
      arrayLiteral(v),
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
    const res = await tx.query<Written>(FROM_STAGE);
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
