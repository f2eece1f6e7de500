import { pgliteConformance } from '../../helpers/pglite.js';

/**
 * The embedded store passes the same suite as PostgreSQL (each test on a fresh in-memory
 * database, started from a pristine data directory, or a migrated one, made once: no initdb).
 */
pgliteConformance('pglite', { worker: false });
