/**
 * `make run-nexus-pipeline` (scripts/pipeline.ts), stopped the way a terminal stops it: Ctrl-C
 * sends SIGINT to the whole foreground process group, here the group of the script, spawned
 * detached so that the test can signal that group.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { until } from '../helpers/pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-pipeline-'));
// The local PostgreSQL runs as the postgres user when the tests run as root: it must reach its
// data directory inside this one.
chmodSync(dir, 0o755);
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
const groups: ChildProcess[] = [];
after(async () => {
  for (const g of groups)
    if (g.exitCode === null && g.signalCode === null && g.pid !== undefined) {
      try {
        process.kill(-g.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
  await pg.release();
});

interface Pipeline {
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
}

/** Starts the script in a process group of its own, as a shell starts a foreground job. */
function startPipeline(env: Record<string, string>): Pipeline {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/pipeline.ts')], {
    cwd: ROOT,
    detached: true,
    env: { ...process.env, PIPELINE_FROM_SOURCE: '1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  groups.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return { child, output: () => out, exited };
}

/** Ctrl-C as a terminal sends it: SIGINT to every process of the group. */
function ctrlC(p: Pipeline): void {
  assert.ok(p.child.pid !== undefined);
  process.kill(-p.child.pid, 'SIGINT');
}

/** Readings the gateway serves, asked with the read token the script printed. */
async function samples(p: Pipeline, port: number, cluster: string): Promise<number> {
  const token = /the API's read token \(.*\): (nexus_\S+)/.exec(p.output())?.[1];
  if (token === undefined) return 0;
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/clusters/${cluster}/stats`, {
    headers: { authorization: `Bearer ${token}` },
  }).catch(() => undefined);
  if (res?.status !== 200) return 0;
  return ((await res.json()) as { samples: number }).samples;
}

function count(text: string, what: string): number {
  return text.split(what).length - 1;
}

/** The checks every stop by Ctrl-C must pass: one graceful stop of each child, the summary. */
function assertOneGracefulStop(output: string): void {
  assert.equal(count(output, 'shutting down gracefully'), 3, output.slice(-4000));
  assert.equal(count(output, 'second signal'), 0, output.slice(-4000));
  assert.match(output, /"msg":"summary: \d+ records published in \d+ batches/);
  assert.match(output, /"msg":"collector stopped"/);
  assert.match(output, /pipeline: stopped/);
}

/** The pipeline on the shared etcd and PostgreSQL, once its readings reach the gateway. */
async function flowingPipeline(name: string): Promise<ReturnType<typeof startPipeline>> {
  const port = await freePort();
  const cluster = uniqueCluster('pipeline');
  const p = startPipeline({
    ETCD_ENDPOINTS: etcd.endpoint,
    DATABASE_URL: await pg.server.createDatabase(uniqueDatabase('pipeline')),
    NEXUS_DATA_DIR: join(dir, name),
    CLUSTER_ID: cluster,
    MESSAGE_QUEUE_PREFIX: `/pipeline-test/${cluster}/queue`,
    REGISTRY_PREFIX: `/pipeline-test/${cluster}/nexus`,
    PORT: String(port),
    COLLECTOR_METRICS_PORT: String(await freePort()),
    STREAMER_METRICS_PORT: String(await freePort()),
    STREAM_INTERVAL: '200ms',
  });
  assert.ok(
    await until(async () => (await samples(p, port, cluster)) > 0, 90_000),
    `nothing reached the gateway:\n${p.output().slice(-4000)}`,
  );
  return p;
}

/** Free ports for a pipeline on local servers: etcd's client and peer, PostgreSQL's, the gateway's. */
interface LocalPorts {
  readonly etcd: string;
  readonly peer: string;
  readonly pg: string;
  readonly http: number;
}

async function localPorts(): Promise<LocalPorts> {
  return {
    etcd: String(await freePort()),
    peer: String(await freePort()),
    pg: String(await freePort()),
    http: await freePort(),
  };
}

/**
 * The pipeline on the local etcd and PostgreSQL of `data` (scripts/local-*.sh: started by the
 * script unless already serving), once its readings reach the gateway.
 */
async function localPipeline(data: string, ports: LocalPorts): Promise<Pipeline> {
  const p = startPipeline({
    DATA_DIR: data,
    ETCD_PORT: ports.etcd,
    ETCD_PEER: ports.peer,
    PG_PORT: ports.pg,
    PORT: String(ports.http),
    COLLECTOR_METRICS_PORT: String(await freePort()),
    STREAMER_METRICS_PORT: String(await freePort()),
    STREAM_INTERVAL: '200ms',
    ETCD_ENDPOINTS: '',
    DATABASE_URL: '',
    DB_HOST: '',
    DB_PORT: '',
    NEXUS_DATA_DIR: '',
  });
  assert.ok(
    await until(async () => (await samples(p, ports.http, 'local-cluster')) > 0, 120_000),
    `nothing reached the gateway:\n${p.output().slice(-4000)}`,
  );
  return p;
}

describe('make run-nexus-pipeline (scripts/pipeline.ts)', { timeout: 240_000 }, () => {
  it('stops every child once and gracefully on Ctrl-C: exit 0, and the streamer prints its summary', async () => {
    const p = await flowingPipeline('signals');
    ctrlC(p);
    const exit = await p.exited;
    assert.equal(exit.code, 0, p.output().slice(-4000));
    assertOneGracefulStop(p.output());
  });

  it('a second Ctrl-C makes the components exit at once, each saying what it did not finish: exit 130', async () => {
    const p = await flowingPipeline('twice');
    ctrlC(p);
    // The gateway drains for 2 s before it closes: the second Ctrl-C comes while it stops.
    assert.ok(
      await until(() => Promise.resolve(p.output().includes('pipeline: stopping')), 10_000),
    );
    ctrlC(p);
    const exit = await p.exited;
    assert.equal(exit.code, 130, p.output().slice(-4000));
    assert.match(p.output(), /"msg":"second signal: exiting now; not finished: [^"]+"/);
    assert.match(p.output(), /pipeline: stopped/);
  });

  it('starts etcd and PostgreSQL on ETCD_PORT, ETCD_PEER and PG_PORT in DATA_DIR, and the children use them', async () => {
    const ports = await localPorts();
    const data = join(dir, 'local');
    const p = await localPipeline(data, ports);
    const output = p.output();
    assert.match(
      output,
      new RegExp(`etcd running on 127\\.0\\.0\\.1:${ports.etcd} .*data ${data}`),
    );
    assert.match(output, new RegExp(`PostgreSQL running on 127\\.0\\.0\\.1:${ports.pg} `));
    ctrlC(p);
    const exit = await p.exited;
    assert.equal(exit.code, 0, p.output().slice(-4000));
    assertOneGracefulStop(p.output());
    assert.match(p.output(), /PostgreSQL stopped/);
    assert.match(p.output(), /etcd stopped/);
  });

  it('uses an etcd and a PostgreSQL already serving (make setup-etcd, setup-postgres) and leaves them running', async () => {
    const ports = await localPorts();
    const data = join(dir, 'setup');
    const local = (script: string, args: string[]): void => {
      execFileSync(join(ROOT, 'scripts', script), args, { cwd: ROOT, stdio: 'ignore' });
    };
    const serving = (script: string, args: string[]): boolean => {
      try {
        local(script, ['running', ...args]);
        return true;
      } catch {
        return false;
      }
    };
    local('local-etcd.sh', ['start', data, ports.etcd, ports.peer]);
    local('local-postgres.sh', ['start', data, ports.pg]);
    try {
      const p = await localPipeline(data, ports);
      ctrlC(p);
      const exit = await p.exited;
      assert.equal(exit.code, 0, p.output().slice(-4000));
      assertOneGracefulStop(p.output());
      assert.match(
        p.output(),
        new RegExp(`etcd already serving on 127\\.0\\.0\\.1:${ports.etcd}: using it`),
      );
      assert.match(
        p.output(),
        new RegExp(`PostgreSQL already serving on 127\\.0\\.0\\.1:${ports.pg}: using it`),
      );
      assert.doesNotMatch(p.output(), /etcd stopped|PostgreSQL stopped/);
      assert.equal(
        serving('local-etcd.sh', [data, ports.etcd, ports.peer]),
        true,
        'etcd was stopped',
      );
      assert.equal(serving('local-postgres.sh', [data, ports.pg]), true, 'PostgreSQL was stopped');
    } finally {
      local('local-postgres.sh', ['stop', data, ports.pg]);
      local('local-etcd.sh', ['stop', data, ports.etcd, ports.peer]);
    }
  });
});
