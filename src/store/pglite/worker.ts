/**
 * The worker thread of `PGliteDatabase` in worker mode: owns one PGlite instance and runs the
 * statements the main thread sends, one at a time. PGlite executes a statement synchronously
 * (WebAssembly), so here it blocks this thread instead of the main thread's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openPGlite, runOn, type RawResult } from './engine.js';
import type { WorkerError, WorkerInit, WorkerRequest, WorkerResponse } from './protocol.js';

function errorOf(err: unknown): WorkerError {
  const message = err instanceof Error ? err.message : String(err);
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return { message, code: err.code };
  return { message };
}

const port = parentPort;
if (port === null) throw new Error('the PGlite worker must run in a worker thread');
const init = workerData as WorkerInit;
const db = openPGlite(init.dataDir, init.template);

// New WAL segments need not be filled with zeros first (a write of 16 MiB each, for nothing on
// the filesystems PGlite runs on).
db.waitReady
  .then(() => db.exec('SET wal_init_zero = off'))
  .then(
    () => port.postMessage({ ready: true }),
    (err: unknown) => port.postMessage({ ready: false, error: errorOf(err) }),
  );

port.on('message', (req: WorkerRequest) => {
  void handle(req).then((res) => {
    if ('dump' in res) port.postMessage(res, [res.dump]);
    else port.postMessage(res);
  });
});

async function handle(req: WorkerRequest): Promise<WorkerResponse> {
  try {
    switch (req.op) {
      case 'query': {
        const started = performance.now();
        const res: RawResult = await runOn(db, req.text, req.params);
        const ms = performance.now() - started;
        return { id: req.id, ok: true, rows: res.rows, rowCount: res.rowCount, ms };
      }
      case 'dump': {
        const blob = await db.dumpDataDir('none');
        return { id: req.id, ok: true, dump: await blob.arrayBuffer() };
      }
      case 'close':
        await db.close();
        return { id: req.id, ok: true, rows: [], rowCount: 0, ms: 0 };
    }
  } catch (err) {
    return { id: req.id, ok: false, error: errorOf(err) };
  }
}
