import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PGlite } from '@electric-sql/pglite';
import { toStoreError } from '../postgres/errors.js';
import type { Database, EngineStats, QueryResult, SqlClient } from '../types.js';
import { startFailure } from './data-dir.js';
import { openPGlite, runOn, type Queryable } from './engine.js';
import type {
  WorkerCall,
  WorkerError,
  WorkerInit,
  WorkerReady,
  WorkerRequest,
  WorkerResponse,
} from './protocol.js';

export interface PGliteDatabaseOptions {
  /**
   * Run PGlite in a worker thread. PGlite executes each statement synchronously; in process that
   * blocks the event loop (streamer, collector, gateway) for the length of every write, in a
   * worker it does not, and the database work runs on another core.
   */
  readonly worker?: boolean;
}

/** Statements executed and the time they took (see `EngineStats`). */
class Busy {
  statements = 0;
  ms = 0;
  add(ms: number): void {
    this.statements++;
    this.ms += ms;
  }
}

async function run<R>(
  db: Queryable,
  text: string,
  params: readonly unknown[] | undefined,
  busy: Busy,
): Promise<QueryResult<R>> {
  const started = performance.now();
  try {
    const res = await runOn(db, text, params);
    return { rows: res.rows as R[], rowCount: res.rowCount };
  } catch (err) {
    throw toStoreError(err, 'query');
  } finally {
    busy.add(performance.now() - started);
  }
}

/** The database error a worker reported, as the error PGlite would have thrown in process. */
function fromWorker(e: WorkerError): Error & { code?: string } {
  const err: Error & { code?: string } = new Error(e.message);
  if (e.code !== undefined) err.code = e.code;
  return err;
}

/**
 * Starts the worker: its compiled entry next to this file, or, running from the TypeScript sources
 * (tests, `tsx`), the source entry through tsx, registered in the worker itself.
 */
function startWorker(workerData: WorkerInit): Worker {
  const js = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData });
  const ts = new URL('./worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

/** The main thread's side of a PGlite worker: requests in, one response per request. */
class WorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { resolve: (r: WorkerResponse) => void; reject: (e: Error) => void }
  >();
  private nextId = 0;
  private failed: Error | undefined;
  readonly ready: Promise<void>;
  readonly busy = new Busy();

  constructor(dataDir: string, template?: Blob) {
    const init: WorkerInit = template === undefined ? { dataDir } : { dataDir, template };
    this.worker = startWorker(init);
    this.worker.unref();
    this.ready = new Promise<void>((resolve, reject) => {
      this.worker.once('message', (m: WorkerReady) => {
        if (m.ready) resolve();
        else reject(toStoreError(fromWorker(m.error), 'start'));
        this.worker.on('message', (r: WorkerResponse) => this.settle(r));
      });
      this.worker.once('error', reject);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`PGlite worker exited (code ${code})`)));
  }

  private settle(r: WorkerResponse): void {
    const p = this.pending.get(r.id);
    if (p === undefined) return;
    this.pending.delete(r.id);
    if (this.pending.size === 0) this.worker.unref();
    p.resolve(r);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  request(req: WorkerCall): Promise<WorkerResponse> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const id = ++this.nextId;
    // Keep the process alive while a request is outstanding, not while the worker idles.
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const message: WorkerRequest = { ...req, id };
      this.worker.postMessage(message);
    });
  }

  async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    let res: WorkerResponse;
    try {
      res = await this.request(
        params === undefined ? { op: 'query', text } : { op: 'query', text, params: [...params] },
      );
    } catch (err) {
      throw toStoreError(err, 'query');
    }
    if (!res.ok) throw toStoreError(fromWorker(res.error), 'query');
    if (!('rows' in res)) throw toStoreError(new Error('unexpected worker response'), 'query');
    this.busy.add(res.ms);
    return { rows: res.rows as R[], rowCount: res.rowCount };
  }

  async dump(): Promise<Blob> {
    let res: WorkerResponse;
    try {
      res = await this.request({ op: 'dump' });
    } catch (err) {
      throw toStoreError(err, 'dump');
    }
    if (!res.ok) throw toStoreError(fromWorker(res.error), 'dump');
    if (!('dump' in res)) throw toStoreError(new Error('unexpected worker response'), 'dump');
    return new Blob([res.dump]);
  }

  async close(): Promise<void> {
    if (this.failed === undefined) {
      const res = await this.request({ op: 'close' }).catch(() => undefined);
      if (res !== undefined && !res.ok) throw toStoreError(fromWorker(res.error), 'close');
    }
    this.failed ??= new Error('database is closed');
    await this.worker.terminate();
  }
}

