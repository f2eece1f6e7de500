import { silentLogger } from '../../../src/core/logger.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import { storeConformance, storeSettings } from '../../conformance/store-suite.js';

/** The embedded store passes the same suite as PostgreSQL (each test on a fresh in-memory database). */
const logger = silentLogger();

/** A pristine data directory, made once: each database starts from it instead of running initdb. */
let template: Promise<Blob | File> | undefined;
function pristine(): Promise<Blob | File> {
  template ??= (async () => {
    const db = new PGliteDatabase('memory://');
    await db.ready();
    const dump = await db.dump();
    await db.close();
    return dump;
  })();
  return template;
}

storeConformance({
  name: 'pglite',
  create: async (options) => {
    const db = new PGliteDatabase('memory://', await pristine());
    await db.ready();
    const store = new SqlStore({
      db,
      logger,
      ...storeSettings(options),
    });
    // The store closes its database; the raw SQL client is the same database.
    return { store, sql: db };
  },
  teardown: () => Promise.resolve(),
});
