import { readFileSync } from 'node:fs';
import { NexusError } from './errors.js';
import { parseDuration } from './duration.js';

/**
 * Every setting of every component, in one table: its environment variable, its command-line
 * flag, its type, default and help. The CLI builds its flags, the configuration reference and the
 * frozen Config objects from this table, so none of them can drift from the others.
 */
type Kind = 'string' | 'int' | 'number' | 'bool' | 'duration' | 'list' | 'enum';

export interface SettingSpec {
  readonly env: string;
  readonly flag: string;
  readonly kind: Kind;
  readonly default?: string;
  readonly help: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Never printed or logged. */
  readonly secret?: boolean;
  readonly group:
    | 'common'
    | 'queue'
    | 'streamer'
    | 'collector'
    | 'database'
    | 'gateway'
    | 'embedded'
    | 'roles'
    | 'scraper';
}

export const SETTINGS = {
  clusterId: {
    env: 'CLUSTER_ID',
    flag: 'cluster-id',
    kind: 'string',
    default: 'local-cluster',
    help: 'Telemetry cluster identifier',
    group: 'common',
  },
  etcdEndpoints: {
    env: 'ETCD_ENDPOINTS',
    flag: 'etcd-endpoints',
    kind: 'list',
    default: 'localhost:2379',
    help: 'etcd endpoints, comma-separated (http:// is assumed; use https:// for TLS)',
    group: 'common',
  },
  etcdUsername: {
    env: 'ETCD_USERNAME',
    flag: 'etcd-username',
    kind: 'string',
    default: '',
    help: 'etcd RBAC user (optional)',
    group: 'common',
  },
  etcdPassword: {
    env: 'ETCD_PASSWORD',
    flag: 'etcd-password',
    kind: 'string',
    default: '',
    help: 'etcd RBAC password (optional)',
    secret: true,
    group: 'common',
  },
  etcdCaFile: {
    env: 'ETCD_CA_FILE',
    flag: 'etcd-ca-file',
    kind: 'string',
    default: '',
    help: 'CA bundle for etcd TLS (optional)',
    group: 'common',
  },
  etcdCertFile: {
    env: 'ETCD_CERT_FILE',
    flag: 'etcd-cert-file',
    kind: 'string',
    default: '',
    help: 'Client certificate for etcd mutual TLS (optional)',
    group: 'common',
  },
  etcdKeyFile: {
    env: 'ETCD_KEY_FILE',
    flag: 'etcd-key-file',
    kind: 'string',
    default: '',
    help: 'Client key for etcd mutual TLS (optional)',
    secret: true,
    group: 'common',
  },
  etcdTimeout: {
    env: 'ETCD_TIMEOUT',
    flag: 'etcd-timeout',
    kind: 'duration',
    default: '5s',
    help: 'Deadline of each etcd request',
    group: 'common',
  },
  logLevel: {
    env: 'LOG_LEVEL',
    flag: 'log-level',
    kind: 'enum',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    help: 'Logging level',
    group: 'common',
  },
  metricsPort: {
    env: 'METRICS_PORT',
    flag: 'metrics-port',
    kind: 'int',
    default: '0',
    min: 0,
    max: 65535,
    help: 'Port of the /metrics, /healthz and /readyz endpoints of the streamer and collector (0: off)',
    group: 'common',
  },
  dataDir: {
    env: 'NEXUS_DATA_DIR',
    flag: 'data-dir',
    kind: 'string',
    default: '.data',
    help: 'Directory for local state (rejects files, embedded database)',
    group: 'common',
  },
  pgliteTemplate: {
    env: 'PGLITE_TEMPLATE',
    flag: 'pglite-template',
    kind: 'string',
    default: '',
    help: "nexus up: a PGlite data directory dump (PGlite's dumpDataDir, gzipped or not) a fresh embedded database starts from (default: the pristine one the build made; without it, initdb)",
    group: 'embedded',
  },
  queueBackend: {
    env: 'QUEUE_BACKEND',
    flag: 'queue-backend',
    kind: 'enum',
    default: 'etcd',
    choices: ['etcd', 'memory'],
    help: 'Message queue backend',
    group: 'queue',
  },
  queuePrefix: {
    env: 'MESSAGE_QUEUE_PREFIX',
    flag: 'queue-prefix',
    kind: 'string',
    default: '/telemetry/queue',
    help: 'etcd key prefix of the message queue',
    group: 'queue',
  },
  queueCompression: {
    env: 'QUEUE_COMPRESSION',
    flag: 'queue-compression',
    kind: 'enum',
    default: 'zlib',
    choices: ['zlib', 'none'],
    help: 'How the etcd queue writes messages: zlib (a sixth of the bytes to store and send) or none (JSON, for collectors older than compression; every collector since reads both)',
    group: 'queue',
  },
  maxAttempts: {
    env: 'MAX_ATTEMPTS',
    flag: 'max-attempts',
    kind: 'int',
    default: '5',
    min: 1,
    max: 1000,
    help: 'Deliveries of a failing message before it is dead-lettered',
    group: 'queue',
  },
  retryBase: {
    env: 'RETRY_BASE',
    flag: 'retry-base',
    kind: 'duration',
    default: '1s',
    help: 'Delay before the first retry of a failed message (doubles each attempt, with jitter)',
    group: 'queue',
  },
  retryCap: {
    env: 'RETRY_CAP',
    flag: 'retry-cap',
    kind: 'duration',
    default: '5m',
    help: 'Longest delay between retries',
    group: 'queue',
  },
  messageTtl: {
    env: 'MESSAGE_TTL',
    flag: 'message-ttl',
    kind: 'duration',
    default: '7d',
    help: 'Time a message may wait in the queue; expiring messages are moved to the dead-letter prefix',
    group: 'queue',
  },
  leaseTtl: {
    env: 'LEASE_TTL',
    flag: 'lease-ttl',
    kind: 'duration',
    default: '10s',
    help: "Session lease of a consumer: a dead consumer's messages return to the queue after it",
    group: 'queue',
  },
  pollTimeout: {
    env: 'POLL_TIMEOUT',
    flag: 'poll-timeout',
    kind: 'duration',
    default: '5s',
    help: 'Polling interval when no watch event arrives (watch is the normal wake-up)',
    group: 'queue',
  },
  enableWatchApi: {
    env: 'ENABLE_WATCH_API',
    flag: 'enable-watch-api',
    kind: 'bool',
    default: 'true',
    help: 'Wake consumers with etcd watch (otherwise poll every POLL_TIMEOUT)',
    group: 'queue',
  },
  csvFile: {
    env: 'CSV_FILE',
    flag: 'csv-file',
    kind: 'string',
    default: 'samples/dcgm_metrics_20250718_134233.csv',
    help: "DCGM CSV export to stream (a relative path from the working directory, then the package root; a bare file name also from the package's samples/)",
    group: 'streamer',
  },
  batchSize: {
    env: 'BATCH_SIZE',
    flag: 'batch-size',
    kind: 'int',
    default: '100',
    min: 1,
    max: 10000,
    help: 'Records per queue message',
    group: 'streamer',
  },
  streamInterval: {
    env: 'STREAM_INTERVAL',
    flag: 'stream-interval',
    kind: 'duration',
    default: '3s',
    help: 'Delay between batches (0 streams as fast as the queue takes them)',
    group: 'streamer',
  },
  loopMode: {
    env: 'LOOP_MODE',
    flag: 'loop-mode',
    kind: 'bool',
    default: 'true',
    help: 'Stream the file again and again',
    group: 'streamer',
  },
  timestampMode: {
    env: 'TIMESTAMP_MODE',
    flag: 'timestamp-mode',
    kind: 'enum',
    default: 'auto',
    choices: ['auto', 'original', 'live'],
    help: 'original: keep the file timestamps; live: shift each batch to the present; auto: live in loop mode, original otherwise',
    group: 'streamer',
  },
  maxQueueDepth: {
    env: 'MAX_QUEUE_DEPTH',
    flag: 'max-queue-depth',
    kind: 'int',
    default: '10000',
    min: 1,
    help: 'The streamer waits while the queue holds this many messages or more',
    group: 'streamer',
  },
  etcdQuotaBytes: {
    env: 'ETCD_QUOTA_BYTES',
    flag: 'etcd-quota-bytes',
    kind: 'int',
    default: '2147483648',
    min: 0,
    help: "etcd's --quota-backend-bytes: the streamer waits while etcd's database in use is at 80% of it or above, or an etcd alarm (NOSPACE) is raised (0: no space check)",
    group: 'streamer',
  },
  publishConcurrency: {
    env: 'PUBLISH_CONCURRENCY',
    flag: 'publish-concurrency',
    kind: 'int',
    default: '8',
    min: 1,
    max: 64,
    help: 'Queue publishes in flight at once',
    group: 'streamer',
  },
  streamId: {
    env: 'STREAM_ID',
    flag: 'stream-id',
    kind: 'string',
    default: '',
    help: 'Name of this stream for its checkpoint (default: derived from cluster and file path)',
    group: 'streamer',
  },
  rejectsFile: {
    env: 'REJECTS_FILE',
    flag: 'rejects-file',
    kind: 'string',
    default: '',
    help: 'Where malformed rows are written (default: <data-dir>/rejects/<file>.rejects.csv)',
    group: 'streamer',
  },
  rejectsMaxBytes: {
    env: 'REJECTS_MAX_BYTES',
    flag: 'rejects-max-bytes',
    kind: 'int',
    default: '10485760',
    min: 0,
    help: 'Largest rejects file, in bytes: further malformed rows are counted but not written (0: no file)',
    group: 'streamer',
  },
  progress: {
    env: 'PROGRESS',
    flag: 'progress',
    kind: 'enum',
    default: 'auto',
    choices: ['auto', 'bar', 'log', 'off'],
    help: 'Progress display: a bar on a terminal, log lines otherwise',
    group: 'streamer',
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    flag: 'database-url',
    kind: 'string',
    default: '',
    help: 'PostgreSQL URL (postgres://user:password@host:port/db); wins over the DB_* settings',
    secret: true,
    group: 'database',
  },
  databaseReadUrl: {
    env: 'DATABASE_READ_URL',
    flag: 'database-read-url',
    kind: 'string',
    default: '',
    help: "A read replica (hot standby) of the database for the gateway's telemetry and fleet reads (postgres://...; TLS as the DB_SSL* settings say); API tokens stay on DATABASE_URL. Empty: everything on DATABASE_URL. docs/scaling.md",
    secret: true,
    group: 'gateway',
  },
  dbHost: {
    env: 'DB_HOST',
    flag: 'db-host',
    kind: 'string',
    default: 'localhost',
    help: 'PostgreSQL host',
    group: 'database',
  },
  dbPort: {
    env: 'DB_PORT',
    flag: 'db-port',
    kind: 'int',
    default: '5433',
    min: 1,
    max: 65535,
    help: 'PostgreSQL port',
    group: 'database',
  },
  dbName: {
    env: 'DB_NAME',
    flag: 'db-name',
    kind: 'string',
    default: 'telemetry',
    help: 'Database name',
    group: 'database',
  },
  dbUser: {
    env: 'DB_USER',
    flag: 'db-user',
    kind: 'string',
    default: 'telemetry',
    help: 'Database user',
    group: 'database',
  },
  dbPassword: {
    env: 'DB_PASSWORD',
    flag: 'db-password',
    kind: 'string',
    default: '',
    help: 'Database password (none by default: when the server asks for one, the connection fails saying what to set)',
    secret: true,
    group: 'database',
  },
  dbSslMode: {
    env: 'DB_SSLMODE',
    flag: 'db-sslmode',
    kind: 'enum',
    default: 'disable',
    choices: ['disable', 'require', 'verify-ca', 'verify-full'],
    help: "TLS to PostgreSQL: disable; require (encrypted, the server not verified); verify-ca (its certificate signed by DB_SSLROOTCERT's CA); verify-full (and issued for the host connected to). Other than disable, it wins over DATABASE_URL's own sslmode",
    group: 'database',
  },
  dbSslRootCert: {
    env: 'DB_SSLROOTCERT',
    flag: 'db-sslrootcert',
    kind: 'string',
    default: '',
    help: "CA certificate(s) PostgreSQL's certificate must chain to (verify-ca, verify-full; with require it verifies the CA as libpq does); empty: the system's CAs",
    group: 'database',
  },
  dbSslCert: {
    env: 'DB_SSLCERT',
    flag: 'db-sslcert',
    kind: 'string',
    default: '',
    help: 'Client certificate for PostgreSQL (pg_hba.conf cert authentication, or clientcert=verify-full)',
    group: 'database',
  },
  dbSslKey: {
    env: 'DB_SSLKEY',
    flag: 'db-sslkey',
    kind: 'string',
    default: '',
    help: "The client certificate's private key",
    group: 'database',
  },
  dbPoolSize: {
    env: 'DB_POOL_SIZE',
    flag: 'db-pool-size',
    kind: 'int',
    default: '0',
    min: 0,
    max: 500,
    help: 'Connections per process (0: WORKERS + 2)',
    group: 'database',
  },
  dbStatementTimeout: {
    env: 'DB_STATEMENT_TIMEOUT',
    flag: 'db-statement-timeout',
    kind: 'duration',
    default: '60s',
    help: 'Longest a statement may run',
    group: 'database',
  },
  dbConnectTimeout: {
    env: 'DB_CONNECT_TIMEOUT',
    flag: 'db-connect-timeout',
    kind: 'duration',
    default: '5s',
    help: 'Longest wait for a new connection',
    group: 'database',
  },
  writeMethod: {
    env: 'WRITE_METHOD',
    flag: 'write-method',
    kind: 'enum',
    default: 'unnest',
    choices: ['unnest', 'copy'],
    help: 'Bulk write: INSERT ... SELECT FROM unnest(arrays), or COPY into a staging table (see docs/benchmarks.md)',
    group: 'database',
  },
  retentionDays: {
    env: 'RETENTION_DAYS',
    flag: 'retention-days',
    kind: 'int',
    default: '0',
    min: 0,
    help: 'Drop raw readings older than this many days (their 1-minute rollup stays while ROLLUP_RETENTION_DAYS keeps it); 0 keeps them',
    group: 'database',
  },
  rollupRetentionDays: {
    env: 'ROLLUP_RETENTION_DAYS',
    flag: 'rollup-retention-days',
    kind: 'int',
    default: '0',
    min: 0,
    help: 'Drop 1-minute rollups older than this many days (with the raw readings, once both are past); 0 keeps them',
    group: 'database',
  },
  partitionAhead: {
    env: 'PARTITION_AHEAD',
    flag: 'partition-ahead',
    kind: 'duration',
    default: '4h',
    help: 'Hot partitions (one per 2-hour window) created this far ahead of time',
    group: 'database',
  },
  dbRolePrefix: {
    env: 'DB_ROLE_PREFIX',
    flag: 'db-role-prefix',
    kind: 'string',
    default: 'nexus',
    help: 'nexus migrate --create-roles: the roles are <prefix>_owner (owns the schema, runs migrations), <prefix>_collector (writes) and <prefix>_gateway (reads)',
    group: 'roles',
  },
  dbOwnerPassword: {
    env: 'DB_OWNER_PASSWORD',
    flag: 'db-owner-password',
    kind: 'string',
    default: '',
    help: 'nexus migrate --create-roles: password of <prefix>_owner, which may then log in (empty: the role cannot log in, or keeps the password it has)',
    secret: true,
    group: 'roles',
  },
  dbCollectorPassword: {
    env: 'DB_COLLECTOR_PASSWORD',
    flag: 'db-collector-password',
    kind: 'string',
    default: '',
    help: 'nexus migrate --create-roles: password of <prefix>_collector, which may then log in (empty: the role cannot log in, or keeps the password it has)',
    secret: true,
    group: 'roles',
  },
  dbGatewayPassword: {
    env: 'DB_GATEWAY_PASSWORD',
    flag: 'db-gateway-password',
    kind: 'string',
    default: '',
    help: 'nexus migrate --create-roles: password of <prefix>_gateway, which may then log in (empty: the role cannot log in, or keeps the password it has)',
    secret: true,
    group: 'roles',
  },
  workers: {
    env: 'WORKERS',
    flag: 'workers',
    kind: 'int',
    default: '4',
    min: 1,
    max: 256,
    help: 'Batches a collector writes at once',
    group: 'collector',
  },
  collectBatch: {
    env: 'COLLECT_BATCH',
    flag: 'collect-batch',
    kind: 'int',
    default: '20',
    min: 1,
    max: 500,
    help: 'Queue messages per database transaction',
    group: 'collector',
  },
  dimensionCacheMax: {
    env: 'DIMENSION_CACHE_MAX',
    flag: 'dimension-cache-max',
    kind: 'int',
    default: '250000',
    min: 100,
    max: 100_000_000,
    help: 'Hosts, GPUs and workloads a collector keeps the ids of in memory, of each kind (about 500 bytes a GPU); a batch with others re-reads their rows (slower, still exact)',
    group: 'collector',
  },
  rollupInterval: {
    env: 'ROLLUP_INTERVAL',
    flag: 'rollup-interval',
    kind: 'duration',
    default: '1s',
    help: 'How often stored readings are folded into the 1-minute rollup and latest values (reads see them at once either way)',
    group: 'collector',
  },
  compactInterval: {
    env: 'COMPACT_INTERVAL',
    flag: 'compact-interval',
    kind: 'duration',
    default: '1m',
    help: 'How often the sealing job looks for closed 2-hour windows to compress into chunks (0: never; nexus compact does it on demand)',
    group: 'collector',
  },
  compactDelay: {
    env: 'COMPACT_DELAY',
    flag: 'compact-delay',
    kind: 'duration',
    default: '1h',
    help: 'A window is sealed once it ended this long ago (readings arriving later are still stored, and merged into its chunks)',
    group: 'collector',
  },
  enableNexus: {
    env: 'ENABLE_NEXUS',
    flag: 'enable-nexus',
    kind: 'bool',
    default: 'true',
    help: 'Keep the fleet registry and live values in etcd',
    group: 'collector',
  },
  registryPrefix: {
    env: 'REGISTRY_PREFIX',
    flag: 'registry-prefix',
    kind: 'string',
    default: '/nexus',
    help: 'etcd key prefix of the fleet registry',
    group: 'collector',
  },
  liveInterval: {
    env: 'LIVE_INTERVAL',
    flag: 'live-interval',
    kind: 'duration',
    default: '1s',
    help: 'How often the latest values are written to the registry',
    group: 'collector',
  },
  liveMaxPerFlush: {
    env: 'LIVE_MAX_PER_FLUSH',
    flag: 'live-max-per-flush',
    kind: 'int',
    default: '2000',
    min: 1,
    help: 'At most this many GPUs written per flush (larger fleets are written round-robin)',
    group: 'collector',
  },
  port: {
    env: 'PORT',
    flag: 'port',
    kind: 'int',
    default: '8080',
    min: 0,
    max: 65535,
    help: 'HTTP port of the gateway',
    group: 'gateway',
  },
  host: {
    env: 'HOST',
    flag: 'host',
    kind: 'string',
    default: '0.0.0.0',
    help: 'Address the gateway listens on: 0.0.0.0 every address, 127.0.0.1 this machine only (the default of nexus up)',
    group: 'gateway',
  },
  tlsCertFile: {
    env: 'TLS_CERT_FILE',
    flag: 'tls-cert-file',
    kind: 'string',
    default: '',
    help: 'PEM certificate (chain) of the gateway: with TLS_KEY_FILE it serves HTTPS and wss:// only (both or neither)',
    group: 'gateway',
  },
  tlsKeyFile: {
    env: 'TLS_KEY_FILE',
    flag: 'tls-key-file',
    kind: 'string',
    default: '',
    help: 'PEM private key of TLS_CERT_FILE',
    group: 'gateway',
  },
  enableGraphql: {
    env: 'ENABLE_GRAPHQL',
    flag: 'enable-graphql',
    kind: 'bool',
    default: 'true',
    help: 'Serve GraphQL (and GraphiQL) at /graphql',
    group: 'gateway',
  },
  enableWebsocket: {
    env: 'ENABLE_WEBSOCKET',
    flag: 'enable-websocket',
    kind: 'bool',
    default: 'true',
    help: 'Serve live telemetry at /ws',
    group: 'gateway',
  },
  enableCors: {
    env: 'ENABLE_CORS',
    flag: 'enable-cors',
    kind: 'bool',
    default: 'true',
    help: 'Deprecated: CORS is on exactly when CORS_ORIGINS lists origins; false still turns it off',
    group: 'gateway',
  },
  corsOrigins: {
    env: 'CORS_ORIGINS',
    flag: 'cors-origins',
    kind: 'list',
    default: '',
    help: 'Origins whose pages may call the API (CORS), comma-separated, exactly as browsers send them (https://host[:port]); * for any; none: no CORS',
    group: 'gateway',
  },
  maxPoints: {
    env: 'MAX_POINTS',
    flag: 'max-points',
    kind: 'int',
    default: '200000',
    min: 100,
    help: 'Most points one series query may return',
    group: 'gateway',
  },
  wsMaxBuffer: {
    env: 'WS_MAX_BUFFER',
    flag: 'ws-max-buffer',
    kind: 'int',
    default: '1048576',
    min: 16384,
    help: 'Unsent bytes per WebSocket client beyond which its telemetry is dropped (and counted)',
    group: 'gateway',
  },
  wsHeartbeat: {
    env: 'WS_HEARTBEAT',
    flag: 'ws-heartbeat',
    kind: 'duration',
    default: '15s',
    help: 'WebSocket ping and heartbeat period',
    group: 'gateway',
  },
  wsSlowClient: {
    env: 'WS_SLOW_CLIENT',
    flag: 'ws-slow-client',
    kind: 'duration',
    default: '30s',
    help: 'A WebSocket client too slow for this long is disconnected',
    group: 'gateway',
  },
  wsMaxTotalBuffer: {
    env: 'WS_MAX_TOTAL_BUFFER',
    flag: 'ws-max-total-buffer',
    kind: 'int',
    default: '67108864',
    min: 1048576,
    help: 'Unsent live telemetry held for all WebSocket clients together, in bytes (a message shared by many clients counts once); beyond it, new telemetry is dropped for the clients that would need it',
    group: 'gateway',
  },
  wsMaxConnections: {
    env: 'WS_MAX_CONNECTIONS',
    flag: 'ws-max-connections',
    kind: 'int',
    default: '1000',
    min: 1,
    help: 'WebSocket connections open at once (/ws and GraphQL subscriptions); more are closed with code 1013',
    group: 'gateway',
  },
  wsMaxConnectionsPerAddress: {
    env: 'WS_MAX_CONNECTIONS_PER_ADDRESS',
    flag: 'ws-max-connections-per-address',
    kind: 'int',
    default: '200',
    min: 1,
    help: 'WebSocket connections open at once from one client address; more are closed with code 4029',
    group: 'gateway',
  },
  wsMaxSubscriptions: {
    env: 'WS_MAX_SUBSCRIPTIONS',
    flag: 'ws-max-subscriptions',
    kind: 'int',
    default: '32',
    min: 1,
    max: 1000,
    help: 'Subscriptions per WebSocket connection (/ws, and GraphQL subscriptions)',
    group: 'gateway',
  },
  wsMaxFilterValues: {
    env: 'WS_MAX_FILTER_VALUES',
    flag: 'ws-max-filter-values',
    kind: 'int',
    default: '2000',
    min: 1,
    help: "Hosts, GPUs, uuids and metrics named in all of one connection's subscription filters",
    group: 'gateway',
  },
  trustProxy: {
    env: 'TRUST_PROXY',
    flag: 'trust-proxy',
    kind: 'string',
    default: '',
    help: "Take the client's address from X-Forwarded-For when the request comes through these proxies: true (any), a hop count, or addresses/CIDRs, comma-separated (empty: the peer's address). Per-address limits use it",
    group: 'gateway',
  },
  authMode: {
    env: 'AUTH_MODE',
    flag: 'auth-mode',
    kind: 'enum',
    default: 'token',
    choices: ['none', 'token', 'oidc'],
    help: 'Who may use the API: token (bearer tokens made by nexus token create), oidc (JWTs of an OpenID provider), none (anyone who can reach it; the default of nexus up on a loopback HOST only)',
    group: 'gateway',
  },
  metricsAuth: {
    env: 'METRICS_AUTH',
    flag: 'metrics-auth',
    kind: 'bool',
    default: 'true',
    help: '/metrics needs a read token like the API (false: open, for a scraper on a private network)',
    group: 'gateway',
  },
  tokenCacheTtl: {
    env: 'TOKEN_CACHE_TTL',
    flag: 'token-cache-ttl',
    kind: 'duration',
    default: '5s',
    help: 'How long the gateway remembers a token lookup: a revoked token is refused at most this long after nexus token revoke',
    group: 'gateway',
  },
  rateLimitPerMinute: {
    env: 'RATE_LIMIT_PER_MINUTE',
    flag: 'rate-limit-per-minute',
    kind: 'int',
    default: '1200',
    min: 0,
    help: 'Requests per minute of one token or OIDC subject (with AUTH_MODE=none: of one client address); beyond, 429 with Retry-After (0: no limit)',
    group: 'gateway',
  },
  rateLimitAnonPerMinute: {
    env: 'RATE_LIMIT_ANON_PER_MINUTE',
    flag: 'rate-limit-anon-per-minute',
    kind: 'int',
    default: '120',
    min: 0,
    help: 'Requests per minute from one client address without a valid token (refused 401); beyond, 429 with Retry-After (0: no limit)',
    group: 'gateway',
  },
  oidcIssuer: {
    env: 'OIDC_ISSUER',
    flag: 'oidc-issuer',
    kind: 'string',
    default: '',
    help: 'AUTH_MODE=oidc: the issuer (iss) a JWT must name, e.g. https://login.example.com/realms/ops',
    group: 'gateway',
  },
  oidcAudience: {
    env: 'OIDC_AUDIENCE',
    flag: 'oidc-audience',
    kind: 'string',
    default: '',
    help: 'AUTH_MODE=oidc: the audience (aud) a JWT must name, e.g. nexus',
    group: 'gateway',
  },
  oidcJwksUrl: {
    env: 'OIDC_JWKS_URL',
    flag: 'oidc-jwks-url',
    kind: 'string',
    default: '',
    help: "AUTH_MODE=oidc: the issuer's signing keys (JWKS); default: jwks_uri of <OIDC_ISSUER>/.well-known/openid-configuration",
    group: 'gateway',
  },
  oidcScopeClaim: {
    env: 'OIDC_SCOPE_CLAIM',
    flag: 'oidc-scope-claim',
    kind: 'string',
    default: 'scope',
    help: 'AUTH_MODE=oidc: the claim holding the scopes (a space-separated string or an array); nexus:read reads, nexus:write sends telemetry (remote_write) only, nexus:admin does everything',
    group: 'gateway',
  },
  maxBody: {
    env: 'MAX_BODY',
    flag: 'max-body',
    kind: 'int',
    default: '1048576',
    min: 1024,
    help: 'Largest request body accepted, in bytes (413 beyond)',
    group: 'gateway',
  },
  enableRemoteWrite: {
    env: 'ENABLE_REMOTE_WRITE',
    flag: 'enable-remote-write',
    kind: 'bool',
    default: 'false',
    help: 'Accept Prometheus remote_write at POST /api/v1/write (write scope), publishing to the queue (docs/ingest.md)',
    group: 'gateway',
  },
  remoteWriteMaxBytes: {
    env: 'REMOTE_WRITE_MAX_BYTES',
    flag: 'remote-write-max-bytes',
    kind: 'int',
    default: '16777216',
    min: 1024,
    help: 'Largest remote_write body once decompressed, in bytes, checked from the snappy header before decompressing (400 beyond); the compressed body is bounded by MAX_BODY',
    group: 'gateway',
  },
  remoteWriteMaxClusters: {
    env: 'REMOTE_WRITE_MAX_CLUSTERS',
    flag: 'remote-write-max-clusters',
    kind: 'int',
    default: '16',
    min: 1,
    help: 'Clusters (the cluster label, else CLUSTER_ID) remote_write may publish to from one gateway; a request naming one more is refused with 400',
    group: 'gateway',
  },
  remoteWriteAccept: {
    env: 'REMOTE_WRITE_ACCEPT',
    flag: 'remote-write-accept',
    kind: 'string',
    default: '',
    help: 'remote_write series stored besides the DCGM ones (names starting DCGM_FI_ or DCGM_EXP_): a regular expression of metric names (whole name), or all; empty: DCGM series only (others ignored and counted)',
    group: 'gateway',
  },
  apiMaxConcurrent: {
    env: 'API_MAX_CONCURRENT',
    flag: 'api-max-concurrent',
    kind: 'int',
    default: '32',
    min: 1,
    help: 'API requests (/api/v1, /graphql) served at once; more wait in a queue',
    group: 'gateway',
  },
  apiMaxQueued: {
    env: 'API_MAX_QUEUED',
    flag: 'api-max-queued',
    kind: 'int',
    default: '1000',
    min: 0,
    help: 'API requests waiting for a turn; beyond, 503 with Retry-After',
    group: 'gateway',
  },
  apiQueueTimeout: {
    env: 'API_QUEUE_TIMEOUT',
    flag: 'api-queue-timeout',
    kind: 'duration',
    default: '10s',
    help: 'Longest an API request waits for a turn before a 503 with Retry-After',
    group: 'gateway',
  },
  apiMaxPerAddress: {
    env: 'API_MAX_PER_ADDRESS',
    flag: 'api-max-per-address',
    kind: 'int',
    default: '256',
    min: 1,
    help: 'API requests served or waiting at once for one client address; beyond, 429 with Retry-After',
    group: 'gateway',
  },
  maxEventLoopDelay: {
    env: 'MAX_EVENT_LOOP_DELAY',
    flag: 'max-event-loop-delay',
    kind: 'duration',
    default: '1s',
    help: 'Mean event-loop delay beyond which the gateway answers 503 with Retry-After (health and metrics excepted); 0: off',
    group: 'gateway',
  },
  maxHeapUsed: {
    env: 'MAX_HEAP_USED',
    flag: 'max-heap-used',
    kind: 'int',
    default: '0',
    min: 0,
    help: 'JavaScript heap in bytes beyond which the gateway answers 503 with Retry-After (health and metrics excepted); 0: off',
    group: 'gateway',
  },
  graphqlMaxCost: {
    env: 'GRAPHQL_MAX_COST',
    flag: 'graphql-max-cost',
    kind: 'int',
    default: '50000',
    min: 100,
    help: 'Largest GraphQL query cost, estimated before it runs and counted on what it returns (each field 1, times the items of the lists above it)',
    group: 'gateway',
  },
  graphqlTimeout: {
    env: 'GRAPHQL_TIMEOUT',
    flag: 'graphql-timeout',
    kind: 'duration',
    default: '10s',
    help: 'Longest a GraphQL query may run; its unfinished fields then fail',
    group: 'gateway',
  },
  graphqlMaxAnswer: {
    env: 'GRAPHQL_MAX_ANSWER',
    flag: 'graphql-max-answer',
    kind: 'int',
    default: '8388608',
    min: 65536,
    help: 'Largest GraphQL answer in bytes; a larger one is replaced by an error',
    group: 'gateway',
  },
  staleAfter: {
    env: 'STALE_AFTER',
    flag: 'stale-after',
    kind: 'duration',
    default: '10m',
    help: "A GPU is retired (a 'stopped' event; it leaves the live views and alerts, its history stays) once its cluster has readings this much newer than the GPU's last one; a reading brings it back (a 'reappeared' event)",
    group: 'common',
  },
  idleUtil: {
    env: 'IDLE_UTIL',
    flag: 'idle-util',
    kind: 'number',
    default: '5',
    min: 0,
    max: 100,
    help: 'A GPU holding a workload is idle while its utilisation (DCGM_FI_PROF_GR_ENGINE_ACTIVE where present, else DCGM_FI_DEV_GPU_UTIL) stays below this percentage',
    group: 'gateway',
  },
  fleetGaugesMaxGpus: {
    env: 'FLEET_GAUGES_MAX_GPUS',
    flag: 'fleet-gauges-max-gpus',
    kind: 'int',
    default: '10000',
    min: 0,
    max: 10000000,
    help: "The gateway's per-GPU fleet gauges (nexus_gpu_temperature_celsius and the others: the input of the GPU alerts) on /metrics while the fleet has at most this many live GPUs; above, they are left out (nexus_fleet_gauges_gpus_left_out says how many) and the GPU alerts go on dcgm-exporter's own series (docs/scaling.md). 0: never",
    group: 'gateway',
  },
  idleFor: {
    env: 'IDLE_FOR',
    flag: 'idle-for',
    kind: 'duration',
    default: '15m',
    help: 'How long a GPU holding a workload must stay below IDLE_UTIL to be listed as idle (GET /api/v1/clusters/{id}/idle, the NexusGPUIdleWithWorkload alert)',
    group: 'gateway',
  },
  energyPricePerKwh: {
    env: 'ENERGY_PRICE_PER_KWH',
    flag: 'energy-price-per-kwh',
    kind: 'number',
    default: '0',
    min: 0,
    help: 'Price of one kWh in CURRENCY, for the energy cost in usage reports (0: no energy cost)',
    group: 'gateway',
  },
  gpuHourPrice: {
    env: 'GPU_HOUR_PRICE',
    flag: 'gpu-hour-price',
    kind: 'number',
    default: '0',
    min: 0,
    help: 'Price of one allocated GPU-hour in CURRENCY, for the showback cost in usage reports (0: no GPU-hour cost)',
    group: 'gateway',
  },
  currency: {
    env: 'CURRENCY',
    flag: 'currency',
    kind: 'string',
    default: 'USD',
    help: 'Currency code the prices (ENERGY_PRICE_PER_KWH, GPU_HOUR_PRICE) and usage costs are in',
    group: 'gateway',
  },
  scrapeTargets: {
    env: 'SCRAPE_TARGETS',
    flag: 'scrape-targets',
    kind: 'list',
    default: '',
    help: 'dcgm-exporter endpoints to scrape, comma-separated: host:port (http, /metrics) or URLs',
    group: 'scraper',
  },
  scrapeTargetsFile: {
    env: 'SCRAPE_TARGETS_FILE',
    flag: 'scrape-targets-file',
    kind: 'string',
    default: '',
    help: 'Prometheus file_sd file (JSON or YAML: [{targets: [...], labels: {...}}]) of scrape targets, re-read when it changes; a bad version keeps the last good targets',
    group: 'scraper',
  },
  scrapeKubernetesService: {
    env: 'SCRAPE_KUBERNETES_SERVICE',
    flag: 'scrape-kubernetes-service',
    kind: 'string',
    default: '',
    help: "Scrape the ready endpoints of this Kubernetes Service: namespace/name[:port] (port name or number; default: the Service's only or first port), in-cluster or KUBECONFIG credentials",
    group: 'scraper',
  },
  scrapeInterval: {
    env: 'SCRAPE_INTERVAL',
    flag: 'scrape-interval',
    kind: 'duration',
    default: '10s',
    help: 'Time between two scrapes of a target (each target at its own fixed offset within it)',
    group: 'scraper',
  },
  scrapeTimeout: {
    env: 'SCRAPE_TIMEOUT',
    flag: 'scrape-timeout',
    kind: 'duration',
    default: '0',
    help: 'Deadline of one scrape request (0: 80% of SCRAPE_INTERVAL); a target that misses it is down for that scrape',
    group: 'scraper',
  },
  scrapeMaxBytes: {
    env: 'SCRAPE_MAX_BYTES',
    flag: 'scrape-max-bytes',
    kind: 'int',
    default: '10485760',
    min: 1024,
    help: 'Largest scrape body in bytes (after gzip); a larger answer makes the target down for that scrape',
    group: 'scraper',
  },
  scrapeCaFile: {
    env: 'SCRAPE_CA_FILE',
    flag: 'scrape-ca-file',
    kind: 'string',
    default: '',
    help: "CA bundle that https scrape targets' certificates are checked against (default: the system's)",
    group: 'scraper',
  },
  scrapeInsecureSkipVerify: {
    env: 'SCRAPE_INSECURE_SKIP_VERIFY',
    flag: 'scrape-insecure-skip-verify',
    kind: 'bool',
    default: 'false',
    help: "Do not check https scrape targets' certificates (anyone on the path can then read and alter the readings)",
    group: 'scraper',
  },
  scrapeUsername: {
    env: 'SCRAPE_USERNAME',
    flag: 'scrape-username',
    kind: 'string',
    default: '',
    help: 'HTTP basic auth user for every scrape target (dcgm-exporter --web-config-file)',
    group: 'scraper',
  },
  scrapePassword: {
    env: 'SCRAPE_PASSWORD',
    flag: 'scrape-password',
    kind: 'string',
    default: '',
    help: 'HTTP basic auth password for every scrape target',
    secret: true,
    group: 'scraper',
  },
} as const satisfies Record<string, SettingSpec>;

