/**
 * DIMENSION_CACHE_MAX (docs/scaling.md): a collector keeps the ids of at most that many hosts,
 * GPUs and workloads of each kind; a fleet larger than the bound is stored all the same, exactly,
 * each batch re-reading the rows it no longer has. On PostgreSQL, with a bound of 10 and a fleet of
 * 12 hosts x 8 GPUs written in overlapping batches.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { sqlStore } from '../helpers/pipeline.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { T0 } from '../conformance/store-fixtures.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const HOSTS = 12;
const MAX = 10;
const host = (h: number): string => `node-${String(h).padStart(2, '0')}`;
/** The value GPU g of host h reads at instant i: tells every reading apart. */
const value = (h: number, g: number, i: number): number => h * 100_000 + g * 1000 + i;

/** Instant i: the readings of hosts [i, i + 5) (modulo HOSTS), 8 GPUs each, each with a pod. */
function batch(i: number): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  for (let k = 0; k < 5; k++) {
    const h = (i + k) % HOSTS;
    for (let g = 0; g < 8; g++) {
      out.push({
        timestamp: T0 + i * 1000,
        metric: 'DCGM_FI_DEV_GPU_UTIL',
        gpu: g,
        hostname: host(h),
        uuid: `GPU-${h}-${g}`,
        model: 'NVIDIA H100 80GB HBM3',
        pod: `job-${h}-${g}`,
        namespace: 'batch',
        value: value(h, g, i),
        labels: { job: 'dcgm' },
      });
    }
  }
  return out;
}

let url: string;
let store: SqlStore;
before(async () => {
  const server = await sharedPostgres();
  url = await server.server.createDatabase(uniqueDatabase('dimcache'));
  store = sqlStore(url, silentLogger(), { dimensionCacheMax: MAX });
  await store.migrate();
});
after(async () => {
  await store.close();
  await (await sharedPostgres()).release();
});

describe('a fleet larger than DIMENSION_CACHE_MAX', () => {
  it('is stored exactly, each reading on its own GPU, while the ids kept stay bounded', async () => {
    const instants = 30;
    for (let i = 0; i < instants; i++) {
      await store.write('dimcache', batch(i));
      const kept = store.dimensionsCached;
      // Trimmed to the bound before each batch is planned; the batch then adds what it brings
      // (5 hosts, 40 GPUs, 40 workloads).
      assert.ok(kept.hosts <= MAX + 5, `hosts kept: ${kept.hosts}`);
      assert.ok(kept.gpus <= MAX + 40, `GPUs kept: ${kept.gpus}`);
      assert.ok(kept.workloads <= MAX + 40, `workloads kept: ${kept.workloads}`);
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const dims = await client.query<{ hosts: string; gpus: string; workloads: string }>(
        `SELECT (SELECT count(*) FROM hosts) AS hosts, (SELECT count(*) FROM gpus) AS gpus,
                (SELECT count(*) FROM gpu_workloads) AS workloads`,
      );
      assert.deepEqual(dims.rows[0], { hosts: '12', gpus: '96', workloads: '96' });
      const rows = await client.query<{ hostname: string; gpu: number; uuid: string; v: number }>(
        `SELECT h.hostname, g.gpu_index AS gpu, g.uuid, s.value AS v, nexus_ms(s.time) AS t
         FROM samples s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id`,
      );
      assert.equal(rows.rows.length, instants * 40, 'every reading stored once');
      for (const r of rows.rows) {
        const h = Number(r.hostname.slice('node-'.length));
        assert.equal(r.uuid, `GPU-${h}-${r.gpu}`);
        // The value says which host, GPU and instant it was written for.
        assert.equal(Math.floor(r.v / 100_000), h, `${r.hostname} holds a reading of another host`);
        assert.equal(Math.floor((r.v % 100_000) / 1000), r.gpu);
      }
    } finally {
      await client.end();
    }
  });
});
