import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { createEtcdClient, type EtcdConnectionOptions } from '../etcd/client.js';
import { EtcdQueue } from '../queue/etcd/etcd-queue.js';
import { MemoryQueue } from '../queue/memory/memory-queue.js';
import type { QueueOptions } from '../queue/options.js';
import type { Queue } from '../queue/types.js';
import { EtcdFeed } from '../registry/etcd/etcd-feed.js';
import { EtcdRegistry } from '../registry/etcd/etcd-registry.js';
import type { LiveFeed } from '../registry/feed.js';
import { MemoryFeed } from '../registry/memory/memory-feed.js';
import { MemoryRegistry } from '../registry/memory/memory-registry.js';
import type { FleetRegistry } from '../registry/types.js';
import type { PostgresConnection } from '../store/postgres/database.js';
import type { Database, TelemetryStore } from '../store/types.js';
import type { TelemetryReader } from '../store/reader.js';
import type { ResourceStack } from './stack.js';
import { TUNING } from './tuning.js';

/**
 * The backends: where the queue, the fleet registry, the commit feed and the store live. A command
 * chooses them once, explicitly; each builder here switches on the choice (a new backend fails to
 * compile until every builder says what it builds on it) and pushes how to close what it opened on
 * the command's stack.
 */

export type EtcdClient = ReturnType<typeof createEtcdClient>;

/** What every builder needs: the configuration, the process's logger and its resource stack. */
export interface Root {
  readonly config: Config;
  readonly logger: Logger;
  readonly stack: ResourceStack;
}

/**
 * Where the queue, the registry and the feed live: on one etcd client shared by all three, or in
 * this process's memory (`nexus up` on its own, QUEUE_BACKEND=memory).
 */
export type Backends =
  { readonly kind: 'etcd'; readonly client: EtcdClient } | { readonly kind: 'memory' };

/** Where the store lives: PostgreSQL, or PGlite (embedded PostgreSQL) in a data directory. */
export type StoreBackend =
  | {
      readonly kind: 'postgres';
      /** Act as this role once connected (nexus migrate --create-roles: the owner role). */
      readonly role?: string;
    }
  | {
      readonly kind: 'pglite';
      readonly dir: string;
      /** PGLITE_TEMPLATE: a dump to start a fresh directory from ('': the build's template). */
      readonly template?: string;
    };

export function etcdConnection(config: Config, logger?: Logger): EtcdConnectionOptions {
  return {
    logger,
    endpoints: config.etcdEndpoints,
    username: config.etcdUsername,
    password: config.etcdPassword,
    caFile: config.etcdCaFile,
    certFile: config.etcdCertFile,
    keyFile: config.etcdKeyFile,
    timeoutMs: config.etcdTimeout,
  };
}

/** The etcd backends: one client (ETCD_ENDPOINTS), closed after everything built on it. */
export function etcdBackends({ config, stack, logger }: Root): Backends {
  const client = createEtcdClient(etcdConnection(config, logger));
  stack.push('closing the connection to etcd', () => client.close());
  return { kind: 'etcd', client };
}

export const MEMORY_BACKENDS: Backends = { kind: 'memory' };

/** The backends QUEUE_BACKEND names. */
export function configuredBackends(root: Root): Backends {
  switch (root.config.queueBackend) {
    case 'etcd':
      return etcdBackends(root);
    case 'memory':
      return MEMORY_BACKENDS;
  }
}

export function queueOptions(config: Config, logger: Logger): QueueOptions {
  return {
    clusterId: config.clusterId,
    maxAttempts: config.maxAttempts,
    retry: { baseMs: config.retryBase, capMs: config.retryCap, jitter: TUNING.retryJitter },
    messageTtlMs: config.messageTtl,
    leaseTtlMs: config.leaseTtl,
    pollTimeoutMs: config.pollTimeout,
    logger,
  };
}

