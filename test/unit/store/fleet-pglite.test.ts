import { fleetConformance } from '../../conformance/fleet-suite.js';
import { pgliteHarness } from '../../helpers/pglite.js';

/** Idle GPUs and usage (docs/fleet.md) on the embedded store. */
fleetConformance(pgliteHarness('pglite', { worker: false }));
