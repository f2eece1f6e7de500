import { silentLogger } from '../../../src/core/logger.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import {
  storeConformance,
  storeSettings,
  type StoreOptions,
} from '../../conformance/store-suite.js';
import { migratedDump, pristineDump } from '../../helpers/pglite.js';

/**
 * The embedded store passes the same suite as PostgreSQL (each test on a fresh in-memory
 * database, started from a pristine data directory, or a migrated one, made once: no initdb).
 */
const logger = silentLogger();

async function storeFrom(template: Blob, options: StoreOptions) {
  const db = new PGliteDatabase('memory://', template);
  await db.ready();
  const store = new SqlStore({
    db,
    logger,
    ...storeSettings(options),
  });
  // The store closes its database; the raw SQL client is the same database.
  return { store, sql: db };
}

storeConformance({
  name: 'pglite',
  create: async (options) => storeFrom(await pristineDump(), options),
  createMigrated: async (options) => storeFrom(await migratedDump(), options),
  teardown: () => Promise.resolve(),
  // PGlite has no COPY: a store asked for it writes with unnest (SqlStore), the same path.
  writeMethods: ['unnest'],
});