export type SettingKey = keyof typeof SETTINGS;

type ValueOf<S extends SettingSpec> = S['kind'] extends 'int' | 'number' | 'duration'
  ? number
  : S['kind'] extends 'bool'
    ? boolean
    : S['kind'] extends 'list'
      ? readonly string[]
      : S['choices'] extends readonly (infer C)[]
        ? C
        : string;

export type Config = { readonly [K in SettingKey]: ValueOf<(typeof SETTINGS)[K]> };

function parseBool(text: string, name: string): boolean {
  const s = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  throw new NexusError('CONFIG_INVALID', `${name}: "${text}" is not a boolean (true/false)`);
}

export function parseSetting(
  spec: SettingSpec,
  text: string,
): number | boolean | string | string[] {
  const name = spec.env;
  switch (spec.kind) {
    case 'string':
      return text.trim();
    case 'list':
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    case 'bool':
      return parseBool(text, name);
    case 'duration':
      return parseDuration(text, name);
    case 'int': {
      const s = text.trim();
      if (!/^-?\d+$/.test(s)) {
        throw new NexusError('CONFIG_INVALID', `${name}: "${text}" is not an integer`);
      }
      const v = Number(s);
      if (spec.min !== undefined && v < spec.min) {
        throw new NexusError('CONFIG_INVALID', `${name}: ${v} is below the minimum ${spec.min}`);
      }
      if (spec.max !== undefined && v > spec.max) {
        throw new NexusError('CONFIG_INVALID', `${name}: ${v} is above the maximum ${spec.max}`);
      }
      return v;
    }
    case 'number': {
      const s = text.trim();
      if (!/^-?(?:\d+\.?\d*|\.\d+)$/.test(s)) {
        throw new NexusError('CONFIG_INVALID', `${name}: "${text}" is not a number (e.g. 0.15)`);
      }
      const v = Number(s);
      if (spec.min !== undefined && v < spec.min) {
        throw new NexusError('CONFIG_INVALID', `${name}: ${v} is below the minimum ${spec.min}`);
      }
      if (spec.max !== undefined && v > spec.max) {
        throw new NexusError('CONFIG_INVALID', `${name}: ${v} is above the maximum ${spec.max}`);
      }
      return v;
    }
    case 'enum': {
      const s = text.trim();
      if (spec.choices?.includes(s) !== true) {
        throw new NexusError(
          'CONFIG_INVALID',
          `${name}: "${text}" is not one of ${(spec.choices ?? []).join(', ')}`,
        );
      }
      return s;
    }
  }
}

