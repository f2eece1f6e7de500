import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { parse as parseConnectionString, toClientConfig } from 'pg-connection-string';
import { NexusError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Database, QueryOptions, QueryResult, SqlClient } from '../types.js';
import { sqlState, toStoreError } from './errors.js';

export interface PostgresConnection {
  /** DATABASE_URL; when set it wins over the separate fields (its password over `password`). */
  readonly url?: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  /** '': none (a server asking for one gets a clear error instead). */
  readonly password: string;
  /**
   * disable; require (TLS, the server not verified, unless a CA is given: then as verify-ca, like
   * libpq); verify-ca; verify-full. Other than disable, it wins over the URL's sslmode.
   */
  readonly sslMode: 'disable' | 'require' | 'verify-ca' | 'verify-full';
  readonly tls?: {
    /** PEM CA certificate(s) the server's certificate must chain to (default: the system's). */
    readonly rootCertFile?: string | undefined;
    /** PEM client certificate and key, for certificate authentication. */
    readonly certFile?: string | undefined;
    readonly keyFile?: string | undefined;
  };
  /**
   * Acts as this role once connected (SET ROLE, as a startup option): `nexus migrate
   * --create-roles` applies the migrations as the owner role it made, logged in as an
   * administrator. A lowercase SQL identifier.
   */
  readonly role?: string;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly applicationName: string;
}

/** A file the TLS settings name, or a clear error naming the setting (never its content). */
function readTlsFile(path: string, setting: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new NexusError(
      'CONFIG_INVALID',
      `${setting}: cannot read ${path} (${errorCode(err) ?? 'unreadable'})`,
    );
  }
}

function errorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** The TLS options of DB_SSLMODE, with libpq's meanings. */
function ssl(c: PostgresConnection): pg.ConnectionConfig['ssl'] {
  if (c.sslMode === 'disable') return false;
  const { rootCertFile, certFile, keyFile } = c.tls ?? {};
  const ca = rootCertFile === undefined ? undefined : readTlsFile(rootCertFile, 'DB_SSLROOTCERT');
  if (c.sslMode === 'verify-ca' && ca === undefined) {
    throw new NexusError(
      'CONFIG_INVALID',
      "DB_SSLMODE=verify-ca needs DB_SSLROOTCERT, the CA of the server's certificate (with the system's public CAs it would accept any server holding a certificate of theirs: use verify-full for those)",
    );
  }
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new NexusError('CONFIG_INVALID', 'DB_SSLCERT and DB_SSLKEY go together: set both');
  }
  return {
    // require checks nothing, unless a CA is given (libpq: then as verify-ca).
    rejectUnauthorized: c.sslMode !== 'require' || ca !== undefined,
    ...(ca === undefined ? {} : { ca }),
    ...(c.sslMode === 'verify-full' ? {} : { checkServerIdentity: () => undefined }),
    ...(certFile === undefined ? {} : { cert: readTlsFile(certFile, 'DB_SSLCERT') }),
    ...(keyFile === undefined ? {} : { key: readTlsFile(keyFile, 'DB_SSLKEY') }),
  };
}

/**
 * The connection fields of DATABASE_URL, read with libpq's meanings of sslmode (node-postgres
 * alone reads require and verify-ca as verify-full, with a warning). Its errors never quote it.
 */
function fromUrl(url: string): pg.ClientConfig {
  try {
    const options = /[?&]uselibpqcompat=/i.test(url) ? {} : { useLibpqCompat: true };
    return toClientConfig(parseConnectionString(url, options));
  } catch (err) {
    const why = errorCode(err) ?? (err instanceof Error ? err.message : 'not a PostgreSQL URL');
    throw new NexusError(
      'CONFIG_INVALID',
      `DATABASE_URL cannot be used: ${why.replaceAll(url, '(the URL)')}`,
    );
  }
}

/**
 * The password option: the given one, or (none) a function that node-postgres calls only if the
 * server asks for a password, failing with an error that says what to set (instead of falling
 * back to PGPASSWORD or ~/.pgpass behind the configuration's back).
 */