/**
 * PGlite, PostgreSQL compiled to WebAssembly: the embedded store, with the same migrations and
 * statements as PostgreSQL. Persisted in a directory (or in memory with `memory://`). One
 * connection: statements queue behind each other; transactions hold it. In process by default;
 * with `worker: true` in a worker thread (see `PGliteDatabaseOptions`).
 */
export class PGliteDatabase implements Database {
  readonly backend = 'pglite' as const;
  private readonly db: PGlite | undefined;
  private readonly remote: WorkerClient | undefined;
  /** Worker mode: the connection's turn (a statement, or a whole transaction). */
  private turn: Promise<unknown> = Promise.resolve();
  /** In-process mode: what PGlite has executed. */
  private readonly busy = new Busy();
  private closing: Promise<void> | undefined;
  private started: Promise<void> | undefined;

  /** `template`: start from a data directory dumped by `dump()` (skips initdb: ~1 s instead of ~4). */
  constructor(
    private readonly dataDir: string,
    template?: Blob | File,
    options: PGliteDatabaseOptions = {},
  ) {
    if (options.worker === true) {
      this.db = undefined;
      this.remote = new WorkerClient(dataDir, template);
    } else {
      this.db = openPGlite(dataDir, template);
      this.remote = undefined;
    }
  }

  /** The whole data directory as a tarball, to start other databases from. */
  dump(): Promise<Blob | File> {
    if (this.remote !== undefined) {
      const remote = this.remote;
      return this.inTurn(() => remote.dump());
    }
    return (this.db as PGlite).dumpDataDir('none');
  }

  /**
   * Resolves when the database has started (WebAssembly compiled, files opened). Rejects saying
   * why it did not, in words a user can act on (a data directory of another PostgreSQL version,
   * or a damaged one).
   */
  ready(): Promise<void> {
    this.started ??= (this.remote?.ready ?? (this.db as PGlite).waitReady).catch(
      async (err: unknown) => {
        throw await startFailure(this.dataDir, err);
      },
    );
    return this.started;
  }

  /** Runs `fn` when the connection is free, holding it until `fn` settles (worker mode). */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const mine = this.turn.then(fn, fn);
    this.turn = mine.catch(() => undefined);
    return mine;
  }

  query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.remote !== undefined) {
      const remote = this.remote;
      return this.inTurn(() => remote.query<R>(text, params));
    }
    return run<R>(this.db as PGlite, text, params, this.busy);
  }

  /**
   * Statements executed and the time PGlite spent executing them (in its worker, or here). Only
   * successful statements are counted in worker mode.
   */
  engineStats(): EngineStats {
    const busy = this.remote?.busy ?? this.busy;
    return { statements: busy.statements, busySeconds: busy.ms / 1000 };
  }

  async transaction<T>(fn: (tx: SqlClient) => Promise<T>): Promise<T> {
    if (this.remote !== undefined) {
      const remote = this.remote;
      return this.inTurn(async () => {
        await remote.query('BEGIN');
        let result: T;
        try {
          result = await fn({
            query: <R>(text: string, params?: readonly unknown[]) => remote.query<R>(text, params),
          });
        } catch (err) {
          await remote.query('ROLLBACK').catch(() => undefined);
          throw toStoreError(err, 'transaction');
        }
        await remote.query('COMMIT');
        return result;
      });
    }
    try {
      return await (this.db as PGlite).transaction(async (tx) =>
        fn({
          query: <R>(text: string, params?: readonly unknown[]) =>
            run<R>(tx, text, params, this.busy),
        }),
      );
    } catch (err) {
      throw toStoreError(err, 'transaction');
    }
  }

  close(): Promise<void> {
    if (this.remote !== undefined) {
      const remote = this.remote;
      this.closing ??= this.inTurn(() => remote.close());
    } else {
      this.closing ??= (this.db as PGlite).close();
    }
    return this.closing;
  }
}
