import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NexusError, describeError } from '../../core/errors.js';
import { processAlive } from '../../core/process.js';
import {
  checkName,
  mintToken,
  nameTaken,
  type NewToken,
  type Scope,
  type TokenRecord,
  type TokenStore,
} from './tokens.js';

/** One token as tokens.json holds it (instants as ISO text, for a person reading the file). */
interface FileToken {
  id: string;
  name: string;
  scope: Scope;
  hash: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

interface TokenFile {
  version: 1;
  tokens: FileToken[];
}

const iso = (v: number | null): string | null => (v === null ? null : new Date(v).toISOString());
const msOf = (v: string | null): number | null => (v === null ? null : Date.parse(v));

function toRecord(t: FileToken): TokenRecord {
  return {
    id: t.id,
    name: t.name,
    scope: t.scope,
    hash: t.hash,
    createdAt: Date.parse(t.created_at),
    expiresAt: msOf(t.expires_at),
    revokedAt: msOf(t.revoked_at),
    lastUsedAt: msOf(t.last_used_at),
  };
}

function isFileToken(v: unknown): v is FileToken {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Record<string, unknown>;
  const instant = (x: unknown): boolean => x === null || typeof x === 'string';
  return (
    typeof t.id === 'string' &&
    typeof t.name === 'string' &&
    (t.scope === 'read' || t.scope === 'write' || t.scope === 'admin') &&
    typeof t.hash === 'string' &&
    /^[0-9a-f]{64}$/.test(t.hash) &&
    typeof t.created_at === 'string' &&
    instant(t.expires_at) &&
    instant(t.revoked_at) &&
    instant(t.last_used_at)
  );
}

/** How long a writer waits for another one's lock before giving up. */
const LOCK_WAIT_MS = 5000;

/**
 * Tokens in a file (`$NEXUS_DATA_DIR/tokens.json`): the embedded mode's store, for `nexus up` and
 * `nexus token --embedded`, which may run at the same time. The file is mode 0600 and replaced
 * atomically (written beside it, flushed, renamed over it), so a reader sees the old or the new
 * file, never half of one; writers (create, revoke, last use) take turns through a lock file
 * `tokens.json.lock` holding the writer's process id (a dead writer's lock is taken over).
 */
export class FileTokenStore implements TokenStore {
  readonly where: string;
  /** Writers of this process, one after the other (the lock file orders processes). */
  private turn: Promise<void> = Promise.resolve();

  constructor(private readonly path: string) {
    this.where = path;
  }

  async create(t: NewToken, now = Date.now()): Promise<{ token: string; record: TokenRecord }> {
    const minted = mintToken();
    const name = t.name === undefined ? minted.id : checkName(t.name);
    const entry: FileToken = {
      id: minted.id,
      name,
      scope: t.scope,
      hash: minted.hash,
      created_at: new Date(now).toISOString(),
      expires_at: iso(t.expiresAt),
      revoked_at: null,
      last_used_at: null,
    };
    await this.update((file) => {
      const other = file.tokens.find((x) => x.name === name && x.revoked_at === null);
      if (other !== undefined) throw nameTaken(name, other.id);
      file.tokens.push(entry);
      return true;
    });
    return { token: minted.token, record: toRecord(entry) };
  }

  async list(): Promise<TokenRecord[]> {
    return (await this.read()).tokens.map(toRecord);
  }

  async revoke(idOrName: string, now = Date.now()): Promise<TokenRecord | undefined> {
    let out: TokenRecord | undefined;
    await this.update((file) => {
      const t =
        file.tokens.find((x) => x.id === idOrName) ??
        file.tokens.find((x) => x.name === idOrName && x.revoked_at === null);
      if (t === undefined) return false;
      const changed = t.revoked_at === null;
      t.revoked_at ??= new Date(now).toISOString();
      out = toRecord(t);
      return changed;
    });
    return out;
  }

  async findByHash(hash: string): Promise<TokenRecord | undefined> {
    const t = (await this.read()).tokens.find((x) => x.hash === hash);
    return t === undefined ? undefined : toRecord(t);
  }

  async touch(id: string, at: number): Promise<void> {
    await this.update((file) => {
      const t = file.tokens.find((x) => x.id === id);
      if (t === undefined) return false;
      if (t.last_used_at !== null && Date.parse(t.last_used_at) >= at) return false;
      t.last_used_at = new Date(at).toISOString();
      return true;
    });
  }

  async close(): Promise<void> {
    // Nothing held open.
  }

  /** The file's tokens; none when there is no file yet. */
  private async read(): Promise<TokenFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, tokens: [] };
      throw new NexusError('CONFIG_INVALID', `cannot read ${this.path}: ${describeError(err)}`, {
        cause: err,
      });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new NexusError(
        'CONFIG_INVALID',
        `${this.path} is not a Nexus token file (not JSON: ${describeError(err)}); move it away to start a new one`,
      );
    }
    const p = parsed as { version?: unknown; tokens?: unknown } | null;
    if (
      typeof p !== 'object' ||
      p === null ||
      p.version !== 1 ||
      !Array.isArray(p.tokens) ||
      !p.tokens.every(isFileToken)
    ) {
      throw new NexusError(
        'CONFIG_INVALID',
        `${this.path} is not a Nexus token file (expected {"version": 1, "tokens": [...]}); move it away to start a new one`,
      );
    }
    return { version: 1, tokens: p.tokens };
  }

  /** Reads, changes and (when `change` says it changed) rewrites the file, holding the lock. */
  private update(change: (file: TokenFile) => boolean): Promise<void> {
    const next = this.turn.then(() => this.updateNow(change));
    this.turn = next.catch(() => undefined);
    return next;
  }

  private async updateNow(change: (file: TokenFile) => boolean): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    const release = await this.lock();
    try {
      const file = await this.read();
      if (!change(file)) return;
      const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
        const handle = await open(tmp, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await chmod(tmp, 0o600);
        await rename(tmp, this.path);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw new NexusError('CONFIG_INVALID', `cannot write ${this.path}: ${describeError(err)}`, {
          cause: err,
        });
      }
    } finally {
      await release();
    }
  }

  private async lock(): Promise<() => Promise<void>> {
    const file = `${this.path}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
        return () => unlink(file).catch(() => undefined);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new NexusError('CONFIG_INVALID', `cannot lock ${file}: ${describeError(err)}`, {
            cause: err,
          });
        }
      }
      const holder = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (
        Number.isInteger(holder) &&
        holder > 0 &&
        holder !== process.pid &&
        !processAlive(holder)
      ) {
        // Its writer died holding it: take it over.
        await unlink(file).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) {
        throw new NexusError(
          'CONFIG_INVALID',
          `${file} has been held by process ${Number.isInteger(holder) ? holder : '?'} for over ${LOCK_WAIT_MS / 1000} s; if no such process runs, delete it`,
        );
      }
      await sleep(20);
    }
  }
}
