import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { run, spawnNexus } from '../helpers/child.js';
import { csvFiles } from '../helpers/csv-files.js';
import { startFixtureExporter } from '../helpers/dcgm-exporter.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { rows, scalar, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { startNexusUp } from '../helpers/nexus-up.js';

/**
 * `nexus scrape` and `nexus collector` as real processes on the harness's etcd and PostgreSQL,
 * scraping two fixture dcgm-exporters (the current label spellings, and the older ones behind
 * basic auth): every scrape an exporter answered is stored, reading for reading, under its host
 * and GPU; then a CSV row of the same GPU streamed by `nexus streamer` lands in the same series.
 */
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
const files = csvFiles('nexus-scrape-');
after(async () => {
  await etcd.release();
  await pg.release();
});

const countOf = (url: string, host: string): Promise<number> =>
  scalar(
    url,
    `SELECT count(*) FROM samples s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id
      WHERE h.hostname = $1`,
    [host],
  );

describe('nexus scrape: fixture exporters -> etcd -> collector -> PostgreSQL', () => {
  it('stores exactly the readings of every scrape answered, under their hosts and GPUs, in the series of the CSV', async () => {
    const node1 = await startFixtureExporter({ file: 'node-1.prom', tick: true });
    const node2 = await startFixtureExporter({
      file: 'node-2-legacy.prom',
      tick: true,
      basicAuth: { user: 'nexus', password: 'exporter secret' },
    });
    const cluster = uniqueCluster('scrape');
    const url = await pg.server.createDatabase(uniqueDatabase('scrape'));
    const passwordFile = join(files.dir, 'password');
    writeFileSync(passwordFile, 'exporter secret\n');
    const opsPort = await freePort();
    const env = {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: '/scrape-test/queue',
      REGISTRY_PREFIX: `/scrape-test/${cluster}`,
      LOG_LEVEL: 'info',
      POLL_TIMEOUT: '500ms',
    };
    const migrate = await run(spawnNexus(['migrate'], env));
    assert.equal(migrate.code, 0, migrate.stderr);
    const collector = spawnNexus(['collector'], env);
    const collectorDone = run(collector);
    const scrape = spawnNexus(['scrape'], {
      ...env,
      SCRAPE_TARGETS: `${node1.target},${node2.target}`,
      SCRAPE_INTERVAL: '400ms',
      SCRAPE_USERNAME: 'nexus',
      SCRAPE_PASSWORD_FILE: passwordFile,
      METRICS_PORT: String(opsPort),
    });
    const scrapeDone = run(scrape);
    try {
      const ops = `http://127.0.0.1:${opsPort}`;
      assert.ok(
        await until(async () => (await fetch(`${ops}/readyz`)).status === 200, 30_000),
        'nexus scrape not ready',
      );
      assert.ok(
        await until(async () => node1.scrapes >= 4 && node2.scrapes >= 4, 30_000),
        `scrapes: ${node1.scrapes}, ${node2.scrapes}`,
      );
      const exposition = await (await fetch(`${ops}/metrics`)).text();
      const up = exposition
        .split('\n')
        .filter((l) => l.startsWith('nexus_scrape_up{'))
        .map((l) => l.slice(l.lastIndexOf(' ') + 1));
      assert.deepEqual(up, ['1', '1']);
    } finally {
      scrape.kill('SIGTERM');
    }
    const stopped = await scrapeDone;
    assert.equal(stopped.code, 0, stopped.stderr);
    const n1 = node1.scrapes;
    const n2 = node2.scrapes;
    await node1.close();
    await node2.close();
    try {
      const expected1 = n1 * node1.readingsPerScrape;
      const expected2 = n2 * node2.readingsPerScrape;
      assert.ok(
        await until(
          async () =>
            (await countOf(url, 'fixture-node-1')) >= expected1 &&
            (await countOf(url, 'fixture-node-2')) >= expected2,
          60_000,
        ),
        `stored ${await countOf(url, 'fixture-node-1')}/${expected1} and ${await countOf(url, 'fixture-node-2')}/${expected2}`,
      );
      // Exactly: nothing more arrives.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(await countOf(url, 'fixture-node-1'), expected1);
      assert.equal(await countOf(url, 'fixture-node-2'), expected2);

      // Hosts and GPUs, both label spellings, workloads, and the MIG instance of GPU 2 (a row of
      // its own under its GPU's, which it alone reports).
      const gpus = await rows<{
        hostname: string;
        gpu_index: number;
        uuid: string;
        mig: string | null;
      }>(
        url,
        `SELECT h.hostname, g.gpu_index, g.uuid,
                CASE WHEN g.gpu_instance_id >= 0 THEN g.gpu_instance_id || ' ' || g.mig_profile END AS mig
           FROM gpus g JOIN hosts h ON h.id = g.host_id ORDER BY 1, 2, g.gpu_instance_id`,
      );
      assert.deepEqual(gpus, [
        {
          hostname: 'fixture-node-1',
          gpu_index: 0,
          uuid: 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50',
          mig: null,
        },
        {
          hostname: 'fixture-node-1',
          gpu_index: 1,
          uuid: 'GPU-bc7a12ab-4998-fdc5-0785-2678a929a142',
          mig: null,
        },
        {
          hostname: 'fixture-node-1',
          gpu_index: 2,
          uuid: 'GPU-0a1b2c3d-0000-1111-2222-333344445555',
          mig: null,
        },
        {
          hostname: 'fixture-node-1',
          gpu_index: 2,
          uuid: 'GPU-0a1b2c3d-0000-1111-2222-333344445555',
          mig: '7 1g.10gb',
        },
        {
          hostname: 'fixture-node-2',
          gpu_index: 0,
          uuid: 'GPU-77777777-8888-9999-aaaa-bbbbccccdddd',
          mig: null,
        },
        {
          hostname: 'fixture-node-2',
          gpu_index: 1,
          uuid: 'GPU-eeeeeeee-ffff-0000-1111-222233334444',
          mig: null,
        },
      ]);
      const workloads = await rows<{
        hostname: string;
        namespace: string;
        pod: string;
        container: string;
      }>(
        url,
        `SELECT h.hostname, w.namespace, w.pod, w.container FROM gpu_workloads w
           JOIN gpus g ON g.id = w.gpu_id JOIN hosts h ON h.id = g.host_id ORDER BY 1`,
      );
      assert.deepEqual(workloads, [
        {
          hostname: 'fixture-node-1',
          namespace: 'ml-team',
          pod: 'llm-train-0',
          container: 'trainer',
        },
        { hostname: 'fixture-node-2', namespace: 'data', pod: 'etl-7f9c', container: 'worker' },
      ]);

      // The CSV row of GPU 0 of fixture-node-1: the same host and GPU ids, one more reading.
      const gpuId = await scalar(
        url,
        `SELECT g.id FROM gpus g JOIN hosts h ON h.id = g.host_id
          WHERE h.hostname = 'fixture-node-1' AND g.gpu_index = 0`,
      );
      const csv = files.write(
        'timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n' +
          '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_TEMP","0","nvidia0","GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3","fixture-node-1","","","","38",""\n',
      );
      const streamer = await run(
        spawnNexus(['streamer', '--csv', csv], {
          ...env,
          LOOP_MODE: 'false',
          STREAM_INTERVAL: '0',
        }),
      );
      assert.equal(streamer.code, 0, streamer.stderr);
      assert.ok(
        await until(async () => (await countOf(url, 'fixture-node-1')) === expected1 + 1, 30_000),
        'the CSV reading was not stored',
      );
      assert.equal(await scalar(url, 'SELECT count(*) FROM hosts'), 2);
      // 5 GPUs, and the MIG instance of GPU 2 of fixture-node-1.
      assert.equal(await scalar(url, 'SELECT count(*) FROM gpus WHERE gpu_instance_id = -1'), 5);
      assert.equal(await scalar(url, 'SELECT count(*) FROM gpus'), 6);
      assert.equal(
        await scalar(
          url,
          `SELECT count(*) FROM samples s JOIN metrics m ON m.id = s.metric_id
            WHERE s.gpu_id = $1 AND m.name = 'DCGM_FI_DEV_GPU_TEMP'`,
          [gpuId],
        ),
        n1 + 1,
      );
    } finally {
      collector.kill('SIGTERM');
      await collectorDone;
    }
  });
});

