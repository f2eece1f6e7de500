import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, spawnNexus } from '../helpers/child.js';
import { SAMPLE_CSV, SIMULATED_FLEET, startNexusUp } from '../helpers/nexus-up.js';

interface OverviewBody {
  hosts: number;
  gpus: number;
  simulated: boolean;
  simulation: { seed: number; speed: number; interval_s: number; description: string } | null;
}

interface LatestBody {
  readings: { host_id: string; timestamp: string }[];
}

async function json<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  return (await res.json()) as T;
}

async function latestPower(url: string): Promise<LatestBody['readings']> {
  const body = await json<LatestBody>(
    `${url}/api/v1/telemetry/latest?metric=DCGM_FI_DEV_POWER_USAGE`,
  );
  return body.readings;
}

describe('nexus up: the simulated fleet by default, real data with a CSV', () => {
  it('streams the simulated fleet live without a CSV, and the overview says so', async (t) => {
    const up = await startNexusUp(120_000, SIMULATED_FLEET);
    t.after(() => up.stop());
    const overview = await json<OverviewBody>(`${up.url}/api/v1/overview`);
    assert.equal(overview.simulated, true);
    assert.equal(overview.simulation?.seed, 19);
    assert.equal(overview.simulation.speed, 10);
    assert.equal(overview.simulation.interval_s, 10);
    assert.match(overview.simulation.description, /^Simulated fleet \(seed 19\): 4 hosts x 8 /);
    const first = await latestPower(up.url);
    assert.deepEqual([...new Set(first.map((r) => r.host_id))].sort(), [
      'gpu-node-01',
      'gpu-node-02',
      'gpu-node-03',
      'gpu-node-04',
    ]);
    // Live timestamps: the readings are of the last minute, and newer ones keep coming.
    const newest = (rows: LatestBody['readings']): number =>
      Math.max(...rows.map((r) => Date.parse(r.timestamp)));
    const t0 = newest(first);
    assert.ok(Math.abs(Date.now() - t0) < 60_000, `newest reading ${new Date(t0).toISOString()}`);
    let later = t0;
    for (let i = 0; i < 60 && later <= t0; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      later = newest(await latestPower(up.url));
    }
    assert.equal(later - t0, 10_000, 'the next instant, 10 s later');
  });

  it('streams the CSV it is given (CSV_FILE), and the overview says it is not simulated', async (t) => {
    const up = await startNexusUp(120_000, { CSV_FILE: SAMPLE_CSV });
    t.after(() => up.stop());
    const overview = await json<OverviewBody>(`${up.url}/api/v1/overview`);
    assert.equal(overview.simulated, false);
    assert.equal(overview.simulation, null);
    const hosts = new Set((await latestPower(up.url)).map((r) => r.host_id));
    assert.equal(hosts.has('gpu-node-01'), false);
    assert.ok(hosts.size > 0);
  });

  it('refuses --fleet-* flags with a CSV, and a speed out of range, in one line with status 2', async (t) => {
    const data = mkdtempSync(join(tmpdir(), 'nexus-up-fleet-flags-'));
    t.after(() => rmSync(data, { recursive: true, force: true }));
    const withCsv = await run(
      spawnNexus(['up', '--csv', SAMPLE_CSV, '--fleet-speed', '5'], {
        NEXUS_DATA_DIR: data,
      }),
    );
    assert.equal(withCsv.code, 2);
    assert.equal(
      withCsv.stderr,
      'nexus: --fleet-speed: for the simulated fleet, which nexus up streams only without a CSV (--csv, CSV_FILE)\n',
    );
    const tooFast = await run(
      spawnNexus(['up', '--fleet-speed', '0'], {
        NEXUS_DATA_DIR: data,
        CSV_FILE: '',
      }),
    );
    assert.equal(tooFast.code, 2);
    assert.equal(tooFast.stderr, 'nexus: --fleet-speed: a number from 1 to 3600\n');
  });
});