/**
 * Where a secret setting can be read from a file instead (README, "Secrets in files"): the
 * variable `<NAME>_FILE` and the flag `--<flag>-file`. Not for a secret whose value is itself a
 * path (ETCD_KEY_FILE: the component reads that file).
 */
export function secretFile(spec: SettingSpec): { env: string; flag: string } | undefined {
  if (spec.secret !== true || spec.env.endsWith('_FILE')) return undefined;
  return { env: `${spec.env}_FILE`, flag: `${spec.flag}-file` };
}

export interface SecretFiles {
  /** `--<flag>-file` values given on the command line, by setting key. */
  readonly flags?: Readonly<Partial<Record<SettingKey, string>>>;
  /** Reads a file as UTF-8 text (default: readFileSync). */
  readonly read?: (path: string) => string;
}

/**
 * A secret's text from its file: the content less one trailing newline (`\n` or `\r\n`), as
 * `echo secret > file` and Kubernetes secrets write it. Errors name the variable and the path,
 * never the content.
 */
function readSecretFile(variable: string, path: string, read: (path: string) => string): string {
  let text: string;
  try {
    text = read(path);
  } catch (err) {
    const code =
      typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
        ? err.code
        : 'unreadable';
    throw new NexusError('CONFIG_INVALID', `${variable}: cannot read ${path} (${code})`);
  }
  const value = text.endsWith('\r\n')
    ? text.slice(0, -2)
    : text.endsWith('\n')
      ? text.slice(0, -1)
      : text;
  if (value === '') throw new NexusError('CONFIG_INVALID', `${variable}: ${path} is empty`);
  return value;
}

