/**
 * Debian's real Prometheus (/usr/bin/prometheus) scrapes two fixture dcgm-exporters every second
 * and remote-writes to a `nexus gateway` process (ENABLE_REMOTE_WRITE, AUTH_MODE=token, the token
 * in authorization.credentials_file) on etcd, with a `nexus collector` storing to PostgreSQL.
 * Through a gateway restart (same port, once the old process has exited) and a period of
 * backpressure (MAX_QUEUE_DEPTH 3 with the collector stopped: 503s that Prometheus retries),
 * every DCGM sample Prometheus holds (and reports sent: nothing failed, nothing pending) is
 * stored exactly once, under its host and GPU in the REST API.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SqlTokenStore } from '../../src/gateway/auth/sql-token-store.js';
import { run, spawnNexus } from '../helpers/child.js';
import { startFixtureExporter, type FixtureExporter } from '../helpers/dcgm-exporter.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { postgresDatabase, scalar, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const PROMETHEUS = '/usr/bin/prometheus';
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  await etcd.release();
  await pg.release();
});

/** Sends SIGTERM and waits for the process to be gone (SIGKILL after 20 s). */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await gone;
  clearTimeout(timer);
}

/** Keeps the last bytes a child wrote to stderr, for failure messages. */
function tail(child: ChildProcess): () => string {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-3000);
  });
  child.stdout?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-3000);
  });
  return () => err;
}

