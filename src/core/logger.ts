import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** Field names whose values never reach a log line. */
const REDACT = [
  'password',
  '*.password',
  'dbPassword',
  '*.dbPassword',
  'etcdPassword',
  '*.etcdPassword',
  'DB_PASSWORD',
  '*.DB_PASSWORD',
  'ETCD_PASSWORD',
  '*.ETCD_PASSWORD',
  'connectionString',
  '*.connectionString',
  'DATABASE_URL',
  '*.DATABASE_URL',
  'authorization',
  '*.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
];

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Bound on every line, e.g. { service: 'nexus' }. */
  readonly base?: Record<string, unknown>;
  readonly destination?: DestinationStream;
}

/** JSON logs on stdout (or the given destination), with ISO timestamps and secrets redacted. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'nexus', ...options.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT, censor: '***' },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** A logger that drops everything, for tests and libraries used without one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
