import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import { CUSTOM, T0, rec } from '../../conformance/store-fixtures.js';
import { storeSettings } from '../../conformance/store-suite.js';
import { migratedDump } from '../../helpers/pglite.js';

const VIOLATION = 'DCGM_FI_DEV_POWER_VIOLATION';

describe('metric units', () => {
  it("are the field catalogue's, even where an older Nexus stored 'us' for the violation counters", async (t) => {
    const db = new PGliteDatabase('memory://', await migratedDump());
    await db.ready();
    const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    t.after(() => store.close());
    await store.migrate();
    // What Nexus before issue 18 stored on first sight of the field (its catalogue said µs), and a
    // field the catalogue does not know, whose stored unit stays.
    await db.query(
      `INSERT INTO metrics (name, unit, type, help) VALUES
         ($1, 'us', 'counter', 'Throttling duration due to power constraints'),
         ($2, 'widgets', 'gauge', '')`,
      [VIOLATION, CUSTOM],
    );
    await store.write('cluster-1', [
      rec(T0, 1_234_567_000, { metric: VIOLATION }),
      rec(T0, 7, { metric: CUSTOM }),
    ]);

    const catalogue = await store.reader.metricCatalogue();
    assert.deepEqual(
      catalogue.map((m) => [m.name, m.unit]),
      [
        [CUSTOM, 'widgets'],
        [VIOLATION, 'ns'],
      ],
    );
    const latest = await store.reader.latest({ cluster: 'cluster-1' });
    assert.deepEqual(latest.map((l) => [l.metric, l.unit, l.value]).sort(), [
      [CUSTOM, 'widgets', 7],
      [VIOLATION, 'ns', 1_234_567_000],
    ]);
    const stats = await store.reader.clusterStats('cluster-1');
    assert.deepEqual(
      stats?.samples_per_metric.map((m) => [m.metric, m.unit]),
      [
        [CUSTOM, 'widgets'],
        [VIOLATION, 'ns'],
      ],
    );
  });
});
