/**
 * What a newcomer meets first, through the real `nexus` command: where `nexus up` and `nexus
 * gateway` listen (as their --help says), the start-up line when output is not a terminal, and
 * one clear line with an exit status, never a hang or a stack trace, for a missing CSV, a CSV that
 * is not a DCGM export, a port in use and a data directory another `nexus up` holds.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { firstLineMatching, killHard, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-cli-'));
const etcd = await sharedEtcd();
const pg = await sharedPostgres();
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
  await pg.release();
});

/** The local addresses of the sockets listening on TCP `port` (Linux /proc/net/tcp and tcp6). */
function listeners(port: number): string[] {
  const names: Record<string, string> = {
    '0100007F': '127.0.0.1',
    '00000000': '0.0.0.0',
    '00000000000000000000000000000000': '::',
  };
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [addr = '', hex = ''] = (cols[1] ?? '').split(':');
      if (cols[3] === '0A' && parseInt(hex, 16) === port) out.push(names[addr] ?? addr);
    }
  }
  return out;
}

/** Runs a child to its end, failing (and killing it) when it takes longer than `ms`: a hang. */
async function runWithin(child: ChildProcess, ms: number) {
  const timer = setTimeout(() => void killHard(child), ms);
  const exit = await run(child);
  clearTimeout(timer);
  assert.notEqual(exit.signal, 'SIGKILL', `still running after ${ms} ms:\n${exit.stderr}`);
  return exit;
}

function stderrOf(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.on('data', (d: Buffer) => (text += d.toString()));
  return () => text;
}

