/**
 * PGlite data directories for the tests to start databases from, made once: a pristine one (what
 * initdb makes) and a migrated one (every migration applied to it). A test's database starts from
 * a copy (`new PGliteDatabase(dir, template)`, PGlite's `loadDataDir`) instead of running initdb
 * (2-4 s of a core) and the migrations.
 *
 * Once per test process; under the harness (scripts/test.ts points NEXUS_TEST_CACHE to a
 * directory of its own for the run), once per run: the first process writes the tarballs there,
 * the others read them.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { silentLogger } from '../../src/core/logger.js';
import { migrate } from '../../src/store/migrate.js';
import { PGliteDatabase } from '../../src/store/pglite/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import {
  storeConformance,
  storeSettings,
  type StoreHarness,
  type StoreOptions,
} from '../conformance/store-suite.js';
import { ROOT } from './child.js';

/** The build's pristine template (scripts/build-pglite-template.mjs) and its PGlite version. */
const BUILT = join(ROOT, 'dist', 'store', 'pglite', 'template.tar.gz');
const PGLITE_VERSION = (
  JSON.parse(
    readFileSync(join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json'), 'utf8'),
  ) as { version: string }
).version;

/** A tarball from the run's cache, or made by `make` and put there (written whole, then renamed). */
async function cached(name: string, make: () => Promise<Blob>): Promise<Blob> {
  const dir = process.env.NEXUS_TEST_CACHE;
  const file = dir === undefined || dir === '' ? undefined : join(dir, `${name}.dump`);
  if (file !== undefined && existsSync(file)) return new Blob([readFileSync(file)]);
  const blob = await make();
  if (file !== undefined) {
    const part = `${file}.${process.pid}.part`;
    writeFileSync(part, Buffer.from(await blob.arrayBuffer()));
    renameSync(part, file);
  }
  return blob;
}

/** The data directory a database dumps, started from `template` (initdb without one). */
async function dumped(template: Blob | undefined, prepare?: (db: PGliteDatabase) => Promise<void>) {
  const db = new PGliteDatabase('memory://', template);
  try {
    await db.ready();
    await prepare?.(db);
    return await db.dump();
  } finally {
    await db.close();
  }
}

let pristine: Promise<Blob> | undefined;
/**
 * A pristine data directory: the build's template when it is there for this PGlite version (what
 * `nexus up` starts from), else what initdb makes.
 */
export function pristineDump(): Promise<Blob> {
  pristine ??= cached('pglite-pristine', () => {
    const built =
      existsSync(BUILT) &&
      existsSync(`${BUILT}.version`) &&
      readFileSync(`${BUILT}.version`, 'utf8') === PGLITE_VERSION;
    // Kept unzipped: every database started from it would gunzip it again.
    return built ? Promise.resolve(new Blob([gunzipSync(readFileSync(BUILT))])) : dumped(undefined);
  });
  return pristine;
}

/**
 * The pristine data directory as a file (in the run's cache, NEXUS_TEST_CACHE), for processes
 * that start from it (PGLITE_TEMPLATE).
 */
export async function pristineDumpFile(): Promise<string> {
  const dir = process.env.NEXUS_TEST_CACHE;
  if (dir === undefined || dir === '') throw new Error('pristineDumpFile needs NEXUS_TEST_CACHE');
  await pristineDump();
  return join(dir, 'pglite-pristine.dump');
}

let migrated: Promise<Blob> | undefined;
/** A data directory with every migration applied (src/store/sql), from the pristine one. */
export function migratedDump(): Promise<Blob> {
  migrated ??= cached('pglite-migrated', async () =>
    dumped(await pristineDump(), async (db) => {
      await migrate(db, silentLogger());
    }),
  );
  return migrated;
}

/**
 * The store conformance suite on PGlite, in process or in a worker thread (what `nexus up` runs):
 * each test on a fresh in-memory database started from the pristine or the migrated dump.
 */
export function pgliteConformance(name: string, options: { worker: boolean }): void {
  storeConformance(pgliteHarness(name, options));
}

/** A store harness on PGlite (see pgliteConformance), for the conformance suites. */
export function pgliteHarness(name: string, options: { worker: boolean }): StoreHarness {
  const logger = silentLogger();
  const storeFrom = async (template: Blob, settings: StoreOptions) => {
    const db = new PGliteDatabase('memory://', template, options.worker ? { worker: true } : {});
    await db.ready();
    // The store closes its database; the raw SQL client is the same database.
    return { store: new SqlStore({ db, logger, ...storeSettings(settings) }), sql: db };
  };
  return {
    name,
    create: async (settings) => storeFrom(await pristineDump(), settings),
    createMigrated: async (settings) => storeFrom(await migratedDump(), settings),
    teardown: () => Promise.resolve(),
    // PGlite has no COPY: a store asked for it writes with unnest (SqlStore), the same path.
    writeMethods: ['unnest'],
  };
}