export interface QueueChoice {
  /** Names this process in the queue's leases and claims (etcd). */
  readonly instance?: string;
  /** Wake consumers with etcd watch (default ENABLE_WATCH_API); false for a queue only read. */
  readonly watch?: boolean;
  /** The cluster whose queue this is (default CLUSTER_ID): remote_write opens one per cluster. */
  readonly clusterId?: string;
}

/** The queue on the chosen backends. */
export function buildQueue(root: Root, backends: Backends, choice: QueueChoice = {}): Queue {
  const { config, logger, stack } = root;
  switch (backends.kind) {
    case 'etcd': {
      const queue = new EtcdQueue({
        ...queueOptions(config, logger),
        ...(choice.clusterId === undefined ? {} : { clusterId: choice.clusterId }),
        prefix: config.queuePrefix,
        compression: config.queueCompression,
        client: backends.client,
        enableWatch: choice.watch ?? config.enableWatchApi,
        ...(choice.instance === undefined ? {} : { instance: choice.instance }),
      });
      stack.push('closing the queue', () => queue.close());
      return queue;
    }
    case 'memory':
      return memoryQueue(root);
  }
}

/**
 * The in-process queue, as such: what it holds dies with the process (`nexus up` says how much a
 * forced exit would lose, and stores it all before stopping).
 */
export function memoryQueue({ config, logger, stack }: Root): MemoryQueue {
  const queue = new MemoryQueue(queueOptions(config, logger));
  stack.push('closing the queue', () => queue.close());
  return queue;
}

/** The fleet registry on the chosen backends. */
export function buildRegistry({ config, logger, stack }: Root, backends: Backends): FleetRegistry {
  let registry: FleetRegistry;
  switch (backends.kind) {
    case 'etcd':
      registry = new EtcdRegistry({
        client: backends.client,
        prefix: config.registryPrefix,
        flushIntervalMs: config.liveInterval,
        maxLivePerFlush: config.liveMaxPerFlush,
        leaseTtlMs: config.leaseTtl,
        logger,
      });
      break;
    case 'memory':
      registry = new MemoryRegistry({
        flushIntervalMs: config.liveInterval,
        maxLivePerFlush: config.liveMaxPerFlush,
      });
      break;
  }
  stack.push('closing the fleet registry', () => registry.close());
  return registry;
}

/** The commit feed (collectors to gateways' live subscribers) on the chosen backends. */
export function buildFeed(
  { config, logger, stack }: Root,
  backends: Backends,
  instance: string,
): LiveFeed {
  let feed: LiveFeed;
  switch (backends.kind) {
    case 'etcd':
      feed = new EtcdFeed({
        client: backends.client,
        prefix: config.registryPrefix,
        instance,
        ttlMs: TUNING.feedListenerTtlMs,
        leaseTtlMs: config.leaseTtl,
        logger,
      });
      break;
    case 'memory':
      feed = new MemoryFeed();
      break;
  }
  stack.push('closing the live feed', () => feed.close());
  return feed;
}

/**
 * The PostgreSQL connection the configuration describes (DATABASE_URL wins over DB_*). A secret
 * from a file (DB_PASSWORD_FILE, DATABASE_URL_FILE) is in the configuration already.
 */
export function postgresConnection(config: Config, applicationName: string): PostgresConnection {
  const file = (path: string): string | undefined => (path === '' ? undefined : path);
  return {
    ...(config.databaseUrl === '' ? {} : { url: config.databaseUrl }),
    host: config.dbHost,
    port: config.dbPort,
    database: config.dbName,
    user: config.dbUser,
    password: config.dbPassword,
    sslMode: config.dbSslMode,
    tls: {
      rootCertFile: file(config.dbSslRootCert),
      certFile: file(config.dbSslCert),
      keyFile: file(config.dbSslKey),
    },
    poolSize: config.dbPoolSize > 0 ? config.dbPoolSize : config.workers + 2,
    statementTimeoutMs: config.dbStatementTimeout,
    connectTimeoutMs: config.dbConnectTimeout,
    applicationName,
  };
}

