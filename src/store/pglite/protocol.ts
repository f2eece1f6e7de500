/** Messages between `PGliteDatabase` (worker mode) and the worker thread that owns PGlite. */

export interface WorkerInit {
  readonly dataDir: string;
  /** A data directory dumped by `dump()`. */
  readonly template?: Blob;
}

export type WorkerCall =
  | { readonly op: 'query'; readonly text: string; readonly params?: unknown[] }
  | { readonly op: 'dump' | 'close' };

export type WorkerRequest = WorkerCall & { readonly id: number };

/** A database error, reduced to what crosses threads and what `toStoreError` reads. */
export interface WorkerError {
  readonly message: string;
  readonly code?: string;
}

export type WorkerResponse =
  | {
      readonly id: number;
      readonly ok: true;
      readonly rows: unknown[];
      readonly rowCount: number;
      /** Time the statement took to execute in the worker. */
      readonly ms: number;
    }
  | { readonly id: number; readonly ok: true; readonly dump: ArrayBuffer }
  | { readonly id: number; readonly ok: false; readonly error: WorkerError };

/** Sent once the database has started (or failed to). */
export type WorkerReady =
  { readonly ready: true } | { readonly ready: false; readonly error: WorkerError };
