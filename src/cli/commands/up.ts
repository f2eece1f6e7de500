import { Command } from 'commander';
import { hostname } from 'node:os';
import { sleep } from '../../core/backoff.js';
import { SETTINGS, type Config, type SettingKey } from '../../core/config.js';
import { NexusError, describeError } from '../../core/errors.js';
import type { Gateway } from '../../gateway/app.js';
import type { MemoryQueue } from '../../queue/memory/memory-queue.js';
import { readHeader } from '../../streamer/csv/reader.js';
import { noProgress } from '../../streamer/progress.js';
import type { Simulation } from '../../gateway/schemas/overview.js';
import { RecordPublisher } from '../../queue/record-publisher.js';
import { parseDuration } from '../../core/duration.js';
import { DEFAULT_FLEET, describeFleet, type FleetOptions } from '../../streamer/sim/fleet.js';
import { LiveFleet } from '../../streamer/sim/live.js';
import {
  MEMORY_BACKENDS,
  buildFeed,
  buildQueue,
  buildRegistry,
  buildStore,
  etcdBackends,
  memoryQueue,
} from '../backends.js';
import {
  buildCollector,
  buildStreamer,
  buildGatewayFor,
  member,
  openRoot,
  processMetrics,
  registerMember,
  startTracing,
} from '../compose.js';
import { gatewaySecurity } from '../gateway-security.js';
import { openToAll } from '../auth.js';
import { claimPort, listenFailure, listening, reach } from '../listen.js';
import { lockDirectory } from '../lock.js';
import { exportStoreMetrics, exportQueueGauges } from '../observability.js';
import { pgliteDir, resolveInput } from '../paths.js';
import { addSettings, configFrom, isGiven } from '../settings.js';
import { onShutdown, type ShutdownProgress } from '../signals.js';
import { TUNING } from '../tuning.js';
import { buildScraper, scrapeConfigured } from './scrape.js';
import { summaryLine } from './streamer.js';

/** What the in-process queue holds (read, published, not stored yet), lost if the process ends now. */
function unstored(queue: MemoryQueue | undefined): string | undefined {
  const held = queue?.held();
  if (held === undefined || held.records === 0) return undefined;
  return `${held.records} records read and not yet stored are lost (${held.messages} messages of the in-process queue)`;
}

/** The defaults of `nexus up` that differ from the components' (its --help shows these). */
const UP_DEFAULTS = {
  // A lively loop.
  streamInterval: '1s',
  batchSize: '250',
  workers: '2',
  // Loopback only: the dashboard and the APIs are for this machine unless HOST says otherwise.
  host: '127.0.0.1',
} as const satisfies Partial<Record<SettingKey, string>>;
/**
 * The in-process queue holds records in this process's memory (~0.8 KB each): a short queue, as
 * the store is the bottleneck anyway (measured: 10,000 messages held a whole 500,000-record file,
 * 230 MB more at peak than 200, at the same speed).
 */
const IN_PROCESS_QUEUE_DEPTH = '200';
/**
 * PGlite runs one statement at a time, and each transaction has a fixed cost (the dimensions, the
 * statement, the commit): fewer, larger transactions. The collector takes what is ready, so a
 * trickle still commits at once.
 */
const PGLITE_COLLECT_BATCH = '100';

/**
 * The simulated fleet's defaults in `nexus up`: a reading every 10 s (a dashboard that moves), and
 * a day's jobs and incidents in 2.4 hours (jobs come and go within minutes, a notebook can still
 * sit idle past IDLE_FOR, and the thermal incident starts 6 minutes in).
 */
export const UP_FLEET = { speed: 10, intervalMs: 10_000 } as const;

interface FleetFlags {
  fleetSpeed?: string;
  fleetInterval?: string;
  fleetSeed?: string;
  fleetHosts?: string;
  fleetGpus?: string;
}

const FLEET_FLAGS = [
  'fleetSpeed',
  'fleetInterval',
  'fleetSeed',
  'fleetHosts',
  'fleetGpus',
] as const;

