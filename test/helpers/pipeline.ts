import pg from 'pg';
import { silentLogger, type Logger } from '../../src/core/logger.js';
import { Collector, type CollectorOptions } from '../../src/collector/collector.js';
import { EtcdRegistry } from '../../src/registry/etcd/etcd-registry.js';
import { PostgresDatabase } from '../../src/store/postgres/database.js';
import { SqlStore, type SqlStoreOptions } from '../../src/store/sql-store.js';
import type { EtcdQueue } from '../../src/queue/etcd/etcd-queue.js';
import { etcdQueue } from './queues.js';

export function postgresDatabase(url: string, poolSize = 6): PostgresDatabase {
  return new PostgresDatabase(
    {
      url,
      host: '',
      port: 0,
      database: '',
      user: '',
      password: '',
      sslMode: 'disable',
      poolSize,
      statementTimeoutMs: 60_000,
      connectTimeoutMs: 3000,
      applicationName: 'nexus-test',
    },
    silentLogger(),
  );
}

export function sqlStore(
  url: string,
  logger: Logger = silentLogger(),
  options: Partial<SqlStoreOptions> = {},
): SqlStore {
  return testStore(postgresDatabase(url), logger, options);
}

/**
 * A store on `db` as the tests use one: no retention, no partitions ahead, no sealing for an hour
 * (PostgreSQL or PGlite).
 */
export function testStore(
  db: SqlStoreOptions['db'],
  logger: Logger = silentLogger(),
  options: Partial<SqlStoreOptions> = {},
): SqlStore {
  return new SqlStore({
    db,
    logger,
    writeMethod: 'unnest',
    retentionDays: 0,
    rollupRetentionDays: 0,
    partitionAheadMs: 0,
    compactDelayMs: 3_600_000,
    ...options,
  });
}

export interface RunningCollector {
  readonly collector: Collector;
  readonly queue: EtcdQueue;
  readonly registry: EtcdRegistry;
  readonly store: SqlStore;
  stop(): Promise<void>;
}

/** A collector in this process, on its own queue client, store and registry. */
export async function startCollector(
  input: { endpoint: string; url: string; cluster: string; leaseTtlMs?: number },
  over: Partial<CollectorOptions> = {},
): Promise<RunningCollector> {
  const queue = etcdQueue(input.endpoint, input.cluster, { leaseTtlMs: input.leaseTtlMs ?? 3000 });
  const store = sqlStore(input.url);
  const registry = new EtcdRegistry({
    client: queue.etcd,
    prefix: `/nexus-test/${input.cluster}`,
    flushIntervalMs: 200,
    maxLivePerFlush: 5000,
    leaseTtlMs: 3000,
    logger: silentLogger(),
  });
  const collector = new Collector({
    queue,
    store,
    registry,
    clusterId: input.cluster,
    workers: 2,
    batchMessages: 10,
    pollTimeoutMs: 500,
    outageBackoff: { baseMs: 100, capMs: 1000 },
    maintenanceIntervalMs: 0,
    rollupIntervalMs: 200,
    logger: silentLogger(),
    ...over,
  });
  await collector.start();
  return {
    collector,
    queue,
    registry,
    store,
    stop: async () => {
      await collector.stop();
      await registry.close();
      await store.close();
      await queue.close();
    },
  };
}

/** One value from a SQL query. */
export async function scalar<T = number>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const res = await client.query(sql, params);
    const row = res.rows[0] as Record<string, unknown> | undefined;
    const v = row === undefined ? undefined : Object.values(row)[0];
    return (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v) as T;
  } finally {
    await client.end();
  }
}

export async function rows<T>(url: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns whether it did. */
export async function until(
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 200,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