describe('remote_write from a real Prometheus', { skip: !existsSync(PROMETHEUS) }, () => {
  it('stores every DCGM sample Prometheus sent exactly once, across a gateway restart and backpressure', async (t) => {
    const cluster = uniqueCluster('rw');
    const url = await pg.server.createDatabase(uniqueDatabase('rw'));
    const port = await freePort();
    const promPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'nexus-prom-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const env = {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: '/rw-test/queue',
      REGISTRY_PREFIX: `/rw-test/${cluster}`,
      LOG_LEVEL: 'warn',
      PORT: String(port),
      HOST: '127.0.0.1',
      POLL_TIMEOUT: '500ms',
      AUTH_MODE: 'token',
      ENABLE_REMOTE_WRITE: 'true',
      MAX_QUEUE_DEPTH: '3',
    };
    const migrate = await run(spawnNexus(['migrate'], env));
    assert.equal(migrate.code, 0, migrate.stderr);
    const tokens = new SqlTokenStore(postgresDatabase(url, 1));
    const write = await tokens.create({ name: 'prometheus', scope: 'write', expiresAt: null });
    const read = await tokens.create({ name: 'checks', scope: 'read', expiresAt: null });
    await tokens.close();
    const tokenFile = join(dir, 'nexus-token');
    writeFileSync(tokenFile, `${write.token}\n`, { mode: 0o600 });
    const auth = { authorization: `Bearer ${read.token}` };
    const http = `http://127.0.0.1:${port}`;

    const exporters: FixtureExporter[] = [
      await startFixtureExporter({ file: 'node-1.prom', tick: true }),
      await startFixtureExporter({ file: 'node-2-legacy.prom', tick: true }),
    ];
    t.after(() => Promise.all(exporters.map((e) => e.close())));
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: dcgm',
        '    static_configs:',
        `      - targets: [${exporters.map((e) => `'${e.target}'`).join(', ')}]`,
        'remote_write:',
        `  - url: ${http}/api/v1/write`,
        '    authorization:',
        `      credentials_file: ${tokenFile}`,
        '    queue_config:',
        '      batch_send_deadline: 1s',
        '      min_backoff: 100ms',
        '      max_backoff: 1s',
        '',
      ].join('\n'),
    );
    const prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const promLog = tail(prometheus);
    t.after(() => stop(prometheus));
    const promApi = `http://127.0.0.1:${promPort}`;
    const promMetric = async (name: string): Promise<number> =>
      metricSum(await (await fetch(`${promApi}/metrics`)).text(), name) ?? Number.NaN;

    let gateway = spawnNexus(['gateway'], env);
    let gatewayLog = tail(gateway);
    let collector = spawnNexus(['collector'], env);
    let collectorLog = tail(collector);
    t.after(() => Promise.all([stop(gateway), stop(collector)]));
    const dcgmRows = (): Promise<number> =>
      scalar(
        url,
        `SELECT count(*) FROM samples s JOIN metrics m ON m.id = s.metric_id WHERE m.name LIKE 'DCGM\\_%'`,
      );
    const gatewayMetric = async (name: string, label: string): Promise<number> => {
      const text = await (await fetch(`${http}/metrics`, { headers: auth })).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const ready = (): Promise<boolean> =>
      until(
        async () => (await fetch(`${http}/readyz`).catch(() => undefined))?.status === 200,
        30_000,
      );
    const why = (): string =>
      `\nprometheus: ${promLog()}\ngateway: ${gatewayLog()}\ncollector: ${collectorLog()}`;

    assert.ok(await ready(), `gateway not ready${why()}`);
    // 1. Readings flow.
    assert.ok(
      await until(async () => (await dcgmRows()) >= 13 * 3, 60_000),
      `no readings stored${why()}`,
    );

    // 2. The gateway restarts on the same port (Prometheus's config names it), after the old
    // process has exited: Prometheus retries meanwhile.
    await stop(gateway);
    const before = await dcgmRows();
    await new Promise((r) => setTimeout(r, 2000));
    gateway = spawnNexus(['gateway'], env);
    gatewayLog = tail(gateway);
    assert.ok(await ready(), `gateway not ready after the restart${why()}`);
    assert.ok(
      await until(async () => (await dcgmRows()) > before + 13 * 3, 60_000),
      `no readings after the restart${why()}`,
    );

    // 3. Backpressure: the collector stops, the queue fills to MAX_QUEUE_DEPTH, the gateway
    // answers 503 with Retry-After, and Prometheus retries until the collector is back.
    await stop(collector);
    assert.ok(
      await until(
        async () => (await gatewayMetric('nexus_remote_write_requests_total', 'code="503"')) >= 3,
        60_000,
      ),
      `no 503 while the collector was stopped${why()}`,
    );
    collector = spawnNexus(['collector'], env);
    collectorLog = tail(collector);

    // 4. The exporters stop (Prometheus sends staleness markers, then only `up` and scrape_*):
    // every DCGM sample in Prometheus's own storage ends up stored, once.
    await new Promise((r) => setTimeout(r, 3000));
    await Promise.all(exporters.map((e) => e.close()));
    /** DCGM samples in Prometheus's storage (staleness markers are not samples), metric by metric. */
    const inPrometheus = async (): Promise<number> => {
      const get = async <T>(path: string): Promise<T> => {
        const text = await (await fetch(`${promApi}${path}`)).text();
        const body = JSON.parse(text) as { data?: T };
        if (body.data === undefined) throw new Error(`Prometheus answered ${text.slice(0, 300)}`);
        return body.data;
      };
      const names = (await get<string[]>('/api/v1/label/__name__/values')).filter((n) =>
        n.startsWith('DCGM_'),
      );
      let total = 0;
      for (const name of names) {
        const q = encodeURIComponent(`sum(count_over_time(${name}[1h]))`);
        const data = await get<{ result: { value: [number, string] }[] }>(
          `/api/v1/query?query=${q}`,
        );
        total += Number(data.result[0]?.value[1] ?? Number.NaN);
      }
      return names.length === 0 ? Number.NaN : total;
    };
    let expected = Number.NaN;
    let stored = Number.NaN;
    let lastError = '';
    const settled = await until(
      async () => {
        try {
          expected = await inPrometheus();
          stored = await dcgmRows();
        } catch (err) {
          lastError = String(err);
          return false;
        }
        return (
          stored === expected &&
          (await promMetric('prometheus_remote_storage_samples_pending')) === 0
        );
      },
      90_000,
      1000,
    );
    assert.ok(
      settled,
      `stored ${stored} DCGM readings, Prometheus holds ${expected} ${lastError}${why()}`,
    );
    assert.equal(stored, expected);
    assert.ok(expected >= 13 * 6, `only ${expected} DCGM samples scraped`);
    // Nothing dropped by Prometheus (a 4xx would have been), and the retries did happen.
    assert.equal(await promMetric('prometheus_remote_storage_samples_failed_total'), 0);
    assert.equal(await promMetric('prometheus_remote_storage_samples_dropped_total'), 0);
    assert.ok((await promMetric('prometheus_remote_storage_samples_retried_total')) > 0);
    t.diagnostic(
      `DCGM samples in Prometheus and stored: ${stored}; Prometheus sent ${await promMetric('prometheus_remote_storage_samples_total')} samples (${await promMetric('prometheus_remote_storage_samples_retried_total')} of them retries); 503s of the second gateway: ${await gatewayMetric('nexus_remote_write_requests_total', 'code="503"')}`,
    );
    // Non-DCGM series (up, scrape_*) were sent too, and counted as ignored.
    assert.ok((await gatewayMetric('nexus_remote_write_samples_total', 'outcome="ignored"')) > 0);
    assert.equal(await gatewayMetric('nexus_remote_write_requests_total', 'code="400"'), 0);

    // Under their hosts and GPUs in the REST API.
    const hosts = (await (
      await fetch(`${http}/api/v1/clusters/${cluster}/hosts`, { headers: auth })
    ).json()) as { items?: { host_id?: string; hostname?: string }[] } | { host_id?: string }[];
    const text = JSON.stringify(hosts);
    assert.ok(
      text.includes('fixture-node-1') && text.includes('fixture-node-2'),
      text.slice(0, 500),
    );
    const gpus = await (
      await fetch(`${http}/api/v1/clusters/${cluster}/hosts/fixture-node-1/gpus`, { headers: auth })
    ).json();
    const gpuText = JSON.stringify(gpus);
    for (const uuid of [
      'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
      'GPU-bc7a12ab-4998-fdc5-0785-2678a929a142',
      'GPU-0a1b2c3d-0000-1111-2222-333344445555',
    ])
      assert.ok(gpuText.includes(uuid), `${uuid} not in ${gpuText.slice(0, 500)}`);
  });
});
