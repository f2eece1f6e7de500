/**
 * Issue 19's acceptance: a generated fleet (`nexus generate --fleet`, the day's jobs and incidents
 * played 12x faster over two hours) streamed through `nexus up` (streamer, in-process queue, two
 * collector workers, PGlite, gateway), then every fleet endpoint compared with figures computed
 * here from the CSV alone (test/helpers/fleet-expect.ts follows docs/fleet.md's definitions with
 * none of Nexus's code): idle GPUs and their wasted GPU-hours, event counts by type, GPU-hours,
 * utilisation and kWh per namespace and per host.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run, spawnNexus } from '../helpers/child.js';
import {
  expectedIdle,
  expectedUsage,
  expectedXidEvents,
  gpuKey,
  type UsageFigures,
} from '../helpers/fleet-expect.js';
import { startNexusUp, type NexusUp } from '../helpers/nexus-up.js';
import { until } from '../helpers/pipeline.js';
import { sampleRows, type SampleRow } from '../helpers/sample.js';

const MINUTE = 60_000;
const STALE_AFTER_MS = 10 * MINUTE;
const IDLE_UTIL = 5;
const IDLE_FOR_MS = 15 * MINUTE;
/** Throttling reasons (docs/fleet.md): SW power cap, HW slowdown, SW/HW thermal, power brake. */
const THROTTLING = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;

const dir = mkdtempSync(join(tmpdir(), 'nexus-fleet-intel-'));
const csv = join(dir, 'fleet.csv');
// Two hours ending a little before now, minute-aligned: recent enough for every default range.
const start = Math.floor((Date.now() - 3 * 3_600_000) / MINUTE) * MINUTE;
const end = start + 2 * 3_600_000;
let rows: SampleRow[] = [];
let nexus: NexusUp | undefined;

interface Json {
  [k: string]: unknown;
}

async function get(path: string): Promise<{ status: number; body: Json; text: string }> {
  const res = await fetch(`${nexus?.url ?? ''}${path}`);
  const text = await res.text();
  let body: Json = {};
  try {
    body = JSON.parse(text) as Json;
  } catch {
    // CSV
  }
  return { status: res.status, body, text };
}

function close(actual: unknown, expected: number, what: string): void {
  assert.equal(typeof actual, 'number', `${what}: ${String(actual)}`);
  const a = actual as number;
  assert.ok(
    Math.abs(a - expected) <= 1e-6 * Math.max(1, Math.abs(expected)),
    `${what}: got ${a}, expected ${expected}`,
  );
}

before(async () => {
  const gen = await run(
    spawnNexus([
      'generate',
      '--fleet',
      '--start',
      new Date(start).toISOString(),
      '--duration',
      '2h',
      '--interval',
      '30s',
      '--speed',
      '12',
      '--out',
      csv,
    ]),
  );
  assert.equal(gen.code, 0, gen.stderr);
  rows = sampleRows(csv);
  nexus = await startNexusUp(120_000, {
    CSV_FILE: csv,
    LOOP_MODE: 'false',
    TIMESTAMP_MODE: 'original',
    STREAM_INTERVAL: '0',
    BATCH_SIZE: '1000',
  });
  // Every reading stored, then the retirement job's next pass (every 30 s) has seen the end.
  let stored: unknown;
  const all = await until(async () => {
    stored = (await get('/api/v1/clusters/local-cluster/stats')).body.samples;
    return stored === rows.length;
  }, 240_000);
  assert.ok(all, `${String(stored)} of ${rows.length} readings stored:\n${nexus.logs()}`);
});

