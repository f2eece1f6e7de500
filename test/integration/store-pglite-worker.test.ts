import { silentLogger } from '../../src/core/logger.js';
import { PGliteDatabase } from '../../src/store/pglite/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import { storeConformance, storeSettings, type StoreOptions } from '../conformance/store-suite.js';
import { migratedDump, pristineDump } from '../helpers/pglite.js';

/** PGlite in a worker thread (what `nexus up` runs) passes the same suite as in process. */
const logger = silentLogger();

async function storeFrom(template: Blob, options: StoreOptions) {
  const db = new PGliteDatabase('memory://', template, { worker: true });
  await db.ready();
  const store = new SqlStore({
    db,
    logger,
    ...storeSettings(options),
  });
  return { store, sql: db };
}

storeConformance({
  name: 'pglite-worker',
  create: async (options) => storeFrom(await pristineDump(), options),
  createMigrated: async (options) => storeFrom(await migratedDump(), options),
  teardown: () => Promise.resolve(),
  // PGlite has no COPY: a store asked for it writes with unnest (SqlStore), the same path.
  writeMethods: ['unnest'],
});
