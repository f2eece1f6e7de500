/**
 * The gateway's etcd role with remote_write (src/etcd/roles.ts, `nexus etcd-roles`), on the etcd of
 * `make setup-etcd-secure` (TLS, a user per component by certificate): with the roles applied
 * without ENABLE_REMOTE_WRITE, a remote_write is answered 503 (Prometheus keeps the batch) naming
 * `nexus etcd-roles`; applied with it, the same request is published as the gateway user, while
 * the gateway still cannot write a claim or a dead letter nor purge the dead letters; applied
 * without it again, the write is taken back.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { encodeWriteRequest } from '../../src/gateway/remote-write/decoder.js';
import { run, spawnNexus } from '../helpers/child.js';
import { until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { exec, secureEtcd, type Output } from '../helpers/secure-etcd.js';

const etcd = await secureEtcd('nexus-rw-roles');
const { settings } = etcd;
const CLUSTER = 'rw-roles';
const QUEUE = `/telemetry/queue/${CLUSTER}/`;
const pg = await sharedPostgres();
after(async () => {
  etcd.destroy();
  await pg.release();
});

function etcdctl(user: string, args: readonly string[]): Promise<Output> {
  const env = Object.fromEntries(
    Object.entries(settings(user)).filter(([k]) => k.startsWith('ETCDCTL')),
  );
  return exec('etcdctl', ['--dial-timeout=2s', '--command-timeout=3s', ...args], env);
}

async function nexus(args: readonly string[], env: Record<string, string>): Promise<Output> {
  const child = spawnNexus(args, { CLUSTER_ID: CLUSTER, ...env });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    return await run(child);
  } finally {
    clearTimeout(timer);
  }
}

describe('remote_write and the gateway etcd role', () => {
  it('publishes as the gateway user only with the roles of ENABLE_REMOTE_WRITE, and nothing beyond', async (t) => {
    const setup = await etcd.make('setup-etcd-secure');
    assert.equal(setup.code, 0, setup.stdout + setup.stderr);
    const url = await pg.server.createDatabase(uniqueDatabase('rwroles'));
    assert.equal((await nexus(['migrate'], { DATABASE_URL: url })).code, 0);
    const created = await nexus(['token', 'create', '--scope', 'write', '--name', 'prom'], {
      DATABASE_URL: url,
    });
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim().split('\n').at(-1) ?? '';
    const port = await freePort();
    const gateway = spawnNexus(['gateway'], {
      ...settings('gateway'),
      DATABASE_URL: url,
      CLUSTER_ID: CLUSTER,
      PORT: String(port),
      HOST: '127.0.0.1',
      AUTH_MODE: 'token',
      ENABLE_REMOTE_WRITE: 'true',
      LOG_LEVEL: 'warn',
    });
    const done = run(gateway);
    t.after(async () => {
      if (gateway.exitCode === null) gateway.kill('SIGTERM');
      await done;
    });
    const http = `http://127.0.0.1:${port}`;
    assert.ok(
      await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000),
      'gateway not ready',
    );
    let v = 0;
    const write = async (): Promise<Response> =>
      fetch(`${http}/api/v1/write`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/x-protobuf',
          'content-encoding': 'snappy',
          'x-prometheus-remote-write-version': '0.1.0',
        },
        body: encodeWriteRequest([
          {
            labels: { __name__: 'DCGM_FI_DEV_GPU_TEMP', gpu: '0', Hostname: 'node-1' },
            samples: [{ value: ++v, timestamp: Date.now() - 1000 }],
          },
        ]),
      });
    const messages = async (): Promise<number> => {
      const res = await etcdctl('admin', ['get', '--prefix', QUEUE, '--keys-only']);
      assert.equal(res.code, 0, res.stderr);
      return res.stdout.split('\n').filter((l) => l !== '').length;
    };
    const roles = async (remoteWrite: boolean): Promise<void> => {
      const applied = await nexus(['etcd-roles', '--apply'], {
        ...settings('root'),
        ...(remoteWrite ? { ENABLE_REMOTE_WRITE: 'true' } : {}),
      });
      assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    };

    // The roles of make setup-etcd-secure: the gateway reads the queue only.
    const refused = await write();
    const refusedText = await refused.text();
    assert.equal(refused.status, 503, refusedText);
    assert.ok(refused.headers.get('retry-after') !== null);
    assert.ok(
      refusedText.includes(
        'its etcd role needs nexus etcd-roles --apply with ENABLE_REMOTE_WRITE=true',
      ),
      refusedText,
    );
    assert.equal(await messages(), 0);

    await roles(true);
    const accepted = await write();
    assert.equal(accepted.status, 204, await accepted.text());
    assert.equal(await messages(), 1);
    // Still nothing beyond publishing: no claim, no dead letter, no purge.
    for (const key of [
      `/telemetry/queue.claims/${CLUSTER}/x`,
      `/telemetry/queue.dead/${CLUSTER}/x`,
      `/telemetry/queue.delayed/${CLUSTER}/x`,
    ]) {
      const put = await etcdctl('gateway', ['put', key, 'x']);
      assert.notEqual(put.code, 0, key);
      assert.ok(put.stderr.includes('permission denied'), `${key}: ${put.stderr}`);
    }
    const purge = await nexus(['dlq', 'purge', '--all'], settings('gateway'));
    assert.equal(purge.code, 2, purge.stdout + purge.stderr);

    // Applied without remote write again: the write is taken back.
    await roles(false);
    assert.equal((await write()).status, 503);
    assert.equal(await messages(), 1);
  });
});