function wholeFlag(
  name: string,
  v: string | undefined,
  fallback: number,
  min: number,
  max: number,
) {
  if (v === undefined) return fallback;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new NexusError('CONFIG_INVALID', `--${name}: a whole number from ${min} to ${max}`);
  return Number(v);
}

/** The simulated fleet's options from the --fleet-* flags, starting at `now` (on the interval). */
export function fleetFromFlags(o: FleetFlags, now: number): FleetOptions {
  const speed = o.fleetSpeed === undefined ? UP_FLEET.speed : Number(o.fleetSpeed);
  if (!Number.isFinite(speed) || speed < 1 || speed > 3600)
    throw new NexusError('CONFIG_INVALID', '--fleet-speed: a number from 1 to 3600');
  const intervalMs =
    o.fleetInterval === undefined
      ? UP_FLEET.intervalMs
      : parseDuration(o.fleetInterval, '--fleet-interval');
  if (intervalMs < 1000 || intervalMs > 300_000)
    throw new NexusError('CONFIG_INVALID', '--fleet-interval: from 1s to 5m');
  return {
    ...DEFAULT_FLEET,
    seed: wholeFlag('fleet-seed', o.fleetSeed, DEFAULT_FLEET.seed, 0, 2 ** 32 - 1),
    hosts: wholeFlag('fleet-hosts', o.fleetHosts, DEFAULT_FLEET.hosts, 1, 64),
    gpusPerHost: wholeFlag('fleet-gpus', o.fleetGpus, DEFAULT_FLEET.gpusPerHost, 1, 16),
    speed,
    intervalMs,
    startMs: Math.floor(now / intervalMs) * intervalMs,
  };
}

/** "Nexus is up" and where it listens, as `nexus up` says them when the first data is servable. */
export function upLines(
  config: Config,
  address: string,
  startupMs: number,
  /** Tokens in NEXUS_DATA_DIR/tokens.json (PGlite), not in PostgreSQL. */
  embeddedTokens = true,
): { url: string; up: string; where: string } {
  const { port, protocol } = new URL(address);
  const to = reach(config.host);
  // The address a person opens: localhost, unless it listens on one other address only.
  const url = to === 'one' ? address : `${protocol}//localhost:${port}`;
  const apis = [
    `REST ${url}/api/v1`,
    ...(config.enableGraphql ? [`GraphQL ${url}/graphql`] : []),
    `Swagger ${url}/swagger/index.html`,
  ];
  const auth =
    config.authMode === 'token'
      ? ` The API needs a token (AUTH_MODE=token): node bin/nexus.js token create --scope read${embeddedTokens ? ' --embedded' : ''}.`
      : (openToAll(config) ?? '');
  return {
    url,
    up: `Nexus is up in ${(startupMs / 1000).toFixed(1)} s: dashboard ${url}/  (${apis.join(', ')})`,
    where: `Listening on ${listening(config.host, address)}${to === 'loopback' ? ': HOST=0.0.0.0 lets other machines in' : ''}.${auth}`,
  };
}

