import { silentLogger } from '../../src/core/logger.js';
import { PGliteDatabase } from '../../src/store/pglite/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import { storeConformance, storeSettings } from '../conformance/store-suite.js';

/** PGlite in a worker thread (what `nexus up` runs) passes the same suite as in process. */
const logger = silentLogger();

let template: Promise<Blob | File> | undefined;
function pristine(): Promise<Blob | File> {
  template ??= (async () => {
    const db = new PGliteDatabase('memory://', undefined, { worker: true });
    await db.ready();
    const dump = await db.dump();
    await db.close();
    return dump;
  })();
  return template;
}

storeConformance({
  name: 'pglite-worker',
  create: async (options) => {
    const db = new PGliteDatabase('memory://', await pristine(), { worker: true });
    await db.ready();
    const store = new SqlStore({
      db,
      logger,
      ...storeSettings(options),
    });
    return { store, sql: db };
  },
  teardown: () => Promise.resolve(),
});
