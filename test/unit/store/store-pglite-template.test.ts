import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { pristineTemplate } from '../../../src/store/pglite/template.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import { storeSettings } from '../../conformance/store-suite.js';
import { T0, rec } from '../../conformance/store-fixtures.js';
import { pristineDump } from '../../helpers/pglite.js';

/** `nexus up` starts a fresh data directory from the build's pristine template (no initdb). */
describe('PGlite pristine template', () => {
  let root: string;
  let file: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'nexus-template-'));
    file = join(root, 'template.tar.gz');
    // What scripts/build-pglite-template.mjs makes: a fresh PGlite's data directory.
    writeFileSync(file, Buffer.from(await (await pristineDump()).arrayBuffer()));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a fresh directory starts from it, in a worker, and keeps what is written across a restart', async () => {
    const dir = join(root, 'fresh');
    const template = await pristineTemplate(dir, file);
    assert.ok(template !== undefined);
    const open = async (t: Blob | undefined) => {
      const db = new PGliteDatabase(dir, t, { worker: true });
      await db.ready();
      return new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
    };
    const store = await open(template);
    await store.migrate();
    await store.write('c1', [rec(T0, 41), rec(T0 + 1000, 42)]);
    // The worker reports the time each statement took (nexus_pglite_busy_seconds_total).
    const busy = store.engineStats();
    assert.ok(
      busy !== undefined && busy.statements > 0 && busy.busySeconds > 0,
      JSON.stringify(busy),
    );
    await store.close();

    // The directory now holds a database: no template, and the data is there.
    assert.equal(await pristineTemplate(dir, file), undefined);
    const again = await open(undefined);
    try {
      await again.ping();
      const latest = await again.reader.latest({ cluster: 'c1' });
      assert.deepEqual(
        latest.map((r) => r.value),
        [42],
      );
    } finally {
      await again.close();
    }
  });

  it('without a template file (running from the sources) PGlite runs initdb: undefined', async () => {
    assert.equal(
      await pristineTemplate(join(root, 'other'), join(root, 'missing.tar.gz')),
      undefined,
    );
  });
});
