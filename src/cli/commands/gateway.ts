import { Command } from 'commander';
import { hostname } from 'node:os';
import { concernOf, describeError } from '../../core/errors.js';
import { sleep } from '../../core/backoff.js';
import { registryKeyspace } from '../../etcd/keyspace.js';
import { Kv } from '../../etcd/kv.js';
import type { HealthCheck } from '../../gateway/routes/health.js';
import {
  buildFeed,
  buildQueue,
  buildReadReplica,
  buildRegistry,
  buildStore,
  etcdBackends,
} from '../backends.js';
import { etcdAlarms } from '../etcd-alarms.js';
import {
  buildGatewayFor,
  closeOnSignal,
  member,
  openRoot,
  processMetrics,
  registerMember,
  startTracing,
} from '../compose.js';
import { gatewaySecurity } from '../gateway-security.js';
import { boundHeapGrowth } from '../heap.js';
import { listenFailure, listening } from '../listen.js';
import { exportStoreMetrics } from '../observability.js';
import { addSettings, configFrom } from '../settings.js';
import { TUNING } from '../tuning.js';

export function gatewayCommand(): Command {
  const cmd = new Command('gateway').description(
    'Serve the REST, GraphQL and WebSocket APIs (PostgreSQL for history, etcd for live data)',
  );
  addSettings(cmd, ['common', 'queue', 'database', 'collector', 'gateway']);
  cmd.action(async () => {
    const root = openRoot(configFrom(cmd));
    // Its live data is small (the fleet directory, latest values, sockets' state); bursts of
    // requests and live fan-out are garbage that V8 would otherwise let grow to 3-4 times that.
    boundHeapGrowth(100);
    const { config, logger, stack } = root;
    const tls = gatewaySecurity(cmd, root);
    const instance = `gateway-${hostname()}-${process.pid}`;
    const { store } = await buildStore(root, { kind: 'postgres' }, instance);
    // Live data and the fleet come from etcd (ENABLE_NEXUS), whatever QUEUE_BACKEND says: a
    // gateway shares no memory with the collectors.
    const backends = config.enableNexus ? etcdBackends(root) : undefined;
    const feed = backends === undefined ? undefined : buildFeed(root, backends, instance);
    const registry = backends === undefined ? undefined : buildRegistry(root, backends);
    const checks: HealthCheck[] = [{ name: 'postgres', check: () => store.ping() }];
    // A read replica (DATABASE_READ_URL) serves the API's reads; tokens stay on the primary.
    const replica =
      config.databaseReadUrl === '' ? undefined : await buildReadReplica(root, `${instance}-read`);
    if (replica !== undefined) checks.push({ name: 'read-replica', check: () => replica.check() });
    if (backends?.kind === 'etcd') {
      // A read the gateway's etcd role allows (nexus etcd-roles): the registry's clusters, counted.
      // Refused (a configuration error): not ready, and said once, loudly.
      const kv = new Kv(backends.client);
      const clusters = registryKeyspace(config.registryPrefix).clusters;
      let refused = false;
      checks.push({
        name: 'etcd',
        check: async () => {
          await kv.count(clusters).catch((err: unknown) => {
            if (concernOf(err) === 'config' && !refused) {
              refused = true;
              logger.error({ err: describeError(err) }, `not ready: ${describeError(err)}`);
            }
            throw err;
          });
        },
      });
    }
    const metrics = processMetrics(root, 'gateway');
    // etcd's alarms (NOSPACE): the feed's writes fail meanwhile; not ready, saying which.
    if (backends?.kind === 'etcd') checks.push(etcdAlarms(root, backends.client, metrics).probe);
    startTracing(root, 'gateway');
    exportStoreMetrics(metrics, store);
    if (replica !== undefined) {
      // The replica's lag, every few seconds (a gauge; unreachable: left as it was).
      const lag = setInterval(() => {
        replica
          .lagSeconds()
          .then((s) => metrics.readReplicaLag.set(s))
          .catch(() => undefined);
      }, TUNING.replicaLagPollMs);
      lag.unref();
      stack.push('stopping the replica lag poll', () => clearInterval(lag));
    }
    const gateway = await buildGatewayFor(root, {
      metrics,
      store,
      reader: replica?.reader,
      registry,
      feed,
      checks,
      // The queue's depth for the overview, read only.
      queue: backends === undefined ? undefined : buildQueue(root, backends, { watch: false }),
      tls,
      tokens: 'postgres',
      // remote_write (ENABLE_REMOTE_WRITE): the etcd queue of each cluster written to, opened on
      // first use; the gateway's etcd role then needs write on the queue (nexus etcd-roles).
      remoteWriteQueue:
        backends === undefined
          ? undefined
          : (cluster) => {
              const queue = buildQueue(root, backends, {
                watch: false,
                clusterId: cluster,
                instance: `${instance}-rw`,
              });
              return { queue, close: () => queue.close() };
            },
    });
    stack.push('closing the connections to clients', () => gateway.app.close());
    let address: string;
    try {
      address = await gateway.app.listen({ port: config.port, host: config.host });
    } catch (err) {
      await stack.close().catch(() => undefined);
      throw listenFailure(err, config.port, config.host);
    }
    // Not ready first, so that load balancers stop sending; then close connections.
    stack.push('answering the requests in progress', async () => {
      gateway.drain();
      await sleep(Math.min(TUNING.gatewayDrainMs, config.pollTimeout));
    });
    closeOnSignal(root);
    const serves = [
      'REST /api/v1',
      'OpenAPI /openapi.json',
      'Swagger UI /swagger/index.html',
      ...(config.enableGraphql ? ['GraphQL /graphql'] : []),
      ...(config.enableWebsocket ? ['WebSocket /ws'] : []),
    ];
    logger.info(
      { address },
      `gateway listening on ${listening(config.host, address)}${tls === undefined ? '' : ' (HTTPS only)'}: ${serves.join(', ')}`,
    );
    // Listening also keeps the in-memory latest values current (collectors publish only to listeners).
    if (feed !== undefined) {
      await feed
        .announceListener(instance)
        .catch((err: unknown) =>
          logger.warn({ err: describeError(err) }, 'could not announce the live listener yet'),
        );
    }
    if (registry !== undefined)
      await registerMember(root, registry, member(root, 'gateway', instance));
  });
  return cmd;
}

/** The gateway's options that come from the configuration (src/cli/compose.ts). */
