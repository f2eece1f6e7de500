import type { TelemetryRecord } from '../core/record.js';
import type { TelemetryReader } from './reader.js';

/** Result rows of a query. */
export interface QueryResult<R> {
  readonly rows: R[];
  readonly rowCount: number;
}

/** How a statement is run. */
export interface QueryOptions {
  /**
   * The statement is one of a few texts run again and again (a hot read): the database may keep
   * it prepared on each connection, parsed once instead of at every run (PostgreSQL; PGlite and
   * transactions ignore it).
   */
  readonly prepare?: boolean;
}

/** One connection, or one transaction, that runs SQL. */
export interface SqlClient {
  query<R = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<R>>;
}

/**
 * What the shared SQL store needs from a database: PostgreSQL through node-postgres, or PGlite.
 * Errors leave as NexusError: STORE_UNAVAILABLE (retryable) or STORE_REJECTED (the data).
 */
export interface Database extends SqlClient {
  readonly backend: 'postgres' | 'pglite';
  transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T>;
  /**
   * Bulk-loads rows into a (temporary) table within a transaction, if the database can COPY.
   * `lines` are tab-separated text-format rows, each ending in a newline.
   */
  copyInto?(
    tx: SqlClient,
    table: string,
    columns: readonly string[],
    lines: readonly string[],
  ): Promise<void>;
  /** Connection pool use, where there is a pool. */
  poolStats?(): { total: number; idle: number; waiting: number };
  /** Work of an engine running in this process (PGlite): see `EngineStats`. */
  engineStats?(): EngineStats;
  close(): Promise<void>;
}

/**
 * What an in-process engine (PGlite, one thread) has done since it started: statements executed
 * and the time spent executing them. Busy time growing as fast as the clock means the engine's
 * thread is saturated.
 */
export interface EngineStats {
  readonly statements: number;
  readonly busySeconds: number;
}

export interface WriteResult {
  /** Rows inserted (new readings). */
  readonly inserted: number;
  /** Rows already stored (a redelivered batch). */
  readonly duplicates: number;
  /**
   * When only some records were new: the indexes of those. Absent when all or none were (then
   * `inserted` says which).
   */
  readonly fresh?: readonly number[];
  /**
   * Events detected (src/store/events.ts), when the batch held event metrics: `recorded` new,
   * `ignored` event readings not newer than their GPU's detection state (redelivered or late).
   */
  readonly events?: { readonly recorded: number; readonly ignored: number };
}

/** What one run of the rollup job did. */
export interface RollupResult {
  /** Pending readings folded in. */
  readonly moved: number;
  /** Rollup rows (GPU, metric, minute) inserted or updated. */
  readonly buckets: number;
  /** Latest values inserted or advanced. */
  readonly latest: number;
  /** Another session was running the job; this call did nothing. */
  readonly busy: boolean;
  readonly ms: number;
}

/** What one run of the retirement job did. */
export interface RetireResult {
  /** GPUs retired now ('stopped' events). */
  readonly stopped: number;
  /** GPUs back ('reappeared' events). */
  readonly reappeared: number;
  /** Another session was running the job; this call did nothing. */
  readonly busy: boolean;
}

/** What one run of the sealing job (`compact`) did. */
export interface CompactResult {
  /** Windows sealed or merged into (those that had hot readings). */
  readonly windows: number;
  /** Of those, windows sealed before: late readings merged into their chunks. */
  readonly merged: number;
  /** Hot readings moved into chunks. */
  readonly readings: number;
  /** Chunks written (new or re-encoded). */
  readonly chunks: number;
  /** Readings found in the hot tier and in their chunk both (kept once). */
  readonly ties: number;
  /** Hot partitions dropped once emptied. */
  readonly dropped: readonly string[];
  /** Another session was running the job; this call stopped early. */
  readonly busy: boolean;
  readonly ms: number;
}

/** The records a write stored for the first time. */
export function freshRecords<T>(records: readonly T[], result: WriteResult): readonly T[] {
  if (result.inserted === 0) return [];
  if (result.fresh === undefined) return records;
  return result.fresh.map((i) => records[i]).filter((r): r is T => r !== undefined);
}

export type WriteMethod = 'copy' | 'unnest';

/**
 * Changes of the database's identity (`nexus_identity()`, migration 003) this process noticed, by
 * its writer and its reader (each drops the ids it cached).
 */
