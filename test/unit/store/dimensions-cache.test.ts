import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { Dimensions, gpuAttrs, sameAttrs } from '../../../src/store/dimensions.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
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

describe('GPU attributes compared with what was seen', () => {
  /** What a GPU row says: its uuid, model and device as stored, and its labels' JSON. */
  const row = (r: TelemetryRecord): string =>
    JSON.stringify([
      (r.uuid ?? '').toWellFormed(),
      (r.model ?? '').toWellFormed(),
      (r.device ?? '').toWellFormed(),
      gpuAttrs(r).labels,
    ]);

  it('sameAttrs answers as comparing the rows gpuAttrs makes would, whatever differs', () => {
    const base = rec(T0, 1, { labels: { job: 'dcgm', instance: 'node-a:9400' } });
    const variants = [
      base,
      { ...base, uuid: 'GPU-other' },
      (({ uuid: _uuid, ...rest }) => rest)(base),
      { ...base, uuid: 'GPU-\ud800-lone' },
      { ...base, uuid: 'GPU-\udbff-lone' },
      { ...base, labels: { ...base.labels, job: '\udc00' } },
      { ...base, labels: { ...base.labels, job: '\udfff' } },
      { ...base, labels: JSON.parse('{"__proto__":"x","job":"dcgm"}') as Record<string, string> },
      { ...base, labels: JSON.parse('{"__proto__":"y","job":"dcgm"}') as Record<string, string> },
      { ...base, model: 'NVIDIA A100' },
      { ...base, device: 'nvidia10' },
      { ...base, device: '' },
      { ...base, labels: { ...base.labels, job: 'dcgm2' } },
      { ...base, labels: { ...base.labels, job: 'dcg' } },
      { ...base, labels: { ...base.labels, extra: '' } },
      { ...base, labels: { ...base.labels, __name__: 'OTHER' } },
      { ...base, labels: Object.fromEntries(Object.entries(base.labels).reverse()) },
      { ...base, labels: { ...base.labels, job: 'say "hi"\\' } },
      { ...base, labels: { ...base.labels, job: 'line\nbreak\u0001' } },
      { ...base, labels: { ...base.labels, job: 'caf\u00e9 \ud83d\ude80 \ud800' } },
      { ...base, labels: { ...base.labels, 'we"ird': 'x' } },
      { ...base, labels: { ...base.labels, job: 'dcgm","instance":"node-a:9400' } },
      { ...base, labels: { ...base.labels, '0': 'first', '10': 'then' } },
      { ...base, labels: {} },
      { ...base, labels: { __name__: 'M' } },
      { ...base, uuid: 'a\u0000b' },
    ];
    for (const [i, a] of variants.entries()) {
      const { seen } = gpuAttrs(a);
      for (const [j, b] of variants.entries())
        assert.equal(sameAttrs(seen, b), row(a) === row(b), `${i} against ${j}`);
      // A label more or fewer than seen is not the same.
      if (seen.keys.length > 0)
        assert.equal(sameAttrs({ ...seen, keys: seen.keys.slice(0, -1) }, a), false, `${i} fewer`);
      assert.equal(
        sameAttrs({ ...seen, keys: [...seen.keys, 'x'], values: [...seen.values, ''] }, a),
        false,
        `${i} more`,
      );
    }
    // A value with quotes that spans what were two labels when seen.
    const two = rec(T0, 1, { labels: { a: 'x', b: 'y' } });
    const one = { ...two, labels: { ...two.labels, a: 'x","b":"y' } };
    delete (one.labels as Record<string, string>)['b'];
    assert.equal(sameAttrs(gpuAttrs(two).seen, one), false);
    // Nothing seen is never the same.
    assert.equal(sameAttrs(undefined, two), false);
  });

  it('keeps what a reading said (sliced strings too), and shares lists of label names', () => {
    const line = `${'x'.repeat(1000)},GPU-0123456789abcdef,dcgm-exporter-job`;
    const uuid = line.slice(1001, 1021);
    const job = line.slice(1022);
    const a = gpuAttrs(rec(T0, 1, { uuid, labels: { job, instance: 'node-a:9400' } }));
    const b = gpuAttrs(rec(T0, 2, { uuid, labels: { job, instance: 'node-b:9400' } }));
    assert.equal(a.seen.uuid, uuid);
    assert.deepEqual(a.seen.values.slice(-2), [job, 'node-a:9400']);
    assert.equal(a.seen.keys, b.seen.keys);
  });
});

