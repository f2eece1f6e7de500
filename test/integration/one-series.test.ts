/**
 * One GPU, three sources: a row of a DCGM CSV export, a scrape of its dcgm-exporter and a
 * Prometheus remote_write land in one series (cluster, host, GPU, metric), under one host and one
 * GPU of the fleet, in `nexus up`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { encodeWriteRequest } from '../../src/gateway/remote-write/decoder.js';
import { startFixtureExporter } from '../helpers/dcgm-exporter.js';
import { startNexusUp } from '../helpers/nexus-up.js';
import { until } from '../helpers/pipeline.js';

const HOST = 'fixture-node-1';
const UUID = 'GPU-5fd4f087-86f3-7a43-b711-4771313afc50';
const MODEL = 'NVIDIA H100 80GB HBM3';
const METRIC = 'DCGM_FI_DEV_GPU_TEMP';

describe('one series whatever the source', () => {
  it('a CSV row, a scrape and a remote_write of the same GPU are one series of one GPU', async (t) => {
    const exporter = await startFixtureExporter({ file: 'node-1.prom' });
    t.after(() => exporter.close());
    const dir = mkdtempSync(join(tmpdir(), 'nexus-one-series-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const csvAt = Date.now() - 120_000;
    const rwAt = Date.now() - 60_000;
    const csv = join(dir, 'export.csv');
    const labelsRaw = `DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""${HOST}"",UUID=""${UUID}"",__name__=""${METRIC}"",device=""nvidia0"",gpu=""0"",instance=""${HOST}:9400"",job=""dcgm"",modelName=""${MODEL}""`;
    writeFileSync(
      csv,
      'timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,value,labels_raw\n' +
        `"${new Date(csvAt).toISOString()}","${METRIC}","0","nvidia0","${UUID}","${MODEL}","${HOST}","","","","33","${labelsRaw}"\n`,
    );
    const up = await startNexusUp(120_000, {
      ENABLE_REMOTE_WRITE: 'true',
      CSV_FILE: csv,
      LOOP_MODE: 'false',
      TIMESTAMP_MODE: 'original',
      SCRAPE_TARGETS: exporter.target,
      SCRAPE_INTERVAL: '1s',
    });
    t.after(() => up.stop());
    const written = await fetch(`${up.url}/api/v1/write`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-protobuf',
        'content-encoding': 'snappy',
        'x-prometheus-remote-write-version': '0.1.0',
      },
      body: encodeWriteRequest([
        {
          labels: {
            __name__: METRIC,
            gpu: '0',
            UUID,
            device: 'nvidia0',
            modelName: MODEL,
            Hostname: HOST,
            DCGM_FI_DRIVER_VERSION: '535.129.03',
            instance: `${HOST}:9400`,
            job: 'dcgm',
          },
          samples: [{ value: 35, timestamp: rwAt }],
        },
      ]),
    });
    assert.equal(written.status, 204, await written.text());

    // 33 from the CSV, 35 from remote_write, 41 from each scrape (the fixture's value).
    const series = async (): Promise<number[]> => {
      const r = await fetch(
        `${up.url}/api/v1/telemetry?cluster_id=local-cluster&host_id=${HOST}&gpu_id=0&metric=${METRIC}&from=${new Date(csvAt - 1000).toISOString()}`,
      );
      if (r.status !== 200) return [];
      const body = (await r.json()) as { readings: { value: number }[] };
      return body.readings.map((x) => x.value);
    };
    let values: number[] = [];
    assert.ok(
      await until(async () => {
        values = await series();
        return values.includes(33) && values.includes(35) && values.includes(41);
      }, 60_000),
      `one series holds ${JSON.stringify(values)}\n${up.logs().slice(-2000)}`,
    );

    const hosts = (await (await fetch(`${up.url}/api/v1/clusters/local-cluster/hosts`)).json()) as {
      hosts: { host_id: string }[];
    };
    assert.equal(hosts.hosts.filter((h) => h.host_id === HOST).length, 1, 'one host');
    const gpus = (await (
      await fetch(`${up.url}/api/v1/clusters/local-cluster/hosts/${HOST}/gpus`)
    ).json()) as { gpus: { gpu_id: string | number; uuid?: string }[] };
    const gpu0 = gpus.gpus.filter((g) => String(g.gpu_id) === '0');
    assert.equal(gpu0.length, 1, `one GPU 0: ${JSON.stringify(gpus.gpus)}`);
    assert.equal(gpu0[0]?.uuid, UUID);
  });
});