export function upCommand(): Command {
  const cmd = new Command('up')
    .description(
      'Run the whole pipeline in one process: streamer, collector and gateway with the dashboard (embedded queue and PGlite unless ETCD_ENDPOINTS / DB_HOST / DATABASE_URL say otherwise)',
    )
    .option(
      '--csv <file>',
      'DCGM CSV export to stream, looped with live timestamps (the bundled real sample: --csv samples/dcgm_metrics_20250718_134233.csv); without it (nor CSV_FILE), the simulated fleet, live',
    )
    .option(
      '--fleet-speed <n>',
      `simulated fleet: jobs and incidents run this many times faster than the clock (default: ${UP_FLEET.speed}, a day in ${24 / UP_FLEET.speed} h)`,
    )
    .option(
      '--fleet-interval <duration>',
      `simulated fleet: time between readings (default: ${UP_FLEET.intervalMs / 1000}s)`,
    )
    .option('--fleet-seed <n>', `simulated fleet: seed (default: ${DEFAULT_FLEET.seed})`)
    .option('--fleet-hosts <n>', `simulated fleet: hosts (default: ${DEFAULT_FLEET.hosts})`)
    .option(
      '--fleet-gpus <n>',
      `simulated fleet: GPUs per host (default: ${DEFAULT_FLEET.gpusPerHost})`,
    );
  addSettings(
    cmd,
    ['common', 'queue', 'streamer', 'database', 'collector', 'gateway', 'embedded', 'scraper'],
    {
      ...UP_DEFAULTS,
      etcdEndpoints: 'none: the in-process queue',
      dbHost: 'none: PGlite in <data-dir>/pglite',
      maxQueueDepth: `${IN_PROCESS_QUEUE_DEPTH} with the in-process queue, ${SETTINGS.maxQueueDepth.default} with etcd`,
      collectBatch: `${PGLITE_COLLECT_BATCH} with PGlite, ${SETTINGS.collectBatch.default} with PostgreSQL`,
      authMode: 'none on a loopback HOST (as by default), token otherwise',
      rateLimitPerMinute: `0 on a loopback HOST, ${SETTINGS.rateLimitPerMinute.default} otherwise`,
    },
  );
  cmd.action(async (opts: { csv?: string } & FleetFlags) => {
    // The real backends when they are named, as a variable or a flag; embedded ones otherwise.
    const etcd = isGiven(cmd, 'etcdEndpoints');
    const postgres = isGiven(cmd, 'databaseUrl') || isGiven(cmd, 'dbHost');
    const defaults: Partial<Record<SettingKey, string>> = {
      ...UP_DEFAULTS,
      ...(etcd ? {} : { maxQueueDepth: IN_PROCESS_QUEUE_DEPTH }),
      ...(postgres ? {} : { collectBatch: PGLITE_COLLECT_BATCH }),
    };
    const extra: Partial<Record<SettingKey, string>> = {
      ...(opts.csv === undefined ? {} : { csvFile: opts.csv }),
      ...Object.fromEntries(
        Object.entries(defaults).filter(([key]) => !isGiven(cmd, key as SettingKey)),
      ),
    };
    // The API is open without a token only to this machine: on a loopback HOST, AUTH_MODE none
    // and no rate limit (only this machine's own clients reach it), unless they are given.
    const asGiven = configFrom(cmd, extra);
    const loopback: Partial<Record<SettingKey, string>> = Object.fromEntries(
      Object.entries({ authMode: 'none', rateLimitPerMinute: '0' }).filter(
        ([key]) => !isGiven(cmd, key as SettingKey),
      ),
    );
    const config =
      reach(asGiven.host) === 'loopback' ? configFrom(cmd, { ...extra, ...loopback }) : asGiven;
    // No CSV named (--csv, --csv-file, CSV_FILE): the simulated fleet, live.
    const fleet =
      opts.csv === undefined && !isGiven(cmd, 'csvFile')
        ? fleetFromFlags(opts, Date.now())
        : undefined;
    const fleetFlags = FLEET_FLAGS.filter((f) => opts[f] !== undefined);
    if (fleet === undefined && fleetFlags.length > 0) {
      throw new NexusError(
        'CONFIG_INVALID',
        `${fleetFlags.map((f) => `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')}: for the simulated fleet, which nexus up streams only without a CSV (--csv, CSV_FILE)`,
      );
    }
    // A CSV that cannot be read, a TLS or CORS setting the gateway cannot use, a port in use, or a
    // data directory another nexus up holds (a second `make run` must not write into it) stops
    // `nexus up` here, before anything is read, stored or written into its data directory. The
    // port is held from here on: the gateway listens on it only once the store is up, and the
    // streamer reads into the queue meanwhile.
    if (fleet === undefined) await readHeader(resolveInput(config.csvFile));
    const root = openRoot(config);
    const { logger, stack } = root;
    const tls = gatewaySecurity(cmd, root);
    const claim = await claimPort(config.port, config.host);
    stack.push('freeing the port', () => claim.release());
    if (!postgres) {
      try {
        lockDirectory(pgliteDir(config.dataDir), 'nexus up');
      } catch (err) {
        await claim.release();
        throw err;
      }
    }
    const t0 = Date.now();
    // The queue: etcd when ETCD_ENDPOINTS is set, in process otherwise (its records die with the
    // process: a forced exit says how many, and the collector stores them all before stopping).
    const backends = etcd ? etcdBackends(root) : MEMORY_BACKENDS;
    const inProcess = backends.kind === 'memory' ? memoryQueue(root) : undefined;
    const queue = inProcess ?? buildQueue(root, backends, { instance: `nexus-up-${process.pid}` });
    const metrics = processMetrics(root, 'embedded');
    // Streaming starts at once: the queue holds what is read while the store starts.
    const failed: { streamer?: unknown } = {};
    let stopStreaming: () => Promise<void>;
    let simulation: Simulation | undefined;
    if (fleet === undefined) {
      const streamer = await buildStreamer(root, queue, metrics, {
        restart: false,
        // Progress stays quiet: the dashboard shows the ingest rate.
        progress: noProgress,
      });
      const streaming = streamer.run().then(
        (s) => logger.info({ summary: s }, summaryLine(s)),
        (err: unknown) => {
          failed.streamer = err;
          logger.error({ err: describeError(err) }, 'streamer failed');
        },
      );
      stopStreaming = async () => {
        await streamer.stop();
        await streaming;
      };
    } else {
      const live = new LiveFleet({
        fleet,
        publisher: new RecordPublisher({
          queue,
          producer: `simulated-fleet-${hostname()}-${process.pid}`,
          batchSize: config.batchSize,
          maxDepth: config.maxQueueDepth,
        }),
        logger,
        metrics,
      });
      simulation = {
        description: describeFleet(fleet),
        seed: fleet.seed,
        speed: fleet.speed,
        interval_s: fleet.intervalMs / 1000,
        hosts: fleet.hosts,
        gpus_per_host: fleet.gpusPerHost,
        started_at: new Date(fleet.startMs).toISOString(),
      };
      logger.info({ simulation }, simulation.description);
      live.start();
      stopStreaming = async () => {
        await live.stop();
        logger.info(
          { simulated: live.stats },
          `simulated fleet: ${live.stats.records} readings of ${live.stats.published} instants published, ${live.stats.skipped} instants skipped`,
        );
      };
    }
    // From here on a signal stops the pipeline in order. During start-up it stops the reading at
    // once, and start-up then ends in the full stop (the stack), which stores what was read first.
    const shutdown: { requested: boolean; progress: ShutdownProgress | undefined } = {
      requested: false,
      progress: undefined,
    };
    // Read through a function: the flag changes while start-up awaits.
    const stopRequested = (): boolean => shutdown.requested;
    let started = false;
    const STOP_STREAMER = 'stopping the streamer (publishing what it read)';
    onShutdown(
      logger,
      async (_signal, progress) => {
        shutdown.requested = true;
        shutdown.progress = progress;
        if (started) {
          await stack.close(progress);
          return;
        }
        progress.step(STOP_STREAMER);
        await stopStreaming();
        // The graceful stop is over once start-up has closed the rest (the stack) too.
        await stack.finished();
      },
      { atRisk: () => unstored(inProcess) },
    );
    const stopAll = (): Promise<void> => stack.close(shutdown.progress);
    try {
      const { store, ready: storeReady } = await buildStore(
        root,
        postgres
          ? { kind: 'postgres' }
          : { kind: 'pglite', dir: pgliteDir(config.dataDir), template: config.pgliteTemplate },
        'nexus-up',
      );
      try {
        await storeReady;
      } catch (err) {
        await stopStreaming();
        const lost = unstored(inProcess);
        if (lost !== undefined) logger.error(`the store did not start: ${lost}`);
        throw err;
      }
      const registry = buildRegistry(root, backends);
      const feed = buildFeed(root, backends, `up-${process.pid}`);
      startTracing(root, 'embedded');
      exportQueueGauges(metrics, queue);
      exportStoreMetrics(metrics, store);
      const collector = buildCollector(root, {
        metrics,
        queue,
        store,
        registry,
        feed,
        // The in-process queue dies with the process: what it holds is stored before it stops.
        drainOnStop: inProcess !== undefined,
      });
      await collector.start();
      let gateway: Gateway;
      try {
        gateway = await buildGatewayFor(root, {
          metrics,
          store,
          registry,
          feed,
          queue,
          tls,
          checks: [
            { name: 'store', check: () => store.ping() },
            {
              name: 'collector',
              check: async () => {
                const health = collector.health;
                if (!health.ready) throw new NexusError('NOT_READY', health.reasons.join('; '));
              },
            },
          ],
          tokens: postgres ? 'postgres' : 'file',
          // This process owns the queue: dead letters through the API too (admin scope).
          deadLetters: queue,
          // remote_write (ENABLE_REMOTE_WRITE) into this process's queue, the one cluster whose
          // readings its collector stores.
          ...(simulation === undefined ? {} : { simulation }),
          remoteWriteQueue: (cluster) => {
            if (cluster !== queue.clusterId) {
              throw new NexusError(
                'LIMIT_EXCEEDED',
                `remote_write: nexus up stores the readings of one cluster, "${queue.clusterId}" (CLUSTER_ID), not "${cluster.slice(0, 64)}": drop the cluster label (write_relabel_configs) or run a collector for that cluster (distributed mode)`,
              );
            }
            return { queue, close: async () => undefined };
          },
        });
      } catch (err) {
        stack.push('storing what the queue holds', () => collector.stop());
        throw err;
      }
      // The streamer stops first (it publishes what it read), then the collector, which stores
      // everything published (with the in-process queue, everything the queue holds); the
      // gateway, drained first, closes after them.
      stack.push('closing the gateway and the live feed', () => gateway.app.close());
      stack.push('storing what the queue holds', () => collector.stop());
      const state = { stopping: false };
      stack.push(STOP_STREAMER, async () => {
        state.stopping = true;
        gateway.drain();
        await stopStreaming();
      });
      // Scrape targets, when given: the scraper stops before the collector, which stores what it
      // published. Its bound is twice the streamer's, so the looping CSV cannot starve live readings.
      if (scrapeConfigured(config)) {
        const scraper = await buildScraper(root, queue, metrics, {
          maxQueueDepth: 2 * config.maxQueueDepth,
          batchSize: config.batchSize,
        });
        scraper.start();
      }
      started = true;
      await feed.announceListener(`up-${process.pid}`).catch(() => undefined);
      await registerMember(
        root,
        registry,
        member(root, 'embedded', `up-${hostname()}-${process.pid}`),
      );
      if (stopRequested()) {
        await stopAll();
        return;
      }
      let address: string;
      try {
        // The port handed over: the gateway ready first, so that it is free only for a moment.
        await gateway.app.ready();
        await claim.release();
        address = await gateway.app.listen({ port: claim.port, host: config.host });
      } catch (err) {
        if (stopRequested()) {
          await stopAll();
          return;
        }
        // Without its gateway the pipeline is of no use: stop it all (what was acked is stored).
        throw listenFailure(err, config.port, config.host);
      }
      // "Up" once the first readings are stored and servable.
      for (;;) {
        if (state.stopping) return;
        // A CSV the streamer cannot stream (not a DCGM export): nothing would ever be up.
        if (failed.streamer !== undefined) {
          throw failed.streamer instanceof Error
            ? failed.streamer
            : new NexusError('INTERNAL', describeError(failed.streamer));
        }
        const clusters = await store.reader.clusters().catch(() => []);
        if (clusters.some((c) => c.last_seen !== undefined)) break;
        await sleep(TUNING.upPollMs);
      }
      const startupMs = Date.now() - t0;
      const { url, up, where } = upLines(config, address, startupMs, !postgres);
      // The JSON line for log collectors on stdout; the same for a person on stderr, terminal or not.
      logger.info({ url: `${url}/`, startup_ms: startupMs }, up);
      process.stderr.write(
        process.stderr.isTTY ? `\n  ${up}\n  ${where}\n  Ctrl-C to stop.\n\n` : `${up}\n${where}\n`,
      );
    } catch (err) {
      // Whatever stopped the start-up: stop the rest in order (what was acked is stored).
      if (!started) await stopStreaming();
      await stopAll().catch(() => undefined);
      throw err;
    }
  });
  return cmd;
}
