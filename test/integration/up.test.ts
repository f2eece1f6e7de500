import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { firstLineMatching, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { scalar, until } from '../helpers/pipeline.js';
import { sampleRows } from '../helpers/sample.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-up-'));
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
  await pg.release();
});

async function stats(port: number, cluster: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/clusters/${cluster}/stats`);
  if (res.status !== 200) return 0;
  return ((await res.json()) as { samples: number }).samples;
}

describe('nexus up', () => {
  it('runs the whole pipeline in one process on the embedded backends, and a restart keeps the history', async () => {
    const port = await freePort();
    const env = {
      NEXUS_DATA_DIR: join(dir, 'embedded'),
      PORT: String(port),
      LOG_LEVEL: 'info',
      STREAM_INTERVAL: '200ms',
      // The sample (without a CSV, nexus up streams the simulated fleet: up-simulated.test.ts).
      CSV_FILE: 'samples/dcgm_metrics_20250718_134233.csv',
    };
    const first = spawnNexus(['up'], env);
    const firstDone = run(first);
    const up = await firstLineMatching(first, /Nexus is up/, 90_000);
    assert.match(up, /dashboard http:\/\/localhost:\d+\//);
    assert.ok(
      await until(async () => (await stats(port, 'local-cluster')) >= 2470, 60_000),
      'the sample was not stored',
    );
    const overview = (await (await fetch(`http://127.0.0.1:${port}/api/v1/overview`)).json()) as {
      gpus: number;
      hosts: number;
      collectors: unknown[];
      queue: unknown;
    };
    assert.equal(overview.gpus, 247);
    assert.equal(overview.hosts, 31);
    assert.equal(overview.collectors.length, 1);
    assert.notEqual(overview.queue, null);
    // How busy the embedded engine is, for operators: PGlite's statements and their time.
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.ok((metricSum(metrics, 'nexus_pglite_statements_total') ?? 0) > 0, metrics);
    assert.ok((metricSum(metrics, 'nexus_pglite_busy_seconds_total') ?? 0) > 0, metrics);
    const before = await stats(port, 'local-cluster');
    first.kill('SIGINT');
    const exit = await firstDone;
    assert.equal(exit.code, 0, exit.stderr);

    const second = spawnNexus(['up'], env);
    const secondDone = run(second);
    await firstLineMatching(second, /Nexus is up/, 90_000);
    assert.ok(
      (await stats(port, 'local-cluster')) >= before,
      'the history was lost across a restart',
    );
    second.kill('SIGINT');
    assert.equal((await secondDone).code, 0);
  });

  it('seals an old export into chunks by itself and serves it from them; nexus compact --embedded does the same on demand', async () => {
    const port = await freePort();
    const env = {
      NEXUS_DATA_DIR: join(dir, 'sealing'),
      PORT: String(port),
      LOG_LEVEL: 'info',
      CSV_FILE: 'samples/dcgm_metrics_20250718_134233.csv',
      LOOP_MODE: 'false',
      TIMESTAMP_MODE: 'original',
      COMPACT_INTERVAL: '1s',
    };
    const child = spawnNexus(['up'], env);
    const done = run(child);
    await firstLineMatching(child, /Nexus is up/, 90_000);
    assert.ok(
      await until(async () => {
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return (metricSum(metrics, 'nexus_compact_readings_total') ?? 0) >= 2470;
      }, 60_000),
      'the export (July 2025) was not sealed',
    );
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/telemetry?limit=10000&format=columns`);
    const body = (await res.json()) as {
      columns: {
        host_id: string;
        gpu_id: number;
        metric: string;
        timestamps: number[];
        values: number[];
      }[];
    };
    const stored = new Map<string, number>();
    for (const c of body.columns) {
      c.timestamps.forEach((t, i) =>
        stored.set(`${c.host_id}|${c.gpu_id}|${c.metric}|${t}`, c.values[i] ?? NaN),
      );
    }
    const expected = new Map(
      sampleRows().map((r) => [`${r.hostname}|${r.gpu}|${r.metric}|${r.timestamp}`, r.value]),
    );
    assert.deepEqual(stored, expected);
    child.kill('SIGINT');
    assert.equal((await done).code, 0);

    // Stopped: the same database on demand, with nothing left to seal.
    const compact = await run(spawnNexus(['compact', '--embedded'], env));
    assert.equal(compact.code, 0, compact.stderr);
    assert.match(compact.stdout, /sealed 0 readings of 0 window\(s\)/);
  });

  it('uses etcd and PostgreSQL instead when ETCD_ENDPOINTS and DATABASE_URL are set', async () => {
    const port = await freePort();
    const cluster = uniqueCluster('up');
    const url = await pg.server.createDatabase(uniqueDatabase('up'));
    const child = spawnNexus(['up'], {
      NEXUS_DATA_DIR: join(dir, 'real'),
      PORT: String(port),
      LOG_LEVEL: 'info',
      ETCD_ENDPOINTS: etcd.endpoint,
      DATABASE_URL: url,
      CLUSTER_ID: cluster,
      REGISTRY_PREFIX: `/up-test/${cluster}`,
      MESSAGE_QUEUE_PREFIX: '/up-test/queue',
    });
    const done = run(child);
    try {
      await firstLineMatching(child, /Nexus is up/, 90_000);
      assert.ok(
        await until(async () => (await scalar(url, 'SELECT count(*) FROM samples')) > 0, 30_000),
        'nothing in PostgreSQL',
      );
      // The registry in etcd fills within a flush interval (LIVE_INTERVAL, 1 s).
      const registered = (): boolean =>
        execFileSync(
          'etcdctl',
          [
            '--endpoints',
            etcd.endpoint,
            'get',
            '--prefix',
            `/up-test/${cluster}/clusters/`,
            '--keys-only',
          ],
          {
            env: { ...process.env, ETCDCTL_API: '3' },
          },
        )
          .toString()
          .includes(`/up-test/${cluster}/clusters/${cluster}`);
      assert.ok(
        await until(() => Promise.resolve(registered()), 10_000),
        'the fleet is not in the etcd registry',
      );
    } finally {
      child.kill('SIGINT');
      assert.equal((await done).code, 0);
    }
  });

  it('exits non-zero, saying so, when its port is taken, before it reads or stores anything', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      // The simulated fleet and a CSV (the port used to be found taken only once the store was up
      // and some 1,200 readings of the CSV were stored in the data directory).
      for (const [name, csv] of [
        ['port-taken-fleet', ''],
        ['port-taken-csv', 'samples/dcgm_metrics_20250718_134233.csv'],
      ] as const) {
        const data = join(dir, name);
        const exit = await run(
          spawnNexus(['up'], {
            NEXUS_DATA_DIR: data,
            PORT: String(port),
            HOST: '127.0.0.1',
            LOG_LEVEL: 'warn',
            CSV_FILE: csv,
          }),
        );
        assert.equal(exit.code, 1, exit.stderr);
        assert.equal(
          exit.stderr,
          `nexus: port ${port} on 127.0.0.1 is in use (another nexus?): stop that one, or choose another port with PORT or --port\n`,
        );
        assert.equal(existsSync(data), false, `${name}: it wrote into its data directory`);
      }
    } finally {
      blocker.close();
    }
  });
});