export interface IdentityChanges {
  /** The database was replaced (dropped and re-created, restored from a dump). */
  database: number;
  /** The same database, on a server that restarted or failed over. */
  server: number;
}

export interface MigrationResult {
  readonly applied: readonly string[];
  readonly current: number;
}

/**
 * Where telemetry is stored: PostgreSQL (distributed) or PGlite (embedded). Both run the same
 * migrations and SQL and pass the same conformance suite.
 */
export interface TelemetryStore {
  readonly backend: 'postgres' | 'pglite';
  /** The read side, for the gateway. */
  readonly reader: TelemetryReader;
  /** Dimension ids this process keeps in memory, of each kind (DIMENSION_CACHE_MAX). */
  readonly dimensionsCached: { hosts: number; gpus: number; workloads: number };
  /** Applies pending migrations under an advisory lock (many processes may call it at once). */
  migrate(): Promise<MigrationResult>;
  /**
   * Stores readings of one cluster in one transaction, idempotently: a reading already stored
   * (same GPU, metric and instant) is skipped. The new readings are pending for `rollUp`; reads
   * see them at once either way.
   */
  write(clusterId: string, records: readonly TelemetryRecord[]): Promise<WriteResult>;
  /**
   * Whether `write` folds its readings into the rollup and latest values itself; then nothing
   * is ever pending and the rollup job need not run.
   */
  readonly foldsOnWrite: boolean;
  /**
   * Folds readings stored since the last call into the 1-minute rollup and the latest values
   * (one session at a time across processes; a concurrent call returns `busy`), in transactions
   * of up to `chunk` readings until none is pending.
   */
  rollUp(chunk?: number): Promise<RollupResult>;
  /**
   * The retirement job (src/store/retire.ts): retires GPUs whose last reading is more than
   * `staleAfterMs` older than their cluster's newest ('stopped' events) and brings back those
   * reporting again ('reappeared'). One session at a time across processes (`busy` otherwise).
   */
  retire(staleAfterMs: number): Promise<RetireResult>;
  /**
   * The usage job (migrations 011, 015, 016): recomputes the 10-minute slices of `usage_10m`
   * marked by writes since (marks at least 30 s old) and merges their highest utilisation into
   * `util_peaks`, then the hours of `usage_1h` from their slices and the days of `usage_1d` from
   * their hours and the months of `usage_1mo` from their days, one session at a time across
   * processes.
   */
  rollUpUsage(): Promise<UsageRollUp>;
  /**
   * The sealing job (migration 004): turns every hot window that ended at least the store's
   * compaction delay before `now` into compressed per-series chunks, merges late readings into
   * the chunks of windows sealed before, and drops the emptied hot partitions. One session at a
   * time across processes (another returns `busy`); safe to kill at any point.
   */
  compact(options?: {
    readonly now?: number;
    readonly delayMs?: number;
    /**
     * Seal only windows whose hot partitions took no insert since this store's previous pass
     * (the collectors' periodic job: a backfill is sealed once it is done, not under it).
     */
    readonly quiet?: boolean;
  }): Promise<CompactResult>;
  /** Creates partitions ahead and applies retention. */
  maintain(now?: number): Promise<{ created: number; dropped: readonly string[] }>;
  /** Throws unless the database answers and the schema is current. */
  ping(): Promise<void>;
  /** Connection pool use (PostgreSQL), for the metrics. */
  poolStats(): { total: number; idle: number; waiting: number } | undefined;
  /** The embedded engine's work (PGlite); undefined on PostgreSQL. */
  engineStats(): EngineStats | undefined;
  /** Changes of the database's identity noticed so far (see `IdentityChanges`). */
  identityChanges(): IdentityChanges;
  close(): Promise<void>;
}

/** What a run of the usage job did. */
export interface UsageRollUp {
  /** Slices recomputed from the minutes into `usage_10m`. */
  readonly slices: number;
  /** Hours rewritten into `usage_1h` from their six slices. */
  readonly hours: number;
  /** Days rewritten into `usage_1d` from their hours. */
  readonly days: number;
  /** Months rewritten into `usage_1mo` from their days. */
  readonly months: number;
  /**
   * Slices computed without their highest utilisation readings merged into `util_peaks` (before
   * migration 016, or by an earlier release's job since), merged now: the job's last turn (slices
   * it computes itself are merged as it computes them).
   */
  readonly peaks: number;
  /** Another session holds the job's lock: nothing done. */
  readonly busy: boolean;
}
