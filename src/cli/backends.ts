import type { Config } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { EtcdQueue } from '../queue/etcd/etcd-queue.js';
import type { EtcdConnectionOptions } from '../etcd/client.js';
import { MemoryQueue } from '../queue/memory/memory-queue.js';
import type { QueueOptions } from '../queue/options.js';
import type { Queue } from '../queue/types.js';

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
