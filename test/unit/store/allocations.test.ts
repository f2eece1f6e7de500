import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TelemetryRecord } from '../../../src/core/record.js';
import { AllocationMinutes } from '../../../src/store/allocations.js';
import type { ResolvedIds } from '../../../src/store/dimensions.js';
import type { QueryResult, SqlClient } from '../../../src/store/types.js';

/** A client that records the rows each insert carries. */
function recorder(): { db: SqlClient; inserts: string[][] } {
  const inserts: string[][] = [];
  const db: SqlClient = {
    query<R>(_text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const [g, b, n, p] = (params ?? []) as [number[], number[], string[], string[]];
      inserts.push(g.map((x, i) => `${x}/${b[i]}/${n[i]}/${p[i]}`));
      return Promise.resolve({ rows: [], rowCount: 0 });
    },
  };
  return { db, inserts };
}

const r = (t: number, pod?: string, namespace?: string): TelemetryRecord => ({
  timestamp: t,
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  gpu: 0,
  hostname: 'h',
  value: 1,
  labels: {},
  ...(pod === undefined ? {} : { pod }),
  ...(namespace === undefined ? {} : { namespace }),
});
const ids = (n: number, gpu = 7): ResolvedIds => ({
  gpu: new Int32Array(n).fill(gpu),
  metric: new Int16Array(n).fill(1),
  identity: 'db',
});

describe('allocation minutes', () => {
  it('one row per GPU, minute and workload (pod "" for readings without one), in key order; known rows are not written again', async () => {
    const { db, inserts } = recorder();
    const a = new AllocationMinutes();
    const batch = [
      r(60_000 + 5000, 'p2', 'ns'),
      r(60_000 + 1000, 'p1', 'ns'),
      r(60_000 + 9000, 'p1', 'ns'),
      r(5000),
      r(6000),
      r(120_000, 'p1', 'ns'),
    ];
    assert.equal(await a.write(db, batch, ids(batch.length)), 4);
    assert.deepEqual(inserts, [['7/0//', '7/60000/ns/p1', '7/60000/ns/p2', '7/120000/ns/p1']]);
    // The same batch again (a redelivery): only the row older than the GPU's newest two minutes
    // (not remembered) is sent again; more readings of the same minutes: no statement.
    assert.equal(await a.write(db, batch, ids(batch.length)), 1);
    assert.deepEqual(inserts[1], ['7/0//']);
    assert.equal(await a.write(db, [r(60_000 + 30_000, 'p2', 'ns')], ids(1)), 0);
    assert.equal(await a.write(db, [r(120_000 + 30_000, 'p1', 'ns')], ids(1)), 0);
    assert.equal(inserts.length, 2);
  });

  it('GPUs interleaved and pods alternating within a minute: each row once', async () => {
    const { db, inserts } = recorder();
    const a = new AllocationMinutes();
    // Two GPUs, metric after metric (as an export orders them), GPU 7 switching pods and back.
    const batch = [
      r(1000, 'a', 'ns'),
      r(1000, 'x', 'ns'),
      r(2000, 'b', 'ns'),
      r(2000, 'x', 'ns'),
      r(3000, 'a', 'ns'),
      r(3000, 'x', 'ns'),
      r(61_000, 'a', 'ns'),
      r(61_000, 'x', 'ns'),
    ];
    const gpus: ResolvedIds = {
      ...ids(batch.length),
      gpu: Int32Array.from(batch, (_, i) => 7 + (i % 2)),
    };
    assert.equal(await a.write(db, batch, gpus), 5);
    assert.deepEqual(inserts, [
      ['7/0/ns/a', '7/0/ns/b', '7/60000/ns/a', '8/0/ns/x', '8/60000/ns/x'],
    ]);
  });

  it('remembers at most its limit of GPUs, forgetting the least recently written first (a forgotten row is written again, which the database ignores)', async () => {
    const { db, inserts } = recorder();
    const a = new AllocationMinutes(3);
    const gpu = (...g: number[]): ResolvedIds => ({ ...ids(g.length), gpu: Int32Array.from(g) });
    const minute0 = (n: number): TelemetryRecord[] =>
      Array.from({ length: n }, () => r(0, 'p', 'ns'));
    await a.write(db, minute0(5), gpu(1, 2, 3, 4, 5));
    assert.equal(a.remembered, 3);
    // GPUs 1 and 2 were forgotten: written again; 3 and 4, written least recently, go.
    assert.equal(await a.write(db, minute0(5), gpu(1, 2, 3, 4, 5)), 2);
    assert.deepEqual(inserts[1], ['1/0/ns/p', '2/0/ns/p']);
    // Remembered: 5, 1, 2, from the least recently written. GPU 5 writes a new minute, so 1 is the
    // least recently written when GPU 6 comes in: 1 goes, 5 stays.
    await a.write(db, [r(60_000, 'p', 'ns')], gpu(5));
    await a.write(db, minute0(1), gpu(6));
    assert.equal(a.remembered, 3);
    assert.equal(await a.write(db, minute0(3), gpu(1, 2, 5)), 1);
    assert.deepEqual(inserts.at(-1), ['1/0/ns/p']);
  });

  it("keeps the rows of a GPU's newest two minutes, at most eight: older ones come again as new (the database ignores them)", async () => {
    const { db, inserts } = recorder();
    const a = new AllocationMinutes();
    const minutes = Array.from({ length: 10 }, (_, m) => r(m * 60_000, 'p', 'ns'));
    assert.equal(await a.write(db, minutes, ids(10)), 10);
    // Minutes 8 and 9 are known; 0 to 7 are written again.
    assert.equal(await a.write(db, minutes, ids(10)), 8);
    assert.equal(await a.write(db, minutes.slice(8), ids(2)), 0);
    // Ten workloads in one minute: the last eight written are kept.
    const pods = Array.from({ length: 10 }, (_, i) => r(600_000, `p${i}`, 'ns'));
    assert.equal(await a.write(db, pods, ids(10)), 10);
    assert.equal(await a.write(db, pods, ids(10)), 2);
    assert.deepEqual(inserts.at(-1), ['7/600000/ns/p0', '7/600000/ns/p1']);
  });

  it('a forget() while an insert is under way: the rows it wrote are not remembered for the new database', async () => {
    const inserts: number[] = [];
    let release: () => void = () => undefined;
    const db: SqlClient = {
      query<R>(): Promise<QueryResult<R>> {
        inserts.push(inserts.length);
        return new Promise((resolve) => {
          release = () => resolve({ rows: [], rowCount: 0 });
        });
      },
    };
    const a = new AllocationMinutes();
    const first = a.write(db, [r(0, 'p', 'ns')], ids(1));
    a.forget();
    release();
    assert.equal(await first, 1);
    assert.equal(a.remembered, 0);
    const again = a.write(db, [r(0, 'p', 'ns')], ids(1));
    release();
    assert.equal(await again, 1, 'written again into the new database');
    assert.equal(inserts.length, 2);
  });

  it('forget() drops what it knows (another database)', async () => {
    const { db, inserts } = recorder();
    const a = new AllocationMinutes();
    await a.write(db, [r(0, 'p', 'ns')], ids(1));
    a.forget();
    await a.write(db, [r(0, 'p', 'ns')], ids(1));
    assert.equal(inserts.length, 2);
  });
});