function passwordOption(password: unknown, user: unknown): pg.ClientConfig['password'] {
  if (typeof password === 'string' && password !== '') return password;
  const who = typeof user === 'string' && user !== '' ? ` for user ${user}` : '';
  return () =>
    Promise.reject(
      new NexusError(
        'CONFIG_INVALID',
        `PostgreSQL asks for a password${who} and none is set: set DB_PASSWORD_FILE (or DB_PASSWORD, or the password in DATABASE_URL)`,
      ),
    );
}

/**
 * A client that closes its socket when connecting fails. node-postgres leaves it open when the
 * failure is on this side (no password to give, passwordOption): the server would hold it until
 * its authentication_timeout (60 s), and the process with it.
 */
class ClosingClient extends pg.Client {
  override connect(): Promise<pg.Client>;
  override connect(callback: (err: Error) => void): void;
  override connect(callback?: (err: Error) => void): Promise<pg.Client> | undefined {
    const done = (err: Error | null): void => {
      if (err !== null) this.end().catch(() => undefined);
    };
    if (callback === undefined) {
      return new Promise((resolve, reject) => {
        super.connect((err: Error | null) => {
          done(err);
          if (err === null) resolve(this);
          else reject(err);
        });
      });
    }
    super.connect((err: Error | null) => {
      done(err);
      callback(err as Error);
    });
    return undefined;
  }
}

/** The node-postgres pool configuration of a connection. */
function poolConfig(connection: PostgresConnection): pg.PoolConfig {
  const base: pg.PoolConfig = {
    Client: ClosingClient,
    max: connection.poolSize,
    connectionTimeoutMillis: connection.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    statement_timeout: connection.statementTimeoutMs,
    application_name: connection.applicationName,
    keepAlive: true,
    // Prepared statements (QueryOptions.prepare) are planned for their parameters at every run,
    // as unnamed ones are: a cached generic plan could not bound the index by a parameter the
    // statement tests for null (the metrics of a history read), and it locks every partition of a
    // partitioned table at each run (PostgreSQL 15-17), so a read of recent data would queue
    // behind the sealing job's lock on an old, emptied partition. Preparing saves the parse. Set
    // before the pool hands the connection out (a failure fails the connection).
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- pg-pool awaits the hook's promise before it hands the client out; @types/pg declares a void return
    onConnect: async (client: pg.ClientBase): Promise<void> => {
      await client.query('SET plan_cache_mode = force_custom_plan');
    },
  };
  const role = connection.role;
  if (role !== undefined && !/^[a-z_][a-z0-9_]*$/.test(role)) {
    throw new NexusError('CONFIG_INVALID', `not a role name: ${role}`);
  }
  if (connection.url !== undefined && connection.url !== '') {
    const fields = fromUrl(connection.url);
    const options = [fields.options, role === undefined ? undefined : `-c role=${role}`]
      .filter((o) => o !== undefined && o !== '')
      .join(' ');
    return {
      ...fields,
      ...base,
      ...(options === '' ? {} : { options }),
      password: passwordOption(
        // The URL's password, else DB_PASSWORD (a URL without secrets, the password in a file).
        typeof fields.password === 'string' && fields.password !== ''
          ? fields.password
          : connection.password,
        fields.user,
      ),
      // DB_SSLMODE other than disable wins over the URL's own sslmode.
      ssl: connection.sslMode === 'disable' ? (fields.ssl ?? false) : ssl(connection),
    };
  }
  return {
    ...base,
    host: connection.host,
    port: connection.port,
    database: connection.database,
    user: connection.user,
    password: passwordOption(connection.password, connection.user),
    ssl: ssl(connection),
    ...(role === undefined ? {} : { options: `-c role=${role}` }),
  };
}

