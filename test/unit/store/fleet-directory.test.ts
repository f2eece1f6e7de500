import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { FleetDirectory, nameParts } from '../../../src/store/fleet-directory.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { SqlStore } from '../../../src/store/sql-store.js';
import { T0, rec } from '../../conformance/store-fixtures.js';
import { storeSettings } from '../../conformance/store-suite.js';
import { migratedDump } from '../../helpers/pglite.js';

async function open(t: { after: (fn: () => Promise<void>) => void }) {
  const db = new PGliteDatabase('memory://', await migratedDump());
  await db.ready();
  const store = new SqlStore({ db, logger: silentLogger(), ...storeSettings({}) });
  t.after(() => store.close());
  await store.migrate();
  return { db, store };
}

describe('fleet directory', () => {
  it('indexes a name under each of its parts', () => {
    assert.deepEqual(nameParts('GPU-Node-01.rack_3/x'), [
      'gpu-node-01.rack_3/x',
      'node-01.rack_3/x',
      '01.rack_3/x',
      'rack_3/x',
      '3/x',
      'x',
    ]);
  });

  it('loads the fleet, then reads only what changed (inserts, retirements; not last_seen touches)', async (t) => {
    const { db, store } = await open(t);
    await store.write('c1', [
      rec(T0, 1, { hostname: 'node-b', gpu: 0 }),
      rec(T0, 1, { hostname: 'node-b', gpu: 1 }),
      rec(T0, 1, { hostname: 'node-a', gpu: 0 }),
    ]);
    await store.write('c0', [rec(T0, 1, { hostname: 'x-1', gpu: 0 })]);
    const dir = new FleetDirectory();
    await dir.refresh(db, null);
    assert.deepEqual(dir.counters.reloads, { full: 1, incremental: 0 });
    assert.deepEqual(
      { ...dir.counters.rowsRead, workloads: 0 },
      { clusters: 2, hosts: 3, gpus: 4, workloads: 0 },
    );
    assert.deepEqual(
      dir.sortedClusters.map((c) => [c.name, c.listed.length, c.liveGpus, c.retiredGpus]),
      [
        ['c0', 1, 1, 0],
        ['c1', 2, 3, 0],
      ],
    );
    assert.deepEqual(
      dir.clusters.get('c1')?.hosts.map((h) => [h.hostname, h.liveWhole]),
      [
        ['node-a', 1],
        ['node-b', 2],
      ],
    );

    // Nothing changed: nothing read.
    await dir.refresh(db, null);
    assert.deepEqual(dir.counters.rowsRead, { clusters: 2, hosts: 3, gpus: 4, workloads: 0 });
    // last_seen touches are no change.
    await store.write('c1', [rec(T0 + 60_000, 2, { hostname: 'node-b', gpu: 0 })]);
    await db.query(`UPDATE gpus SET last_seen = last_seen + interval '1 hour'`);
    await dir.refresh(db, null);
    assert.deepEqual(dir.counters.rowsRead, { clusters: 2, hosts: 3, gpus: 4, workloads: 0 });

    // A new host between the others, and a retired GPU.
    await store.write('c1', [rec(T0, 1, { hostname: 'node-ab', gpu: 0 })]);
    await db.query(
      `UPDATE gpus SET retired_at = now() WHERE host_id = (SELECT id FROM hosts WHERE hostname = 'node-a')`,
    );
    await dir.refresh(db, null);
    assert.deepEqual(dir.counters.rowsRead, { clusters: 2, hosts: 4, gpus: 6, workloads: 0 });
    assert.deepEqual(dir.counters.reloads, { full: 1, incremental: 3 });
    const c1 = dir.clusters.get('c1');
    assert.ok(c1 !== undefined);
    assert.deepEqual(
      c1.hosts.map((h) => h.hostname),
      ['node-a', 'node-ab', 'node-b'],
    );
    assert.deepEqual(
      c1.listed.map((h) => h.hostname),
      ['node-ab', 'node-b'],
    );
    assert.deepEqual([c1.liveGpus, c1.retiredGpus], [3, 1]);
    // Applied twice: nothing changes (idempotent).
    await db.query(`UPDATE gpus SET model = model || ' ' WHERE gpu_index = 1`);
    await db.query(`UPDATE gpus SET model = rtrim(model) WHERE gpu_index = 1`);
    await dir.refresh(db, null);
    assert.deepEqual([c1.liveGpus, c1.retiredGpus, c1.listed.length], [3, 1, 2]);
  });

  it('serves pages of hosts and GPUs through the reader, each item once, in order', async (t) => {
    const { store } = await open(t);
    const records = [];
    for (let h = 0; h < 7; h++)
      for (let g = 0; g < 3; g++)
        records.push(
          rec(T0, h * 10 + g, { hostname: `gpu-node-${String(6 - h).padStart(2, '0')}`, gpu: g }),
        );
    await store.write('c', records);
    const reader = store.reader;
    const walk = async (limit: number, prefix?: string): Promise<string[]> => {
      const out: string[] = [];
      let after: readonly (string | number)[] | undefined;
      for (;;) {
        const page = await reader.hostsPage('c', {
          limit,
          ...(after === undefined ? {} : { after }),
          ...(prefix === undefined ? {} : { prefix }),
        });
        assert.ok(page !== undefined);
        out.push(...page.items.map((h) => h.hostname));
        assert.equal(page.total, prefix === undefined ? 7 : 1);
        if (page.next === undefined) return out;
        after = page.next;
      }
    };
    const all = Array.from({ length: 7 }, (_, i) => `gpu-node-0${i}`);
    assert.deepEqual(await walk(2), all);
    assert.deepEqual(await walk(100), all);
    assert.deepEqual(await walk(1, 'gpu-node-03'), ['gpu-node-03']);

    const gpus: string[] = [];
    let after: readonly (string | number)[] | undefined;
    for (;;) {
      const page = await reader.gpusPage('c', undefined, {
        limit: 4,
        ...(after === undefined ? {} : { after }),
      });
      assert.ok(page !== undefined);
      assert.equal(page.total, 21);
      gpus.push(...page.items.map((g) => `${g.hostname}/${g.gpu_id}`));
      if (page.next === undefined) break;
      after = page.next;
    }
    assert.deepEqual(
      gpus,
      all.flatMap((h) => [0, 1, 2].map((g) => `${h}/${g}`)),
    );
    const host = await reader.host('c', 'gpu-node-02');
    assert.equal(host?.gpus, 3);
    assert.equal(host.last_seen, T0);
    assert.equal(await reader.host('c', 'nope'), undefined);
    assert.equal(await reader.hostsPage('nope', { limit: 10 }), undefined);

    // An unknown name reads the changes once; asked again within a second, it is not found
    // without another read; a host written meanwhile is found once that second is over.
    const refreshes = (): number => reader.fleetCounters?.().reloads.incremental ?? -1;
    const before = refreshes();
    assert.equal(await reader.host('c', 'gpu-node-99'), undefined);
    const once = refreshes();
    assert.ok(once > before);
    assert.equal(await reader.host('c', 'gpu-node-99'), undefined);
    assert.equal(refreshes(), once);
    await store.write('c', [
      rec(T0, 1, { hostname: 'gpu-node-99', gpu: 0 }),
      rec(T0 + 1000, 1, { hostname: 'gpu-node-01', gpu: 2, namespace: 'research', pod: 'nb-7' }),
    ]);
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await reader.host('c', 'gpu-node-99'))?.gpus, 1);

    // Workloads now: the pod and its namespace (by a part of the name too).
    const pods = await reader.search({ q: 'NB-7', limit: 20 });
    assert.deepEqual(pods.hits, [
      {
        kind: 'pod',
        cluster_id: 'c',
        namespace: 'research',
        pod: 'nb-7',
        host_id: 'gpu-node-01',
        gpu_id: 2,
        label: 'research/nb-7',
      },
    ]);
    const namespaces = await reader.search({ q: 'res', kinds: ['namespace'], limit: 20 });
    assert.deepEqual(namespaces.hits, [
      { kind: 'namespace', cluster_id: 'c', namespace: 'research', label: 'research', gpus: 1 },
    ]);

    const found = await reader.search({ q: 'node-02', limit: 20 });
    assert.deepEqual(
      found.hits.map((h) => [h.kind, h.label]),
      [
        ['host', 'gpu-node-02'],
        ['gpu', 'GPU-gpu-node-02-0'],
        ['gpu', 'GPU-gpu-node-02-1'],
        ['gpu', 'GPU-gpu-node-02-2'],
      ],
    );
    const hostsOnly = await reader.search({ q: 'NODE-02', kinds: ['host'], limit: 20 });
    assert.deepEqual(
      hostsOnly.hits.map((h) => [h.kind, h.label]),
      [['host', 'gpu-node-02']],
    );
    const few = await reader.search({ q: 'gpu', limit: 2 });
    assert.equal(few.hits.length, 2);
    assert.equal(few.truncated, true);
    const byUuid = await reader.search({ q: 'node-02-1', limit: 20 });
    assert.deepEqual(
      byUuid.hits.map((h) => [h.kind, h.label]),
      [['gpu', 'GPU-gpu-node-02-1']],
    );
  });
});

describe('overview state', () => {
  it('waits for the first load of the latest values when asked right after the start (not the per-request queries)', async (t) => {
    const { store } = await open(t);
    await store.write('c1', [
      rec(T0, 301, { hostname: 'node-a', gpu: 0, metric: 'DCGM_FI_DEV_POWER_USAGE' }),
      rec(T0, 99, { hostname: 'node-a', gpu: 1, metric: 'DCGM_FI_DEV_GPU_TEMP' }),
    ]);
    const tracker = store.reader.trackLatest?.({ reloadMs: 60_000 });
    assert.ok(tracker !== undefined);
    t.after(() => tracker.stop());
    tracker.start();
    // Asked at once: the answer comes from memory (it was undefined, sending the overview to the
    // store's per-cluster idle query, until the load had finished).
    const state = await store.reader.overviewState?.();
    assert.ok(state !== undefined, 'the overview state waited for the load');
    assert.equal(state.power.get('c1'), 301);
    assert.equal(state.alertsTotal, 1);
  });
});
