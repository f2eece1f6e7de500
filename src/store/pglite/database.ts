import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { toStoreError } from '../postgres/errors.js';
import type { Database, QueryResult, SqlClient } from '../types.js';

type Queryable = Pick<PGlite, 'query' | 'exec'> | Transaction;

async function run<R>(
  db: Queryable,
  text: string,
  params?: readonly unknown[],
): Promise<QueryResult<R>> {
  try {
    if (params === undefined || params.length === 0) {
      // exec runs several statements (migrations); the last one's rows are the answer.
      const results = await db.exec(text);
      const last = results[results.length - 1];
      return {
        rows: (last?.rows ?? []) as R[],
        rowCount: last?.affectedRows ?? last?.rows.length ?? 0,
      };
    }
    const res = await db.query<R>(text, [...params]);
    return { rows: res.rows, rowCount: res.affectedRows ?? res.rows.length };
  } catch (err) {
    throw toStoreError(err, 'query');
  }
}

/**
 * PGlite, PostgreSQL compiled to WebAssembly and run in process: the embedded store, with the same
 * migrations and statements as PostgreSQL. Persisted in a directory (or in memory with
 * `memory://`). One connection: statements queue behind each other; transactions hold it.
 */
export class PGliteDatabase implements Database {
  readonly backend = 'pglite' as const;
  private readonly db: PGlite;
  private closing: Promise<void> | undefined;

  /** `template`: start from a data directory dumped by `dump()` (skips initdb: ~1 s instead of ~4). */
  constructor(dataDir: string, template?: Blob | File) {
    if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
    this.db = new PGlite(dataDir, template === undefined ? {} : { loadDataDir: template });
  }

  /** The whole data directory as a tarball, to start other databases from. */
  dump(): Promise<Blob | File> {
    return this.db.dumpDataDir('none');
  }

  /** Resolves when the database has started (WebAssembly compiled, files opened). */
  ready(): Promise<void> {
    return this.db.waitReady;
  }

  query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return run<R>(this.db, text, params);
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    try {
      return await this.db.transaction(async (tx) =>
        fn({ query: <R>(text: string, params?: readonly unknown[]) => run<R>(tx, text, params) }),
      );
    } catch (err) {
      throw toStoreError(err, 'transaction');
    }
  }

  close(): Promise<void> {
    this.closing ??= this.db.close();
    return this.closing;
  }
}
