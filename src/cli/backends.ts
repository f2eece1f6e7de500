import { readFileSync } from 'node:fs';
import type { Config } from '../core/config.js';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { EtcdQueue } from '../queue/etcd/etcd-queue.js';
import type { EtcdConnectionOptions } from '../etcd/client.js';
import { MemoryQueue } from '../queue/memory/memory-queue.js';
import type { QueueOptions } from '../queue/options.js';
import type { Queue } from '../queue/types.js';
import { EtcdFeed } from '../registry/etcd/etcd-feed.js';
import { EtcdRegistry } from '../registry/etcd/etcd-registry.js';
import type { LiveFeed } from '../registry/feed.js';
import { MemoryFeed } from '../registry/memory/memory-feed.js';
import { MemoryRegistry } from '../registry/memory/memory-registry.js';
import type { FleetRegistry } from '../registry/types.js';
import { PostgresDatabase, type PostgresConnection } from '../store/postgres/database.js';
import { SqlStore } from '../store/sql-store.js';
import type { TelemetryStore } from '../store/types.js';

export function etcdConnection(config: Config): EtcdConnectionOptions {
  return {
    endpoints: config.etcdEndpoints,
    username: config.etcdUsername,
    password: config.etcdPassword,
    caFile: config.etcdCaFile,
    certFile: config.etcdCertFile,
    keyFile: config.etcdKeyFile,
    timeoutMs: config.etcdTimeout,
  };
}

export function queueOptions(config: Config, logger: Logger): QueueOptions {
  return {
    clusterId: config.clusterId,
    maxAttempts: config.maxAttempts,
    retry: { baseMs: config.retryBase, capMs: config.retryCap, jitter: 0.5 },
    messageTtlMs: config.messageTtl,
    leaseTtlMs: config.leaseTtl,
    pollTimeoutMs: config.pollTimeout,
    logger,
  };
}

/** Picks the queue backend the configuration asks for. */
export function createQueue(config: Config, logger: Logger, instance?: string): Queue {
  const options = queueOptions(config, logger);
  if (config.queueBackend === 'memory') return new MemoryQueue(options);
  return new EtcdQueue({
    ...options,
    prefix: config.queuePrefix,
    connection: etcdConnection(config),
    enableWatch: config.enableWatchApi,
    ...(instance === undefined ? {} : { instance }),
  });
}

/** The PostgreSQL connection the configuration describes (DATABASE_URL wins over DB_*). */
export function postgresConnection(config: Config, applicationName: string): PostgresConnection {
  let password = config.dbPassword;
  if (config.dbPasswordFile !== '') {
    try {
      password = readFileSync(config.dbPasswordFile, 'utf8').trim();
    } catch (err) {
      throw new NexusError(
        'CONFIG_INVALID',
        `DB_PASSWORD_FILE: cannot read ${config.dbPasswordFile}: ${describeError(err)}`,
      );
    }
  }
  return {
    ...(config.databaseUrl === '' ? {} : { url: config.databaseUrl }),
    host: config.dbHost,
    port: config.dbPort,
    database: config.dbName,
    user: config.dbUser,
    password,
    sslMode: config.dbSslMode,
    ...(config.dbSslRootCert === '' ? {} : { sslRootCertFile: config.dbSslRootCert }),
    poolSize: config.dbPoolSize > 0 ? config.dbPoolSize : config.workers + 2,
    statementTimeoutMs: config.dbStatementTimeout,
    connectTimeoutMs: config.dbConnectTimeout,
    applicationName,
  };
}

export function createStore(
  config: Config,
  logger: Logger,
  applicationName: string,
): TelemetryStore {
  const db = new PostgresDatabase(postgresConnection(config, applicationName), logger);
  return new SqlStore({
    db,
    logger,
    writeMethod: config.writeMethod,
    retentionDays: config.retentionDays,
    rollupRetentionDays: config.rollupRetentionDays,
    partitionAheadDays: config.partitionAheadDays,
  });
}

/** The fleet registry: in etcd next to the queue, or in memory with the memory queue. */
export function createRegistry(config: Config, queue: Queue, logger: Logger): FleetRegistry {
  if (queue instanceof EtcdQueue) return etcdRegistry(config, queue.etcd, logger);
  return new MemoryRegistry({
    flushIntervalMs: config.liveInterval,
    maxLivePerFlush: config.liveMaxPerFlush,
  });
}

/** The commit feed: on etcd next to the queue, or in process with the memory queue. */
export function createFeed(
  config: Config,
  queue: Queue,
  logger: Logger,
  instance: string,
): LiveFeed {
  if (queue instanceof EtcdQueue) return etcdFeed(config, queue.etcd, logger, instance);
  return new MemoryFeed();
}

export function etcdFeed(
  config: Config,
  client: EtcdQueue['etcd'],
  logger: Logger,
  instance: string,
): LiveFeed {
  return new EtcdFeed({
    client,
    prefix: config.registryPrefix,
    instance,
    ttlMs: 60_000,
    leaseTtlMs: config.leaseTtl,
    logger,
  });
}

export function etcdRegistry(
  config: Config,
  client: EtcdQueue['etcd'],
  logger: Logger,
): FleetRegistry {
  return new EtcdRegistry({
    client,
    prefix: config.registryPrefix,
    flushIntervalMs: config.liveInterval,
    maxLivePerFlush: config.liveMaxPerFlush,
    leaseTtlMs: config.leaseTtl,
    logger,
  });
}

/** A queue on an existing etcd client (read side: stats for the overview). */
export function etcdQueueOn(config: Config, client: EtcdQueue['etcd'], logger: Logger): EtcdQueue {
  return new EtcdQueue({
    ...queueOptions(config, logger),
    prefix: config.queuePrefix,
    client,
    enableWatch: false,
  });
}
