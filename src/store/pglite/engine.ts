import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';

export type Queryable = Pick<PGlite, 'query' | 'exec'> | Transaction;

export interface RawResult {
  readonly rows: unknown[];
  readonly rowCount: number;
}

/**
 * Opens PGlite on a directory (or `memory://`), optionally from a dumped data directory.
 *
 * Durability: PGlite starts PostgreSQL with fsync off and its Node filesystem has no fsync, so a
 * commit has reached the operating system (write(2), synchronously) but not necessarily the disk
 * when it returns. A killed or crashed process loses nothing committed; a power cut or a kernel
 * crash can lose the last seconds. docs/storage.md says so.
 */
export function openPGlite(dataDir: string, template?: Blob): PGlite {
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  return new PGlite(dataDir, template === undefined ? {} : { loadDataDir: template });
}

/** One statement (with parameters) or a script (without: the last statement's rows). Throws PGlite's errors. */
export async function runOn(
  db: Queryable,
  text: string,
  params?: readonly unknown[],
): Promise<RawResult> {
  if (params === undefined || params.length === 0) {
    // exec runs several statements (migrations); the last one's rows are the answer.
    const results = await db.exec(text);
    const last = results[results.length - 1];
    return { rows: last?.rows ?? [], rowCount: last?.affectedRows ?? last?.rows.length ?? 0 };
  }
  const res = await db.query<unknown>(text, [...params]);
  return { rows: res.rows, rowCount: res.affectedRows ?? res.rows.length };
}