/**
 * Builds the frozen configuration: command-line values win over the environment, which wins over
 * the defaults. `flags` is keyed by setting key; `env` is the process environment (or a test's).
 * A secret may come from a file instead (`<NAME>_FILE`, `--<flag>-file`: see secretFile); giving
 * it both ways is an error.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  flags: Readonly<Partial<Record<SettingKey, string>>> = {},
  files: SecretFiles = {},
): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  const given = (v: string | undefined): string | undefined => (v === '' ? undefined : v);
  for (const [key, spec] of Object.entries(SETTINGS) as [SettingKey, SettingSpec][]) {
    const direct = flags[key] ?? given(env[spec.env]);
    try {
      const file = secretFile(spec);
      const path = file === undefined ? undefined : (files.flags?.[key] ?? given(env[file.env]));
      if (file !== undefined && path !== undefined) {
        if (direct !== undefined) {
          throw new NexusError(
            'CONFIG_INVALID',
            `${spec.env} and ${file.env} are both set: set one (the file is the safer place for a secret)`,
          );
        }
        // Exactly what the file holds (less its newline): a password's spaces are its own.
        out[key] = readSecretFile(file.env, path, files.read ?? ((p) => readFileSync(p, 'utf8')));
        continue;
      }
      out[key] = parseSetting(spec, direct ?? spec.default ?? '');
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (problems.length > 0) {
    throw new NexusError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`);
  }
  return Object.freeze(out) as Config;
}

/** The configuration with secrets masked, for `nexus config` and start-up logs. */
export function redactConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(SETTINGS) as [SettingKey, SettingSpec][]) {
    const v = config[key];
    out[spec.env] = spec.secret === true && v !== '' ? '***' : v;
  }
  return out;
}
