import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { Dimensions } from '../../../src/store/dimensions.js';
import { SECOND, T0, rec } from '../../conformance/store-fixtures.js';
import { migratedDump } from '../../helpers/pglite.js';

describe('dimension cache bound', () => {
  it('a fleet larger than the cache: every batch gets the ids of its rows, none doubled, and the cache keeps its bound', async (t) => {
    const db = new PGliteDatabase('memory://', await migratedDump());
    t.after(() => db.close());
    const max = 12;
    const dims = new Dimensions(max);
    // 10 hosts of 4 GPUs, a batch per host, twice over (the second round finds none cached).
    const batch = (host: number, at: number) =>
      Array.from({ length: 4 }, (_, gpu) =>
        rec(at, gpu, { hostname: `h${host}`, gpu, pod: `p${host}-${gpu}`, namespace: 'ml' }),
      );
    const seen = new Map<string, number>();
    for (const round of [0, 1]) {
      for (let h = 0; h < 10; h++) {
        const records = batch(h, T0 + round * 10 * SECOND);
        const ids = await dims.resolve(db, 'c1', records);
        for (const [i, r] of records.entries()) {
          const key = `${r.hostname}/${r.gpu}`;
          const id = ids.gpu[i];
          if (seen.has(key)) assert.equal(id, seen.get(key), key);
          else seen.set(key, id ?? -1);
        }
        const cached = dims.cached;
        // Trimmed before each batch: the bound, plus what one batch brings.
        assert.ok(cached.gpus <= max + 4, `${cached.gpus} GPUs cached`);
        assert.ok(cached.workloads <= max + 4, `${cached.workloads} workloads cached`);
        assert.ok(cached.hosts <= max + 1, `${cached.hosts} hosts cached`);
      }
    }
    const rows = await db.query<{ gpus: number; hosts: number; workloads: number }>(
      `SELECT (SELECT count(*)::int FROM gpus) AS gpus, (SELECT count(*)::int FROM hosts) AS hosts,
              (SELECT count(*)::int FROM gpu_workloads) AS workloads`,
    );
    assert.deepEqual(rows.rows[0], { gpus: 40, hosts: 10, workloads: 40 });
    const ids = await db.query<{ id: number; hostname: string; gpu_index: number }>(
      'SELECT g.id, h.hostname, g.gpu_index FROM gpus g JOIN hosts h ON h.id = g.host_id',
    );
    for (const r of ids.rows) assert.equal(seen.get(`${r.hostname}/${r.gpu_index}`), r.id);
    assert.equal(seen.size, 40);
  });
});
