import type { Database } from '../../store/types.js';
import {
  checkName,
  mintToken,
  nameTaken,
  type NewToken,
  type Scope,
  type TokenRecord,
  type TokenStore,
} from './tokens.js';

interface Row {
  id: string;
  name: string;
  scope: string;
  hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

const ms = (column: string): string =>
  `(extract(epoch FROM ${column}) * 1000)::float8 AS ${column}`;

const COLUMNS = `id, name, scope, hash, ${ms('created_at')}, ${ms('expires_at')}, ${ms('revoked_at')}, ${ms('last_used_at')}`;

function record(r: Row): TokenRecord {
  const n = (v: number | null): number | null => (v === null ? null : Math.round(v));
  return {
    id: r.id,
    name: r.name,
    scope: r.scope as Scope,
    hash: r.hash,
    createdAt: Math.round(r.created_at),
    expiresAt: n(r.expires_at),
    revokedAt: n(r.revoked_at),
    lastUsedAt: n(r.last_used_at),
  };
}

/** An instant (ms) as a query parameter for to_timestamp($n / 1000.0). */
const at = (v: number | null): number | null => (v === null ? null : v);

/**
 * Tokens in PostgreSQL (migration 005, table api_tokens): the distributed mode's store, shared by
 * every gateway. PGlite runs the same migration.
 */
export class SqlTokenStore implements TokenStore {
  readonly where = 'PostgreSQL (table api_tokens)';

  constructor(private readonly db: Database) {}

  async create(t: NewToken, now = Date.now()): Promise<{ token: string; record: TokenRecord }> {
    const minted = mintToken();
    const name = t.name === undefined ? minted.id : checkName(t.name);
    const row = await this.db.transaction(async (tx) => {
      const taken = await tx.query<{ id: string }>(
        'SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL',
        [name],
      );
      const other = taken.rows[0];
      if (other !== undefined) throw nameTaken(name, other.id);
      const res = await tx.query<Row>(
        `INSERT INTO api_tokens (id, name, scope, hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0), to_timestamp($6 / 1000.0))
         RETURNING ${COLUMNS}`,
        [minted.id, name, t.scope, minted.hash, now, at(t.expiresAt)],
      );
      return res.rows[0];
    });
    if (row === undefined) throw new Error('INSERT ... RETURNING returned no row');
    return { token: minted.token, record: record(row) };
  }

  async list(): Promise<TokenRecord[]> {
    const res = await this.db.query<Row>(
      `SELECT ${COLUMNS} FROM api_tokens ORDER BY created_at, id`,
    );
    return res.rows.map(record);
  }

  async revoke(idOrName: string, now = Date.now()): Promise<TokenRecord | undefined> {
    return this.db.transaction(async (tx) => {
      const found = await tx.query<{ id: string }>(
        `SELECT id FROM api_tokens WHERE id = $1
         UNION ALL
         (SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL LIMIT 1)
         LIMIT 1`,
        [idOrName],
      );
      const id = found.rows[0]?.id;
      if (id === undefined) return undefined;
      const res = await tx.query<Row>(
        `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, to_timestamp($2 / 1000.0))
         WHERE id = $1 RETURNING ${COLUMNS}`,
        [id, now],
      );
      const row = res.rows[0];
      return row === undefined ? undefined : record(row);
    });
  }

  async findByHash(hash: string): Promise<TokenRecord | undefined> {
    const res = await this.db.query<Row>(`SELECT ${COLUMNS} FROM api_tokens WHERE hash = $1`, [
      hash,
    ]);
    const row = res.rows[0];
    return row === undefined ? undefined : record(row);
  }

  async touch(id: string, when: number): Promise<void> {
    await this.db.query(
      `UPDATE api_tokens SET last_used_at = to_timestamp($2 / 1000.0)
       WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < to_timestamp($2 / 1000.0))`,
      [id, when],
    );
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