describe('nexus up with a scrape target (make run can scrape a local exporter)', () => {
  it('serves the scraped readings in the REST API under their host and GPUs', async () => {
    const exporter = await startFixtureExporter({ file: 'node-1.prom', tick: true });
    const up = await startNexusUp(90_000, {
      SCRAPE_TARGETS: exporter.target,
      SCRAPE_INTERVAL: '500ms',
    });
    try {
      type Latest = {
        readings: {
          host_id: string;
          gpu_id: number;
          gpu_instance_id?: number;
          mig_profile?: string;
          metric: string;
          value: number;
        }[];
      };
      let latest: Latest = { readings: [] };
      const ok = await until(async () => {
        // Every series, GPU 2's MIG instance's too (gpu_instance=all).
        const res = await fetch(
          `${up.url}/api/v1/telemetry/latest?host_id=fixture-node-1&gpu_instance=all`,
        );
        const body = (await res.json()) as Partial<Latest>;
        latest = { readings: body.readings ?? [] };
        return res.status === 200 && latest.readings.length === exporter.readingsPerScrape;
      }, 60_000);
      assert.ok(ok, `readings: ${latest.readings.length}\n${up.logs().slice(-3000)}`);
      assert.deepEqual([...new Set(latest.readings.map((r) => r.gpu_id))].sort(), [0, 1, 2]);
      // GPU 2 is reported by its MIG instance 7 only: its readings say so.
      assert.deepEqual(
        latest.readings
          .filter((r) => r.gpu_id === 2)
          .map((r) => [r.gpu_instance_id, r.mig_profile])
          .sort(),
        [
          [7, '1g.10gb'],
          [7, '1g.10gb'],
        ],
      );
      const temp = latest.readings.find(
        (r) => r.gpu_id === 0 && r.metric === 'DCGM_FI_DEV_GPU_TEMP',
      );
      // 41 in the fixture, +1 per scrape answered.
      assert.ok(temp !== undefined && temp.value >= 41 && temp.value < 41 + exporter.scrapes);
    } finally {
      await up.stop();
      await exporter.close();
    }
  });
});
