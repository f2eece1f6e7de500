import { pgliteConformance } from '../helpers/pglite.js';

/** PGlite in a worker thread (what `nexus up` runs) passes the same suite as in process. */
pgliteConformance('pglite-worker', { worker: true });
