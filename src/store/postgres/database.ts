import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../../core/logger.js';
import type { Database, QueryResult, SqlClient } from '../types.js';
import { toStoreError } from './errors.js';

export interface PostgresConnection {
  /** DATABASE_URL; when set it wins over the separate fields. */
  readonly url?: string;
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** disable, require (TLS without verification), verify-ca or verify-full. */
  readonly sslMode: 'disable' | 'require' | 'verify-ca' | 'verify-full';
  readonly sslRootCertFile?: string;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly applicationName: string;
}

function ssl(c: PostgresConnection): pg.ConnectionConfig['ssl'] {
  if (c.sslMode === 'disable') return false;
  const ca =
    c.sslRootCertFile !== undefined && c.sslRootCertFile !== ''
      ? readFileSync(c.sslRootCertFile, 'utf8')
      : undefined;
  return {
    rejectUnauthorized: c.sslMode !== 'require',
    ...(ca === undefined ? {} : { ca }),
    ...(c.sslMode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
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

/** PostgreSQL through a node-postgres pool; COPY through pg-copy-streams. */
export class PostgresDatabase implements Database {
  readonly backend = 'postgres' as const;
  private readonly pool: pg.Pool;
  private closing: Promise<void> | undefined;

  constructor(connection: PostgresConnection, logger: Logger) {
    const base: pg.PoolConfig = {
      max: connection.poolSize,
      connectionTimeoutMillis: connection.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
      statement_timeout: connection.statementTimeoutMs,
      application_name: connection.applicationName,
      keepAlive: true,
    };
    const config: pg.PoolConfig =
      connection.url !== undefined && connection.url !== ''
        ? {
            ...base,
            connectionString: connection.url,
            ...(connection.sslMode === 'disable' ? {} : { ssl: ssl(connection) }),
          }
        : {
            ...base,
            host: connection.host,
            port: connection.port,
            database: connection.database,
            user: connection.user,
            password: connection.password,
            ssl: ssl(connection),
          };
    this.pool = new pg.Pool(config);
    // An idle client losing its connection must not crash the process.
    this.pool.on('error', (err) =>
      logger.warn({ err: err.message }, 'idle PostgreSQL connection failed'),
    );
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    try {
      const res = await this.pool.query(text, params as unknown[] | undefined);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    } catch (err) {
      throw toStoreError(err, 'query');
    }
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