/** The gateway's read replica (DATABASE_READ_URL): its reader, a readiness check, its lag. */
export interface ReadReplica {
  readonly reader: TelemetryReader;
  /** Reachable, and a standby or a primary (a check for /readyz). */
  check(): Promise<void>;
  /** Seconds behind the primary (0: replayed all it received; a primary: 0). */
  lagSeconds(): Promise<number>;
}

/**
 * A read replica for the gateway's reads: its own pool (DB_POOL_SIZE connections, the DB_SSL*
 * settings, DATABASE_READ_URL instead of DATABASE_URL), read by a SqlReader of its own; closed
 * with the process. The fleet directory's change tracking reads snapshots only, so it works on a
 * hot standby (docs/scaling.md).
 */
export async function buildReadReplica(
  { config, logger, stack }: Root,
  applicationName: string,
): Promise<ReadReplica> {
  const [{ PostgresDatabase }, { SqlReader }] = await Promise.all([
    import('../store/postgres/database.js'),
    import('../store/sql-reader.js'),
  ]);
  const db = new PostgresDatabase(
    { ...postgresConnection(config, applicationName), url: config.databaseReadUrl },
    logger,
  );
  stack.push('closing the read replica', () => db.close());
  return {
    reader: new SqlReader(db, { logger }),
    check: async () => {
      await db.query('SELECT 1');
    },
    lagSeconds: async () => {
      const res = await db.query<{ lag: number | string | null }>(
        `SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END AS lag`,
      );
      return Number(res.rows[0]?.lag ?? 0);
    },
  };
}

/**
 * The store on the chosen backend, and when it is ready. The database drivers load only in the
 * processes that open a store. PostgreSQL connects on first use (`ready` at once). PGlite starts in
 * a worker thread and is not waited for here: `ready` settles when it has started (seconds: a
 * fresh directory is unpacked from the build's template, or made by initdb when there is none).
 */
export async function buildStore(
  { config, logger, stack }: Root,
  backend: StoreBackend,
  applicationName: string,
): Promise<{ store: TelemetryStore; ready: Promise<void>; db: Database }> {
  const { SqlStore } = await import('../store/sql-store.js');
  const settings = {
    logger,
    retentionDays: config.retentionDays,
    rollupRetentionDays: config.rollupRetentionDays,
    partitionAheadMs: config.partitionAhead,
    compactDelayMs: config.compactDelay,
    dimensionCacheMax: config.dimensionCacheMax,
  };
  let store: TelemetryStore;
  let ready: Promise<void>;
  let database: Database;
  switch (backend.kind) {
    case 'postgres': {
      const { PostgresDatabase } = await import('../store/postgres/database.js');
      const connection = postgresConnection(config, applicationName);
      const db = new PostgresDatabase(
        backend.role === undefined ? connection : { ...connection, role: backend.role },
        logger,
      );
      database = db;
      store = new SqlStore({ ...settings, db, writeMethod: config.writeMethod });
      ready = Promise.resolve();
      break;
    }
    case 'pglite': {
      const [{ PGliteDatabase }, { pristineTemplate }] = await Promise.all([
        import('../store/pglite/database.js'),
        import('../store/pglite/template.js'),
      ]);
      const t0 = Date.now();
      // A fresh directory starts from a pristine data directory (PGLITE_TEMPLATE, or the build's)
      // instead of running initdb.
      const template =
        backend.template === undefined || backend.template === ''
          ? await pristineTemplate(backend.dir)
          : await pristineTemplate(backend.dir, backend.template);
      // In a worker thread, PGlite's statements do not block the streamer, collector and gateway.
      const db = new PGliteDatabase(backend.dir, template, { worker: true });
      ready = db.ready().then(() => {
        logger.info(
          { dir: backend.dir, ms: Date.now() - t0, from_template: template !== undefined },
          'embedded PostgreSQL (PGlite) ready',
        );
      });
      database = db;
      store = new SqlStore({ ...settings, db, writeMethod: 'unnest' });
      break;
    }
  }
  stack.push('closing the store', () => store.close());
  return { store, ready, db: database };
}
