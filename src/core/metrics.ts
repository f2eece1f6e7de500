import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every Prometheus metric Nexus exposes, in one place (docs/operations.md explains each). A process
 * creates one NexusMetrics; components take it as an option and update what concerns them; a
 * process without it (tests, libraries) pays nothing. Gauges that reflect state elsewhere (queue
 * depth, pool use, fleet readings) are computed on scrape through `onScrape` callbacks.
 */
export class NexusMetrics {
  readonly registry = new Registry();

  // Streamer.
  readonly recordsRead = new Counter({
    name: 'nexus_streamer_records_read_total',
    help: 'Valid records read from CSV files',
    registers: [this.registry],
  });
  readonly recordsPublished = new Counter({
    name: 'nexus_streamer_records_published_total',
    help: 'Records published to the queue',
    registers: [this.registry],
  });
  readonly recordsRejected = new Counter({
    name: 'nexus_streamer_records_rejected_total',
    help: 'Malformed CSV rows set aside, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rejectsUnwritten = new Counter({
    name: 'nexus_streamer_rejects_unwritten_total',
    help: 'Malformed rows not written: the rejects file was full',
    registers: [this.registry],
  });
  readonly sentinels = new Counter({
    name: 'nexus_streamer_sentinels_total',
    help: 'DCGM "not supported" readings skipped',
    registers: [this.registry],
  });
  readonly batchesPublished = new Counter({
    name: 'nexus_streamer_batches_published_total',
    help: 'Queue messages published',
    registers: [this.registry],
  });
  readonly publishErrors = new Counter({
    name: 'nexus_streamer_publish_errors_total',
    help: 'Failed publish attempts (retried)',
    registers: [this.registry],
  });
  readonly publishDuration = new Histogram({
    name: 'nexus_streamer_publish_duration_seconds',
    help: 'Time to publish one message and move its checkpoint',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly messageBytes = new Histogram({
    name: 'nexus_streamer_message_bytes',
    help: 'Size of each message published, as etcd stores it (compressed unless QUEUE_COMPRESSION=none)',
    buckets: [4096, 16_384, 65_536, 131_072, 262_144, 524_288, 1_048_576, 1_150_000],
    registers: [this.registry],
  });
  readonly backpressure = new Gauge({
    name: 'nexus_streamer_backpressure',
    help: '1 while the streamer waits: the queue at MAX_QUEUE_DEPTH, or etcd short of space (ETCD_QUOTA_BYTES, an alarm)',
    registers: [this.registry],
  });
  readonly simulatedInstants = new Counter({
    name: 'nexus_simulated_instants_total',
    help: 'Instants of the simulated fleet (nexus up without a CSV), published or skipped (why)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly etcdAlarms = new Gauge({
    name: 'nexus_etcd_alarms',
    help: 'etcd alarms raised (1) by type: NOSPACE, CORRUPT',
    labelNames: ['alarm'] as const,
    registers: [this.registry],
  });
  readonly queueUnavailable = new Gauge({
    name: 'nexus_streamer_queue_unavailable',
    help: '1 while the streamer waits for etcd to come back',
    registers: [this.registry],
  });
  readonly filePosition = new Gauge({
    name: 'nexus_streamer_file_position_ratio',
    help: 'How far through its file the streamer is (0 to 1)',
    registers: [this.registry],
  });

  // Queue (consumer side counters; depth gauges are collected on scrape).
  readonly queueMessages = new Gauge({
    name: 'nexus_queue_messages',
    help: 'Messages in the queue by state: ready, in_flight, delayed (waiting to retry), dead',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly queueOldestAge = new Gauge({
    name: 'nexus_queue_oldest_message_age_seconds',
    help: 'Age of the message at the head of the queue (0 when empty)',
    registers: [this.registry],
  });
  readonly queueExpired = new Gauge({
    name: 'nexus_queue_expired_messages',
    help: 'Messages the message TTL moved to the dead letters, since the queue began',
    registers: [this.registry],
  });
  readonly queueLostLeases = new Gauge({
    name: 'nexus_queue_lost_message_leases',
    help: 'Message leases that expired with no consumer sweeping them, since the queue began: the messages on them were removed by the TTL, uncounted',
    registers: [this.registry],
  });
  readonly messagesRetried = new Counter({
    name: 'nexus_queue_messages_retried_total',
    help: 'Messages delivered again: given back after a failure, or reclaimed from a collector that died',
    registers: [this.registry],
  });
  readonly messagesDeadLettered = new Counter({
    name: 'nexus_queue_messages_dead_lettered_total',
    help: 'Messages or records moved to the dead letters',
    registers: [this.registry],
  });
  readonly etcdErrors = new Counter({
    name: 'nexus_etcd_errors_total',
    help: 'etcd requests that failed, by component',
    labelNames: ['component'] as const,
    registers: [this.registry],
  });

  // Collector.
  readonly recordsConsumed = new Counter({
    name: 'nexus_collector_records_consumed_total',
    help: 'Records claimed from the queue',
    registers: [this.registry],
  });
  readonly recordsStored = new Counter({
    name: 'nexus_collector_records_stored_total',
    help: 'Records stored in PostgreSQL for the first time (rows inserted)',
    registers: [this.registry],
  });
  readonly recordsDuplicate = new Counter({
    name: 'nexus_collector_records_duplicate_total',
    help: 'Records already stored (redelivered), skipped',
    registers: [this.registry],
  });
  readonly recordsRefused = new Counter({
    name: 'nexus_collector_records_refused_total',
    help: 'Records refused (out of bounds, or by PostgreSQL), dead-lettered with the reason',
    registers: [this.registry],
  });
  readonly batchRecords = new Histogram({
    name: 'nexus_collector_batch_records',
    help: 'Records per database transaction',
    buckets: [10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000],
    registers: [this.registry],
  });
  readonly commitDuration = new Histogram({
    name: 'nexus_collector_commit_duration_seconds',
    help: 'Time to store one batch (all its transactions)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly lostAcks = new Counter({
    name: 'nexus_collector_lost_acks_total',
    help: 'Acks whose claim had lapsed (the batch is stored again, idempotently, by another collector)',
    registers: [this.registry],
  });
  readonly rollupReadings = new Counter({
    name: 'nexus_rollup_readings_total',
    help: 'Stored readings folded into the 1-minute rollup and latest values by this process',
    registers: [this.registry],
  });
  readonly rollupRuns = new Counter({
    name: 'nexus_rollup_runs_total',
    help: 'Runs of the rollup job by this process (runs skipped because another process held the job are not counted)',
    registers: [this.registry],
  });
  readonly rollupDuration = new Histogram({
    name: 'nexus_rollup_duration_seconds',
    help: 'Time of one run of the rollup job',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly rollupErrors = new Counter({
    name: 'nexus_rollup_errors_total',
    help: 'Failed runs of the rollup job (retried at the next interval; reads still see the pending readings)',
    registers: [this.registry],
  });
  readonly eventsRecorded = new Counter({
    name: 'nexus_collector_events_total',
    help: 'GPU events (xid, throttle, health) detected in the readings this collector stored',
    registers: [this.registry],
  });
  readonly eventReadingsIgnored = new Counter({
    name: 'nexus_collector_events_ignored_total',
    help: 'Event readings not newer than detection had seen of their GPU (redelivered, late)',
    registers: [this.registry],
  });
  readonly retirements = new Counter({
    name: 'nexus_gpu_retirements_total',
    help: 'GPUs the retirement job marked stopped (retired) or reappeared',
    labelNames: ['change'] as const,
    registers: [this.registry],
  });
  readonly retireErrors = new Counter({
    name: 'nexus_retire_errors_total',
    help: 'Failed runs of the retirement job (retried at the next run, every 30 s)',
    registers: [this.registry],
  });
  readonly compactReadings = new Counter({
    name: 'nexus_compact_readings_total',
    help: 'Hot readings sealed into compressed chunks by the sealing job of this process',
    registers: [this.registry],
  });
  readonly compactWindows = new Counter({
    name: 'nexus_compact_windows_total',
    help: 'Windows sealed (or merged into: late readings) by the sealing job of this process',
    registers: [this.registry],
  });
  readonly compactDuration = new Histogram({
    name: 'nexus_compact_duration_seconds',
    help: 'Time of one run of the sealing job that sealed something',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly compactErrors = new Counter({
    name: 'nexus_compact_errors_total',
    help: 'Failed runs of the sealing job (retried at the next interval; the readings stay in the hot tier, readable)',
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'nexus_store_errors_total',
    help: 'PostgreSQL failures, by kind: unavailable (retried) or refused (the data)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly identityChanges = new Counter({
    name: 'nexus_store_identity_changes_total',
    help: 'The database is another than the cached ids came from: database (re-created, restored) or server (restarted, failed over)',
    labelNames: ['change'] as const,
    registers: [this.registry],
  });
  readonly fleetGaugesLeftOut = new Gauge({
    name: 'nexus_fleet_gauges_gpus_left_out',
    help: 'Live GPUs the per-GPU fleet gauges (nexus_gpu_temperature_celsius and the others) leave out: the fleet has more than FLEET_GAUGES_MAX_GPUS (0: every GPU is exported)',
    registers: [this.registry],
  });
  readonly readReplicaLag = new Gauge({
    name: 'nexus_gateway_read_replica_lag_seconds',
    help: 'How far the read replica of the gateway (DATABASE_READ_URL) is behind the primary: 0 when it has replayed all the WAL it received, else seconds since the commit of the last transaction it replayed',
    registers: [this.registry],
  });
  readonly poolConnections = new Gauge({
    name: 'nexus_pg_pool_connections',
    help: 'PostgreSQL pool connections by state: total, idle, waiting (requests queued for one)',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly engineBusy = new Counter({
    name: 'nexus_pglite_busy_seconds_total',
    help: 'Seconds the embedded PGlite engine spent executing statements (one thread: a rate near 1 means the embedded store is saturated)',
    registers: [this.registry],
  });
  readonly engineStatements = new Counter({
    name: 'nexus_pglite_statements_total',
    help: 'Statements the embedded PGlite engine executed',
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'nexus_ready',
    help: '1 when the component is ready (dependencies reachable, not draining)',
    labelNames: ['component'] as const,
    registers: [this.registry],
  });

  // Gateway.
  readonly httpDuration = new Histogram({
    name: 'nexus_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly graphqlDuration = new Histogram({
    name: 'nexus_graphql_request_duration_seconds',
    help: 'GraphQL operation duration by type',
    labelNames: ['operation'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly wsClients = new Gauge({
    name: 'nexus_websocket_clients',
    help: 'Open WebSocket connections (/ws and GraphQL subscriptions)',
    registers: [this.registry],
  });
  readonly wsRefused = new Counter({
    name: 'nexus_websocket_refused_total',
    help: 'WebSocket connections closed at once for a limit, by close code (1013: gateway full, 4029: too many from one address)',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly wsBacklog = new Gauge({
    name: 'nexus_websocket_backlog_bytes',
    help: 'Unsent live telemetry held for WebSocket clients (a message shared by many counts once)',
    registers: [this.registry],
  });
  readonly authFailures = new Counter({
    name: 'nexus_auth_failures_total',
    help: 'Requests refused by authentication (401) or authorization (403), by reason: missing, malformed, invalid, expired, revoked, forbidden',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly httpRefused = new Counter({
    name: 'nexus_http_refused_total',
    help: 'API requests refused before they ran: too many from one address (429), queue full or wait too long (503), gateway under pressure (503)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly encodedCache = new Counter({
    name: 'nexus_gateway_encoded_cache_total',
    help: 'Latest-values answers served from the cache of encoded answers (hit) or built for the request (miss), by Content-Encoding',
    labelNames: ['result', 'encoding'] as const,
    registers: [this.registry],
  });
  readonly fleetRowsRead = new Counter({
    name: 'nexus_gateway_fleet_rows_read_total',
    help: 'Fleet rows (clusters, hosts, GPUs, workloads, latest values) the gateway read from the store, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly fleetReloads = new Counter({
    name: 'nexus_gateway_fleet_reloads_total',
    help: 'Refreshes of the fleet state of the gateway: full (paged loads) or incremental (changes only, a reconciliation slice)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly httpQueued = new Gauge({
    name: 'nexus_http_queued_requests',
    help: 'API requests waiting for a turn (API_MAX_CONCURRENT are served at once)',
    registers: [this.registry],
  });
  readonly graphqlRefused = new Counter({
    name: 'nexus_graphql_refused_total',
    help: 'GraphQL operations refused or stopped for a limit: cost (estimated or counted), depth, answer size, time',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly wsDropped = new Counter({
    name: 'nexus_websocket_dropped_readings_total',
    help: 'Readings not sent to slow WebSocket clients (their buffer was full)',
    registers: [this.registry],
  });
  readonly liveReadings = new Counter({
    name: 'nexus_live_feed_readings_total',
    help: 'Readings received from the commit feed',
    registers: [this.registry],
  });

  // Prometheus remote_write (gateway, ENABLE_REMOTE_WRITE).
  readonly remoteWriteRequests = new Counter({
    name: 'nexus_remote_write_requests_total',
    help: 'remote_write requests answered, by status code: 204 stored, 400 malformed (Prometheus drops it), 401/403 auth, 503 queue full or unavailable (Prometheus retries)',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly remoteWriteSamples = new Counter({
    name: 'nexus_remote_write_samples_total',
    help: 'remote_write samples of the requests answered 204 (a refused request comes again whole), by outcome: received, stored (in the queue), ignored (not a DCGM series, REMOTE_WRITE_ACCEPT), stale (staleness markers), sentinel (DCGM no-value), rejected (see nexus_remote_write_rejected_total)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly remoteWriteRejected = new Counter({
    name: 'nexus_remote_write_rejected_total',
    help: 'remote_write samples of accepted series not stored, by reason: value (NaN/Inf), timestamp, labels (no gpu or Hostname, bad labels)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  // The fleet (gateway), from the latest stored values.
  readonly gpuTemperature = new Gauge({
    name: 'nexus_gpu_temperature_celsius',
    help: 'Latest GPU temperature (DCGM_FI_DEV_GPU_TEMP)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuUtilization = new Gauge({
    name: 'nexus_gpu_utilization_percent',
    help: 'Latest GPU utilisation (DCGM_FI_DEV_GPU_UTIL)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuPower = new Gauge({
    name: 'nexus_gpu_power_watts',
    help: 'Latest power draw (DCGM_FI_DEV_POWER_USAGE)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuMemoryUsed = new Gauge({
    name: 'nexus_gpu_memory_used_bytes',
    help: 'Latest framebuffer memory used (DCGM_FI_DEV_FB_USED, which DCGM gives in MiB)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuMemoryFree = new Gauge({
    name: 'nexus_gpu_memory_free_bytes',
    help: 'Latest framebuffer memory free (DCGM_FI_DEV_FB_FREE, which DCGM gives in MiB)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuPowerViolation = new Gauge({
    name: 'nexus_gpu_power_violation_seconds',
    help: 'Time throttled by power limits (DCGM_FI_DEV_POWER_VIOLATION, which DCGM gives in ns)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuLastSeen = new Gauge({
    name: 'nexus_gpu_last_reading_timestamp_seconds',
    help: 'Time of the newest reading of the GPU',
    labelNames: ['cluster', 'host', 'gpu', 'uuid'] as const,
    registers: [this.registry],
  });
  readonly gpuXid = new Gauge({
    name: 'nexus_gpu_xid_info',
    help: 'The latched XID code of the GPU, its severity (value 1)',
    labelNames: ['cluster', 'host', 'gpu', 'uuid', 'code', 'severity'] as const,
    registers: [this.registry],
  });
  readonly gpuWorkload = new Gauge({
    name: 'nexus_gpu_workload_info',
    help: 'The Kubernetes workload currently on the GPU (value 1)',
    labelNames: ['cluster', 'host', 'gpu', 'namespace', 'pod', 'container'] as const,
    registers: [this.registry],
  });

  readonly gpuIdle = new Gauge({
    name: 'nexus_gpu_idle_seconds',
    help: 'How long a GPU held by a pod has stayed below IDLE_UTIL, for the GPUs /idle lists',
    labelNames: ['cluster', 'host', 'gpu', 'namespace', 'pod', 'container'] as const,
    registers: [this.registry],
  });

  // Scraper (`nexus scrape`): one series per target, removed when the target goes.
  readonly scrapeUp = new Gauge({
    name: 'nexus_scrape_up',
    help: '1 if the last scrape of the target succeeded (answered 200 with a body in the size bound), else 0',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly scrapeDuration = new Gauge({
    name: 'nexus_scrape_duration_seconds',
    help: 'Time the last scrape of the target took (request, parse and publish)',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly scrapeSamplesScraped = new Counter({
    name: 'nexus_scrape_samples_scraped_total',
    help: 'Sample lines read from the target',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly scrapeSamplesPublished = new Counter({
    name: 'nexus_scrape_samples_published_total',
    help: 'Readings from the target published to the queue',
    labelNames: ['target'] as const,
    registers: [this.registry],
  });
  readonly scrapeSamplesRejected = new Counter({
    name: 'nexus_scrape_samples_rejected_total',
    help: 'Samples from the target that are not readings, by reason (a malformed line, NaN/Inf, a label out of bounds...)',
    labelNames: ['target', 'reason'] as const,
    registers: [this.registry],
  });
  readonly scrapeSamplesIgnored = new Counter({
    name: 'nexus_scrape_samples_ignored_total',
    help: 'Samples from the target left out by design: not-dcgm (a series of another exporter), sentinel (DCGM "not supported")',
    labelNames: ['target', 'reason'] as const,
    registers: [this.registry],
  });
  readonly scrapesSkipped = new Counter({
    name: 'nexus_scrape_skipped_total',
    help: 'Scrapes whose readings were not published, by reason: backpressure (skipped: the queue at MAX_QUEUE_DEPTH), publish-failed (the queue refused or did not answer after retries)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly scrapeTargets = new Gauge({
    name: 'nexus_scrape_targets',
    help: 'Scrape targets by source: static (SCRAPE_TARGETS), file (SCRAPE_TARGETS_FILE), kubernetes',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly scrapeDiscoveryErrors = new Counter({
    name: 'nexus_scrape_discovery_errors_total',
    help: 'Failed reads of a target source (a bad targets file, the Kubernetes API); the last good targets are kept',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  private readonly scrapers: (() => Promise<void>)[] = [];

  /**
   * `cluster` labels every series of a component that serves one cluster (streamer, collector),
   * so that queues of different clusters stay apart in one Prometheus; the gateway, which serves
   * them all, labels its fleet gauges one by one instead.
   */
  constructor(options: {
    component: string;
    cluster?: string;
    version?: string;
    processMetrics?: boolean;
  }) {
    this.registry.setDefaultLabels({
      component: options.component,
      ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
    });
    if (options.processMetrics !== false) this.collectProcessMetrics();
    new Gauge({
      name: 'nexus_build_info',
      help: 'The running version of Nexus (value 1)',
      labelNames: ['version', 'node_version'] as const,
      registers: [this.registry],
    }).set({ version: options.version ?? 'unknown', node_version: process.version }, 1);
  }

  /**
   * prom-client's process and Node.js metrics, except its three "active" gauges, whose names end
   * in _total as only counters may (promtool refuses them): one gauge by resource type instead.
   */
  private collectProcessMetrics(): void {
    collectDefaultMetrics({ register: this.registry, prefix: 'nexus_' });
    for (const name of ['handles', 'requests', 'resources'])
      this.registry.removeSingleMetric(`nexus_nodejs_active_${name}_total`);
    for (const name of ['handles', 'requests', 'resources'])
      this.registry.removeSingleMetric(`nexus_nodejs_active_${name}`);
    new Gauge({
      name: 'nexus_nodejs_active_resources',
      help: 'Resources keeping the event loop alive, by type (sockets, timers, file handles...)',
      labelNames: ['type'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const type of process.getActiveResourcesInfo())
          counts.set(type, (counts.get(type) ?? 0) + 1);
        for (const [type, n] of counts) this.set({ type }, n);
      },
    });
  }

  /** Runs before every scrape, to refresh gauges that mirror state elsewhere. */
  onScrape(fn: () => Promise<void>): void {
    this.scrapers.push(fn);
  }

  /** The Prometheus text exposition. Scrape callbacks that fail leave their gauges as they were. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    await Promise.all(this.scrapers.map((fn) => fn().catch(() => undefined)));
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
