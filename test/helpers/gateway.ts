import { gatewaySettings } from '../../src/cli/compose.js';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { buildGateway, type Gateway, type GatewayOptions } from '../../src/gateway/app.js';
import type { AuthOptions } from '../../src/gateway/auth/plugin.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { sqlStore } from './pipeline.js';
import { sharedPostgres, uniqueDatabase } from './postgres.js';
import { sampleRows } from './sample.js';

/** The bundled sample as records, parsed independently of the streamer. */
export function sampleRecords(): TelemetryRecord[] {
  return sampleRows().map((r) => ({
    timestamp: r.timestamp,
    metric: r.metric,
    gpu: r.gpu,
    hostname: r.hostname,
    value: r.value,
    device: r.device,
    uuid: r.uuid,
    model: r.model,
    labels: r.labels,
  }));
}

/**
 * No authentication and no rate limits: for the tests of what the API answers, where who asks is
 * beside the point (test/integration/gateway-auth.test.ts tests authentication on every route).
 */
export const NO_AUTH: AuthOptions = {
  mode: 'none',
  metricsAuth: false,
  rateLimit: { perMinute: 0, anonPerMinute: 0 },
};

/**
 * The gateway's options from the default configuration (what `nexus gateway` runs with), load
 * shedding aside: a gateway in a test's process shares its event loop with the test and, on
 * PGlite outside a worker, with every statement, so a busy neighbour (the harness runs two files
 * at once) could stall the loop past MAX_EVENT_LOOP_DELAY and turn an answer into a 503. Load
 * shedding is tested where it is the subject (test/unit/gateway/pressure.test.ts).
 */
export const DEFAULT_GATEWAY = {
  ...gatewaySettings(loadConfig({})),
  pressure: { maxEventLoopDelayMs: 0, maxHeapUsedBytes: 0 },
};

/**
 * What every test gateway is built with: the default configuration (DEFAULT_GATEWAY), no
 * authentication, no health checks, a silent logger; a test adds or overrides the rest.
 */
export function testGatewayOptions(reader: GatewayOptions['reader']) {
  return {
    reader,
    auth: NO_AUTH,
    checks: [],
    logger: silentLogger(),
    ...DEFAULT_GATEWAY,
    version: '0.0.0-test',
  };
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly store: SqlStore;
  readonly feed: MemoryFeed;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A gateway on a fresh database holding the real sample (cluster local-cluster), live feed in
 * memory. `seed` writes what else the test reads before the gateway starts: the gateway's fleet
 * state loads in the background when it starts and learns of later writes from the commit feed
 * or its reconciliation, so what is written after it started is not in its answers at once.
 */
export async function sampleGateway(
  over: Partial<GatewayOptions> = {},
  seed?: (store: SqlStore) => Promise<unknown>,
): Promise<TestGateway> {
  const pg = await sharedPostgres();
  const url = await pg.server.createDatabase(uniqueDatabase('gw'));
  const store = sqlStore(url);
  await store.migrate();
  await store.write('local-cluster', sampleRecords());
  await seed?.(store);
  const feed = new MemoryFeed();
  const gateway = await buildGateway({
    ...testGatewayOptions(store.reader),
    feed,
    checks: [{ name: 'postgres', check: () => store.ping() }],
    graphql: true,
    websocket: true,
    cors: { enabled: true, origins: ['*'] },
    maxPoints: 100_000,
    ...over,
  });
  return {
    gateway,
    store,
    feed,
    url,
    close: async () => {
      await gateway.app.close();
      await feed.close();
      await store.close();
    },
  };
}