describe('the nexus command, as a newcomer meets it', { timeout: 240_000 }, () => {
  it('nexus up listens on 127.0.0.1 as its --help says, and says it is up on stderr in plain words as well as in its JSON log', async () => {
    const help = await run(spawnNexus(['up', '--help']));
    assert.match(help.stdout, /--host <value>[^-]*\(default:\s+127\.0\.0\.1\)/);
    const port = await freePort();
    const data = join(dir, 'up');
    const child = spawnNexus(['up'], {
      NEXUS_DATA_DIR: data,
      PORT: String(port),
      LOG_LEVEL: 'info',
      STREAM_INTERVAL: '200ms',
      HOST: '',
    });
    const stderr = stderrOf(child);
    const done = run(child);
    try {
      const json = JSON.parse(await firstLineMatching(child, /Nexus is up/, 90_000)) as {
        msg: string;
      };
      assert.match(json.msg, /^Nexus is up in \d+\.\d s: dashboard http:\/\/localhost:\d+\//);
      // Written right after the log line (which goes through pino's asynchronous stdout).
      await until(() => Promise.resolve(stderr().includes('Listening on')), 10_000);
      assert.match(
        stderr(),
        new RegExp(
          `^Nexus is up in \\d+\\.\\d s: dashboard http://localhost:${port}/  \\(REST http://localhost:${port}/api/v1, GraphQL `,
          'm',
        ),
      );
      assert.match(
        stderr(),
        new RegExp(`^Listening on 127\\.0\\.0\\.1:${port} \\(this machine only\\)`, 'm'),
      );
      assert.deepEqual(listeners(port), ['127.0.0.1']);
      // By default it serves GraphQL and pushes live readings, and its overview says so.
      const overview = (await (await fetch(`http://127.0.0.1:${port}/api/v1/overview`)).json()) as {
        features: unknown;
      };
      assert.deepEqual(overview.features, { graphql: true, websocket: true });

      // A second nexus up on the same data directory (a second `make run`) stops at once.
      const second = await runWithin(
        spawnNexus(['up'], {
          NEXUS_DATA_DIR: data,
          PORT: String(await freePort()),
        }),
        60_000,
      );
      assert.equal(second.code, 2, second.stderr);
      assert.equal(
        second.stderr,
        `nexus: ${join(data, 'pglite')} is in use by another nexus up (pid ${child.pid}): stop that one, or give this one another NEXUS_DATA_DIR (--data-dir). If no such process runs, delete ${join(data, 'pglite.lock')}\n`,
      );
    } finally {
      child.kill('SIGINT');
    }
    assert.equal((await done).code, 0);
    assert.equal(existsSync(join(data, 'pglite.lock')), false, 'the lock is removed on exit');
  });

  it('nexus up and nexus streamer with a CSV that cannot be read: one line, exit 2, nothing started', async () => {
    const missing = join(dir, 'no-such-export.csv');
    for (const command of ['up', 'streamer']) {
      const exit = await runWithin(
        spawnNexus([command, '--csv', missing], {
          NEXUS_DATA_DIR: join(dir, `missing-${command}`),
          PORT: String(await freePort()),
          ETCD_ENDPOINTS: etcd.endpoint,
        }),
        60_000,
      );
      assert.equal(exit.code, 2, `${command}: ${exit.stderr}`);
      assert.equal(exit.stderr, `nexus: cannot read CSV file ${missing}: no such file\n`);
      assert.equal(exit.stdout, '', `${command} started something`);
    }
  });

  it('nexus up with a CSV that is not a DCGM export stops and says why instead of waiting for ever', async () => {
    const csv = join(dir, 'not-dcgm.csv');
    writeFileSync(csv, 'name,age\nada,36\n');
    const exit = await runWithin(
      spawnNexus(['up', '--csv', csv], {
        NEXUS_DATA_DIR: join(dir, 'not-dcgm'),
        PORT: String(await freePort()),
      }),
      60_000,
    );
    assert.equal(exit.code, 2, exit.stderr);
    assert.match(exit.stderr, /^nexus: CSV header lacks required column\(s\) timestamp/);
    assert.equal(exit.stderr.trim().split('\n').length, 1, exit.stderr);
  });

  it('nexus gateway listens on 0.0.0.0 as its --help says, and names only what it serves', async () => {
    const help = await run(spawnNexus(['gateway', '--help']));
    assert.match(help.stdout, /--host <value>[^-]*\(default:\s+0\.0\.0\.0\)/);
    const port = await freePort();
    const child = spawnNexus(['gateway'], {
      DATABASE_URL: await pg.server.createDatabase(uniqueDatabase('cli')),
      ENABLE_NEXUS: 'false',
      ENABLE_GRAPHQL: 'false',
      PORT: String(port),
      HOST: '',
      LOG_LEVEL: 'info',
    });
    const done = run(child);
    try {
      const line = JSON.parse(await firstLineMatching(child, /gateway listening/, 60_000)) as {
        msg: string;
      };
      assert.equal(
        line.msg,
        `gateway listening on 0.0.0.0:${port} (every address): REST /api/v1, OpenAPI /openapi.json, Swagger UI /swagger/index.html, WebSocket /ws`,
      );
      assert.deepEqual(listeners(port), ['0.0.0.0']);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal((await done).code, 0);
  });

  it('nexus streamer and nexus collector whose METRICS_PORT is taken: one line naming the setting, exit 1', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '0.0.0.0', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      for (const command of ['streamer', 'collector']) {
        const cluster = uniqueCluster('cli');
        const exit = await runWithin(
          spawnNexus([command], {
            ETCD_ENDPOINTS: etcd.endpoint,
            DATABASE_URL: await pg.server.createDatabase(uniqueDatabase('cli')),
            CLUSTER_ID: cluster,
            MESSAGE_QUEUE_PREFIX: `/cli-test/${cluster}/queue`,
            REGISTRY_PREFIX: `/cli-test/${cluster}`,
            NEXUS_DATA_DIR: join(dir, `metrics-${command}`),
            METRICS_PORT: String(port),
            LOG_LEVEL: 'warn',
          }),
          60_000,
        );
        assert.equal(exit.code, 1, `${command}: ${exit.stderr}`);
        assert.equal(
          exit.stderr,
          `nexus: port ${port} on 0.0.0.0 is in use (another nexus?): stop that one, or choose another port with METRICS_PORT or --metrics-port\n`,
        );
      }
    } finally {
      blocker.close();
    }
  });

  it('nexus gateway on a port in use: one line, exit 1, and it does not stay running', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const cluster = uniqueCluster('cli');
      const exit = await runWithin(
        spawnNexus(['gateway'], {
          DATABASE_URL: await pg.server.createDatabase(uniqueDatabase('cli')),
          ETCD_ENDPOINTS: etcd.endpoint,
          CLUSTER_ID: cluster,
          REGISTRY_PREFIX: `/cli-test/${cluster}`,
          PORT: String(port),
          HOST: '127.0.0.1',
          LOG_LEVEL: 'warn',
        }),
        60_000,
      );
      assert.equal(exit.code, 1);
      assert.equal(
        exit.stderr,
        `nexus: port ${port} on 127.0.0.1 is in use (another nexus?): stop that one, or choose another port with PORT or --port\n`,
      );
    } finally {
      blocker.close();
    }
  });
});