after(async () => {
  await nexus?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleet intelligence on a generated fleet, end to end', () => {
  it('the fleet has the incidents the test relies on', () => {
    assert.ok(rows.length > 100_000, `${rows.length} readings`);
    assert.ok(expectedXidEvents(rows).length >= 3);
    assert.ok(
      rows.some((r) => r.labels.GPU_I_ID !== undefined),
      'MIG instances',
    );
  });

  it('usage by namespace: GPU-hours, utilisation while allocated and kWh as computed from the readings', async () => {
    const from = new Date(start).toISOString();
    const to = new Date(end).toISOString();
    const res = await get(
      `/api/v1/clusters/local-cluster/usage?group_by=namespace&from=${from}&to=${to}`,
    );
    assert.equal(res.status, 200, res.text);
    const expected = expectedUsage(rows, start, end, 'namespace');
    const groups = res.body.groups as Json[];
    assert.deepEqual(
      groups.map((g) => g.namespace).sort(),
      [...expected.groups.keys()].sort(),
      'the namespaces',
    );
    for (const g of groups) {
      const e = expected.groups.get(String(g.namespace)) as UsageFigures;
      close(g.gpu_hours, e.gpuHours, `${String(g.namespace)} gpu_hours`);
      close(g.energy_kwh, e.energyKwh, `${String(g.namespace)} energy_kwh`);
      close(
        g.avg_utilization_percent,
        e.utilWeightedSum / e.utilWeightedCount,
        `${String(g.namespace)} avg_utilization_percent`,
      );
    }
    const unallocated = res.body.unallocated as Json;
    close(unallocated.gpu_hours, expected.unallocated.gpuHours, 'unallocated gpu_hours');
    close(unallocated.energy_kwh, expected.unallocated.energyKwh, 'unallocated energy_kwh');
  });

  it('usage by host, and the same as a CSV download', async () => {
    const q = `from=${new Date(start).toISOString()}&to=${new Date(end).toISOString()}`;
    const res = await get(`/api/v1/clusters/local-cluster/usage?group_by=host&${q}`);
    assert.equal(res.status, 200, res.text);
    const expected = expectedUsage(rows, start, end, 'host');
    const groups = res.body.groups as Json[];
    assert.equal(groups.length, expected.groups.size);
    for (const g of groups) {
      const e = expected.groups.get(String(g.host_id)) as UsageFigures;
      close(g.gpu_hours, e.gpuHours, `${String(g.host_id)} gpu_hours`);
      close(g.energy_kwh, e.energyKwh, `${String(g.host_id)} energy_kwh`);
    }
    const csvRes = await get(`/api/v1/clusters/local-cluster/usage?group_by=host&${q}&format=csv`);
    assert.equal(csvRes.status, 200);
    const lines = csvRes.text.trim().split(/\r?\n/);
    assert.equal(lines.length, 1 + expected.groups.size, csvRes.text.slice(0, 500));
    const header = (lines[0] ?? '').split(',');
    for (const line of lines.slice(1)) {
      const cells = line.split(',');
      const host = cells[header.indexOf('host_id')] ?? '';
      const e = expected.groups.get(host) as UsageFigures;
      close(Number(cells[header.indexOf('gpu_hours')]), e.gpuHours, `CSV ${host} gpu_hours`);
    }
  });

  it('idle GPUs: which, since when, and the GPU-hours they wasted', async () => {
    const res = await get('/api/v1/clusters/local-cluster/idle');
    assert.equal(res.status, 200, res.text);
    const newest = rows.reduce((m, r) => Math.max(m, r.timestamp), 0);
    const expected = expectedIdle(rows, IDLE_UTIL, IDLE_FOR_MS).filter(
      (e) => e.lastSeen >= newest - STALE_AFTER_MS,
    );
    const gpus = res.body.gpus as Json[];
    const keyOf = (g: Json): string => {
      const instance = typeof g.gpu_instance_id === 'number' ? `|mig${g.gpu_instance_id}` : '';
      return `${String(g.host_id)}|${String(g.gpu_id)}${instance}`;
    };
    assert.deepEqual(gpus.map(keyOf).sort(), expected.map((e) => e.key).sort(), 'the idle GPUs');
    assert.ok(expected.length > 0, 'the fleet has allocated-but-idle GPUs');
    for (const g of gpus) {
      const e = expected.find((x) => x.key === keyOf(g));
      assert.ok(e !== undefined);
      assert.equal(g.pod, e.pod);
      assert.equal(g.namespace, e.namespace);
      assert.equal(Date.parse(String(g.idle_since)), e.idleSince, `${e.key} idle_since`);
      close(g.wasted_gpu_hours, e.wastedGpuHours, `${e.key} wasted_gpu_hours`);
    }
    close(
      res.body.wasted_gpu_hours,
      expected.reduce((s, e) => s + e.wastedGpuHours, 0),
      'total wasted',
    );
  });

  it('events: one XID event per change of the latched code, throttles as reasons appear, the GPU that stopped', async () => {
    const newest = rows.reduce((m, r) => Math.max(m, r.timestamp), 0);
    const lastOf = new Map<string, number>();
    for (const r of rows) lastOf.set(gpuKey(r), Math.max(lastOf.get(gpuKey(r)) ?? 0, r.timestamp));
    const stopped = [...lastOf.values()].filter((t) => t < newest - STALE_AFTER_MS).length;
    // Throttle events: the throttling reasons gain a reason (docs/fleet.md), per series in time order.
    let throttles = 0;
    const mask = new Map<string, number>();
    for (const r of rows
      .filter((x) => /CLOCK(S_EVENT|_THROTTLE)_REASONS$/.test(x.metric))
      .sort((a, b) => a.timestamp - b.timestamp)) {
      const now = r.value & THROTTLING;
      const before = mask.get(gpuKey(r)) ?? 0;
      if (now !== 0 && (now & ~before) !== 0) throttles++;
      mask.set(gpuKey(r), now);
    }
    const q = `from=${new Date(start).toISOString()}&to=${new Date(end + 3_600_000).toISOString()}`;
    // The retirement job runs every 30 s: wait for its pass after the last reading.
    let body: Json = {};
    await until(async () => {
      body = (await get(`/api/v1/clusters/local-cluster/events?${q}`)).body;
      return (body.counts as Json | undefined)?.stopped === stopped;
    }, 90_000);
    const xids = (await get(`/api/v1/clusters/local-cluster/events?${q}&type=xid&limit=1000`)).body
      .events as Json[];
    assert.deepEqual(
      xids
        .map((e) => `${String(e.host_id)}|${String(e.gpu_id)} ${String(e.code)} ${String(e.time)}`)
        .sort(),
      expectedXidEvents(rows)
        .map((e) => `${e.key} ${e.code} ${new Date(e.time).toISOString()}`)
        .sort(),
    );
    const counts = body.counts as Json;
    assert.equal(counts.xid, expectedXidEvents(rows).length, 'xid events');
    assert.equal(counts.throttle, throttles, 'throttle events');
    assert.equal(counts.stopped, stopped, 'stopped events');
    assert.equal(counts.reappeared, 0, 'reappeared events');
    for (const e of xids) assert.match(String(e.message), /^XID \d+: \S/);
  });
});