describe('GPU rows with text that is not well-formed', () => {
  it('are stored with U+FFFD for a lone surrogate (in the uuid, the model or a label), not refused', async (t) => {
    const db = new PGliteDatabase('memory://', await migratedDump());
    t.after(() => db.close());
    const dims = new Dimensions();
    const r = rec(T0, 1, {
      uuid: 'GPU-\ud800x',
      model: 'H100 \udfff',
      labels: { job: 'a\ud83d' },
    });
    const ids = await dims.resolve(db, 'c1', [r]);
    const row = await db.query<{ uuid: string; model: string; job: string }>(
      "SELECT uuid, model, labels->>'job' AS job FROM gpus WHERE id = $1",
      [ids.gpu[0]],
    );
    assert.deepEqual(row.rows[0], { uuid: 'GPU-\ufffdx', model: 'H100 \ufffd', job: 'a\ufffd' });
    // Known now: the same reading again needs no upsert, and gets the same id.
    const again = await dims.resolve(db, 'c1', [{ ...r, timestamp: T0 + SECOND }]);
    assert.equal(again.gpu[0], ids.gpu[0]);
  });
});

describe('a batch of known GPUs', () => {
  it('costs no statement while nothing moves, one to move spans, and an older reading keeps what a newer one said', async (t) => {
    const pglite = new PGliteDatabase('memory://', await migratedDump());
    t.after(() => pglite.close());
    let statements = 0;
    const db = {
      query: ((...args: Parameters<typeof pglite.query>) => {
        statements++;
        return pglite.query(...args);
      }) as typeof pglite.query,
      transaction: ((fn: Parameters<typeof pglite.transaction>[0]) => {
        statements++;
        return pglite.transaction(fn);
      }) as typeof pglite.transaction,
    };
    const dims = new Dimensions();
    // Two GPUs of one host, each read for two metrics; GPU 0 runs a pod.
    const batch = (at: number, over: { uuid0?: string; pod0?: string } = {}) =>
      [0, 1].flatMap((gpu) =>
        ['DCGM_FI_DEV_GPU_TEMP', 'DCGM_FI_DEV_POWER_USAGE'].map((metric) =>
          rec(at, gpu, {
            gpu,
            metric,
            ...(gpu === 0
              ? {
                  pod: over.pod0 ?? 'train-0',
                  namespace: 'ml',
                  ...(over.uuid0 === undefined ? {} : { uuid: over.uuid0 }),
                }
              : {}),
          }),
        ),
      );
    const first = await dims.resolve(db, 'c1', batch(T0));
    assert.ok(statements > 0);
    const ids = [...first.gpu];
    const resolveCounting = async (records: TelemetryRecord[]) => {
      const before = statements;
      const got = await dims.resolve(db, 'c1', records);
      assert.deepEqual([...got.gpu], ids);
      return statements - before;
    };
    assert.equal(await resolveCounting(batch(T0 + SECOND)), 0, 'nothing moved: no statement');
    assert.equal(await resolveCounting(batch(T0 + 2 * 60 * SECOND)), 1, 'spans moved: one touch');
    assert.equal(await resolveCounting(batch(T0 + 2 * 60 * SECOND + SECOND)), 0);
    // An older reading with another uuid: the newest seen (kept through the touch) says it is
    // stale, so nothing is written.
    assert.equal(await resolveCounting(batch(T0 + 30 * SECOND, { uuid0: 'GPU-older' })), 0);
    // A pod seen for the first time: the upsert writes its workload row, once for both metrics.
    assert.ok(
      (await resolveCounting(batch(T0 + 2 * 60 * SECOND + 2 * SECOND, { pod0: 'train-1' }))) > 0,
    );
    const rows = await pglite.query<{ uuid: string; pods: string[]; spans: string[] }>(
      `SELECT g.uuid, array_agg(w.pod ORDER BY w.pod) AS pods,
              array_agg(nexus_ms(w.first_seen)::text || '-' || nexus_ms(w.last_seen)::text ORDER BY w.pod) AS spans
       FROM gpus g JOIN gpu_workloads w ON w.gpu_id = g.id WHERE g.id = $1 GROUP BY g.uuid`,
      [ids[0]],
    );
    assert.deepEqual(rows.rows[0], {
      uuid: 'GPU-node-a-0',
      pods: ['train-0', 'train-1'],
      spans: [
        `${T0}-${T0 + 2 * 60 * SECOND}`,
        `${T0 + 2 * 60 * SECOND + 2 * SECOND}-${T0 + 2 * 60 * SECOND + 2 * SECOND}`,
      ],
    });
  });
});