class TxClient implements SqlClient {
  constructor(readonly client: pg.PoolClient) {}
  async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    try {
      const res = await this.client.query(text, params as unknown[] | undefined);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    } catch (err) {
      throw toStoreError(err, 'query');
    }
  }
}

/**
 * Errors of a prepared statement that leave it unusable on its connection: the result type of its
 * cached plan changed (a migration altered what it reads), or the statement is gone or named twice
 * on the server (a pooler that does not keep sessions).
 */
const PREPARED_BROKEN = new Set(['0A000', '26000', '42P05']);

/** PostgreSQL through a node-postgres pool; COPY through pg-copy-streams. */
export class PostgresDatabase implements Database {
  readonly backend = 'postgres' as const;
  private readonly pool: pg.Pool;
  private closing: Promise<void> | undefined;
  /** Names of the statements kept prepared (node-postgres prepares a name once per connection). */
  private readonly statements = new Map<string, string>();
  /** Names given so far (a statement prepared again after a failure gets a new one). */
  private named = 0;

  constructor(connection: PostgresConnection, logger: Logger) {
    const config = poolConfig(connection);
    this.pool = new pg.Pool(config);
    // An idle client losing its connection must not crash the process.
    this.pool.on('error', (err) =>
      logger.warn({ err: err.message }, 'idle PostgreSQL connection failed'),
    );
  }

  async query<R>(
    text: string,
    params?: readonly unknown[],
    options?: QueryOptions,
  ): Promise<QueryResult<R>> {
    const values = (params ?? []) as unknown[];
    try {
      if (options?.prepare === true) {
        try {
          const res = await this.pool.query({ name: this.statementName(text), text, values });
          return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
        } catch (err) {
          if (!PREPARED_BROKEN.has(sqlState(err) ?? '')) throw err;
          // A statement its connection could not run prepared: this run unprepared (on another
          // connection, as the pool closes one whose query failed), and a new name from now on,
          // in case a pooler between still holds the old one.
          this.statements.delete(text);
        }
      }
      const res = await this.pool.query(text, values);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    } catch (err) {
      throw toStoreError(err, 'query');
    }
  }

  /** The name a prepared statement's text goes by: the same on every connection. */
  private statementName(text: string): string {
    let name = this.statements.get(text);
    if (name === undefined) {
      name = `nexus_${++this.named}`;
      this.statements.set(text, name);
    }
    return name;
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw toStoreError(err, 'connect');
    }
    let broken: Error | undefined;
    // The pool listens for errors only on idle clients: a connection lost while checked out (a
    // server restart, a network cut) emits 'error' on the client, which must not go unhandled.
    const onError = (err: Error): void => {
      broken = err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await fn(new TxClient(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr instanceof Error ? rollbackErr : new Error(String(rollbackErr));
      }
      throw toStoreError(err, 'transaction');
    } finally {
      // A connection that failed (or failed to roll back) is discarded, not reused.
      client.removeListener('error', onError);
      client.release(broken);
    }
  }

  async copyInto(
    tx: SqlClient,
    table: string,
    columns: readonly string[],
    lines: readonly string[],
  ): Promise<void> {
    if (!(tx instanceof TxClient)) throw new Error('copyInto needs a transaction of this database');
    try {
      const sink = tx.client.query(copyFrom(`COPY ${table} (${columns.join(', ')}) FROM STDIN`));
      await pipeline(Readable.from(chunks(lines)), sink);
    } catch (err) {
      throw toStoreError(err, 'copy');
    }
  }

  poolStats(): { total: number; idle: number; waiting: number } {
    return {
      total: this.pool.totalCount,
      idle: this.pool.idleCount,
      waiting: this.pool.waitingCount,
    };
  }

  close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }
}

/** Joins lines into ~64 KiB chunks for the COPY stream. */
function* chunks(lines: readonly string[]): Generator<string> {
  let buf = '';
  for (const l of lines) {
    buf += l;
    if (buf.length >= 65_536) {
      yield buf;
      buf = '';
    }
  }
  if (buf.length > 0) yield buf;
}
