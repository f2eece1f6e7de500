/**
 * `make setup-etcd-secure` (scripts/local-etcd-secure.sh, `nexus etcd-roles`): etcd with client and
 * peer TLS, client certificates required, and one least-privilege user per component. The
 * distributed pipeline runs on it end to end, each component as its own etcd user from its own
 * generated settings file; then what must be refused is: no certificate, a certificate of another
 * CA, a certificate of no etcd user, and each component outside its prefixes (a forged message, a
 * dead-letter purge by the gateway or the streamer, the streamer writing the registry). The gateway
 * runs as deployed, with AUTH_MODE=token and a read token.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT, run, spawnNexus } from '../helpers/child.js';
import { startFixtureExporter } from '../helpers/dcgm-exporter.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { until } from '../helpers/pipeline.js';
import { SAMPLE } from '../helpers/sample.js';
import { exec, secureEtcd, type Output } from '../helpers/secure-etcd.js';
import { openSocket } from '../helpers/ws-client.js';

const etcd = await secureEtcd('nexus-etcd-secure');
const { dataDir, secureDir, certs, make, settings } = etcd;
const etcdPort = etcd.port;
const CLUSTER = 'secure-test';
const QUEUE = `/telemetry/queue/${CLUSTER}/`;
const DEAD = `/telemetry/queue.dead/${CLUSTER}/`;
const pg = await sharedPostgres();

/** etcdctl as a user of the settings files (its ETCDCTL_* lines), or with the flags given. */
function etcdctl(user: string | undefined, args: readonly string[]): Promise<Output> {
  const env =
    user === undefined
      ? {}
      : Object.fromEntries(Object.entries(settings(user)).filter(([k]) => k.startsWith('ETCDCTL')));
  return exec('etcdctl', ['--dial-timeout=2s', '--command-timeout=3s', ...args], env);
}

/** The keys under a prefix, read as the admin user. */
async function keys(prefix: string): Promise<string[]> {
  const res = await etcdctl('admin', ['get', '--prefix', prefix, '--keys-only']);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split('\n').filter((l) => l !== '');
}

/**
 * `nexus ...` from the sources, as a component of the settings files; killed (by its pid) if it
 * has not ended in 60 s, so a command that waits instead of failing fails the test.
 */
async function nexus(args: readonly string[], env: Record<string, string>): Promise<Output> {
  const child = spawnNexus(args, { CLUSTER_ID: CLUSTER, ...env });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    return await run(child);
  } finally {
    clearTimeout(timer);
  }
}

after(async () => {
  etcd.destroy();
  await pg.release();
});

describe('make setup-etcd-secure: etcd with TLS and a least-privilege user per component', () => {
  it('starts etcd with TLS and writes a settings file per user; running it again changes nothing', async () => {
    const first = await make('setup-etcd-secure');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(first.stdout, /secure etcd running on https:\/\/localhost:\d+/);
    assert.match(first.stdout, /user gateway: role nexus-gateway granted/);
    for (const user of ['root', 'admin', 'streamer', 'collector', 'gateway']) {
      const s = settings(user);
      assert.equal(s.ETCD_ENDPOINTS, `https://localhost:${etcdPort}`);
      assert.equal(s.ETCD_CA_FILE, join(certs, 'ca.crt'));
      assert.equal(s.ETCD_CERT_FILE, join(certs, `${user}.crt`));
      assert.equal(s.ETCD_KEY_FILE, join(certs, `${user}.key`));
    }
    const again = await make('setup-etcd-secure');
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /secure etcd already serving/);
    assert.match(again.stdout, /nothing changed/);
  });

  it('runs the distributed pipeline end to end, each component as its own etcd user', async () => {
    const url = await pg.server.createDatabase(uniqueDatabase('secure'));
    const port = await freePort();
    const common = {
      DATABASE_URL: url,
      LOG_LEVEL: 'info',
      POLL_TIMEOUT: '500ms',
    };
    const migrate = await nexus(['migrate'], { DATABASE_URL: url });
    assert.equal(migrate.code, 0, migrate.stderr);
    // The gateway as deployed: a read token of nexus token create (its last line).
    const created = await nexus(['token', 'create', '--scope', 'read', '--name', 'secure-test'], {
      DATABASE_URL: url,
    });
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim().split('\n').at(-1) ?? '';
    assert.match(token, /^nexus_/);
    const auth = { authorization: `Bearer ${token}` };
    const gateway = spawnNexus(['gateway'], {
      ...settings('gateway'),
      ...common,
      CLUSTER_ID: CLUSTER,
      PORT: String(port),
      HOST: '127.0.0.1',
      AUTH_MODE: 'token',
    });
    const collector = spawnNexus(['collector'], {
      ...settings('collector'),
      ...common,
      CLUSTER_ID: CLUSTER,
    });
    const gatewayDone = run(gateway);
    const collectorDone = run(collector);
    const http = `http://127.0.0.1:${port}`;
    const json = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${http}${path}`, { headers: auth });
      assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`);
      return (await res.json()) as T;
    };
    try {
      // Ready: PostgreSQL, and etcd read as the gateway user.
      assert.ok(
        await until(async () => (await fetch(`${http}/readyz`)).status === 200, 30_000),
        'gateway not ready',
      );
      // Live data comes from the collector through the commit feed in etcd.
      const socket = await openSocket(`ws://127.0.0.1:${port}/ws?cluster_id=${CLUSTER}`, {
        protocols: ['nexus', `bearer.${token}`],
      });
      await socket.waitFor((m) => m.type === 'subscribed');
      await new Promise((r) => setTimeout(r, 1000));

      const streamer = await nexus(['streamer', '--csv', SAMPLE], {
        ...settings('streamer'),
        LOOP_MODE: 'false',
        STREAM_INTERVAL: '0',
        BATCH_SIZE: '100',
      });
      assert.equal(streamer.code, 0, streamer.stderr);
      assert.match(streamer.stdout, /summary: 2470 records published in 25 batches/);

      const live = (): number =>
        socket.messages
          .filter((m) => m.type === 'telemetry')
          .reduce((n, m) => n + Number(m.count), 0);
      assert.ok(
        await until(
          async () =>
            live() === 2470 &&
            (await json<{ samples: number }>(`/api/v1/clusters/${CLUSTER}/stats`)).samples === 2470,
          60_000,
        ),
        `live readings ${live()}`,
      );
      assert.equal((await json<{ count: number }>(`/api/v1/clusters/${CLUSTER}/hosts`)).count, 31);
      // The overview reads the queue's counts and the members in etcd, as the gateway user.
      const overview = await json<{
        queue: { ready: number; in_flight: number; dead: number } | null;
        collectors: { id: string }[];
      }>('/api/v1/overview');
      assert.deepEqual(
        overview.queue && {
          ready: overview.queue.ready,
          in_flight: overview.queue.in_flight,
          dead: overview.queue.dead,
        },
        { ready: 0, in_flight: 0, dead: 0 },
      );
      assert.equal(overview.collectors.length, 1);
      assert.deepEqual(await keys(QUEUE), []);
      await socket.close();

      // nexus scrape as its own etcd user (publishes, reads the depth, writes the lease ledger).
      const exporter = await startFixtureExporter({ tick: true });
      const scrape = spawnNexus(['scrape'], {
        ...settings('scraper'),
        CLUSTER_ID: CLUSTER,
        SCRAPE_TARGETS: exporter.target,
        SCRAPE_INTERVAL: '500ms',
      });
      const scrapeDone = run(scrape);
      try {
        assert.ok(
          await until(() => Promise.resolve(exporter.scrapes >= 3), 30_000),
          'nexus scrape did not scrape',
        );
      } finally {
        scrape.kill('SIGTERM');
      }
      const sc = await scrapeDone;
      await exporter.close();
      assert.equal(sc.code, 0, sc.stderr);
      assert.doesNotMatch(sc.stdout + sc.stderr, /permission denied|ETCD_ACCESS_DENIED/, 'scraper');
      const scraped = exporter.scrapes * exporter.readingsPerScrape;
      assert.ok(
        await until(
          async () =>
            (await json<{ samples: number }>(`/api/v1/clusters/${CLUSTER}/stats`)).samples ===
            2470 + scraped,
          60_000,
        ),
        `stored ${(await json<{ samples: number }>(`/api/v1/clusters/${CLUSTER}/stats`)).samples} of ${2470 + scraped}`,
      );
    } finally {
      gateway.kill('SIGTERM');
      collector.kill('SIGTERM');
    }
    const [gw, co] = await Promise.all([gatewayDone, collectorDone]);
    assert.equal(gw.code, 0, gw.stderr);
    assert.equal(co.code, 0, co.stderr);
    // Not one request of theirs was refused.
    for (const [name, out] of [
      ['gateway', gw],
      ['collector', co],
    ] as const) {
      assert.doesNotMatch(out.stdout + out.stderr, /permission denied|ETCD_ACCESS_DENIED/, name);
    }
  });

  it('refuses a client without a certificate, with one of another CA, or of no etcd user', async () => {
    const forged = `${QUEUE}9999999999999_forged_gpu-0_1`;
    const ca = join(certs, 'ca.crt');
    const endpoint = `--endpoints=https://localhost:${etcdPort}`;
    // A certificate named "admin" from a CA of its own, and one of our CA for no etcd user.
    const other = join(dataDir, 'other-ca');
    assert.equal((await exec(join(ROOT, 'scripts/certs.sh'), [other, 'admin'])).code, 0);
    assert.equal((await exec(join(ROOT, 'scripts/certs.sh'), [certs, 'intruder'])).code, 0);
    const [bare, plain, foreign] = await Promise.all([
      // The acceptance: etcdctl put to the queue prefix without credentials is refused.
      etcdctl(undefined, [endpoint, `--cacert=${ca}`, 'put', forged, 'x']),
      etcdctl(undefined, [`--endpoints=http://127.0.0.1:${etcdPort}`, 'put', forged, 'x']),
      etcdctl(undefined, [
        endpoint,
        `--cacert=${ca}`,
        `--cert=${join(other, 'admin.crt')}`,
        `--key=${join(other, 'admin.key')}`,
        'put',
        forged,
        'x',
      ]),
    ]);
    assert.notEqual(bare.code, 0, bare.stdout);
    assert.notEqual(plain.code, 0, plain.stdout);
    assert.notEqual(foreign.code, 0, foreign.stdout);
    // Nexus without a client certificate: refused at TLS, said as such (not waited out).
    const stats = await nexus(['queue', 'stats'], {
      ETCD_ENDPOINTS: `https://localhost:${etcdPort}`,
      ETCD_CA_FILE: ca,
    });
    assert.equal(stats.code, 2, stats.stdout + stats.stderr);
    assert.match(
      stats.stderr,
      /etcd refused the TLS connection for stats: it wants a client certificate signed by the CA it trusts/,
    );
    const nobody = await etcdctl(undefined, [
      endpoint,
      `--cacert=${ca}`,
      `--cert=${join(certs, 'intruder.crt')}`,
      `--key=${join(certs, 'intruder.key')}`,
      'put',
      forged,
      'x',
    ]);
    assert.notEqual(nobody.code, 0, nobody.stdout);
    assert.match(nobody.stderr, /permission denied/);
    assert.deepEqual(await keys(QUEUE), []);
  });

  it('refuses each component outside its prefixes: no forged message, no purge of dead letters, no registry write by the streamer', async () => {
    const seeded = `${DEAD}1752871354000_seeded_gpu-0_1`;
    const put = await etcdctl('admin', [
      'put',
      seeded,
      JSON.stringify({ reason: 'seeded by the test', attempts: 1, deadAt: 0 }),
    ]);
    assert.equal(put.code, 0, put.stderr);

    const forge = await etcdctl('gateway', ['put', `${QUEUE}9999999999999_forged_gpu-0_1`, 'x']);
    assert.notEqual(forge.code, 0);
    assert.match(forge.stderr, /permission denied/);
    for (const user of ['gateway', 'streamer']) {
      const purge = await nexus(['dlq', 'purge', '--all'], settings(user));
      assert.equal(purge.code, 2, `${user}: ${purge.stdout}${purge.stderr}`);
      assert.match(
        purge.stderr,
        new RegExp(
          `etcd refused purge dead letters under ${DEAD.replace(/\./g, '\\.')} for user "${user}".*: permission denied`,
        ),
      );
      assert.doesNotMatch(purge.stdout, /purged/);
    }
    const registry = await etcdctl('streamer', ['put', '/nexus/clusters/forged', '{}']);
    assert.match(registry.stderr, /permission denied/);
    assert.deepEqual(await keys(DEAD), [seeded]);
    assert.deepEqual(await keys('/nexus/clusters/forged'), []);
    assert.deepEqual(await keys(QUEUE), []);
  });

  it("a component given another one's user stops at once with exit 2, naming the user and the prefix, and publishes nothing", async () => {
    const streamer = await nexus(['streamer', '--csv', SAMPLE], {
      ...settings('gateway'),
      LOOP_MODE: 'false',
      STREAM_ID: 'wrong-user',
    });
    assert.equal(streamer.code, 2, streamer.stdout + streamer.stderr);
    assert.match(
      streamer.stderr,
      /etcd refused acquire stream under \/telemetry\/queue\.streams\/secure-test\/wrong-user\/ for user "gateway".*permission denied/,
    );
    const url = await pg.server.createDatabase(uniqueDatabase('secure'));
    const collector = await nexus(['collector'], {
      ...settings('streamer'),
      DATABASE_URL: url,
      POLL_TIMEOUT: '500ms',
    });
    assert.equal(collector.code, 2, collector.stdout + collector.stderr);
    assert.match(
      collector.stderr,
      /nexus collector: etcd refused .* under \/telemetry\/queue\.\w+\/secure-test\/ for user "streamer".*permission denied/,
    );
    assert.deepEqual(await keys(QUEUE), []);
    assert.deepEqual(await keys('/telemetry/queue.streams/secure-test/wrong-user/'), []);
  });

  it('signs in with a user and password too, over TLS (the token wins over the certificate)', async () => {
    const add = await etcdctl('root', ['user', 'add', 'pw-reader:pw-secret-1']);
    assert.equal(add.code, 0, add.stderr);
    const grant = await etcdctl('root', ['user', 'grant-role', 'pw-reader', 'nexus-gateway']);
    assert.equal(grant.code, 0, grant.stderr);
    // The intruder's certificate gets through TLS; its CN is no etcd user.
    const base = {
      ETCD_ENDPOINTS: `https://localhost:${etcdPort}`,
      ETCD_CA_FILE: join(certs, 'ca.crt'),
      ETCD_CERT_FILE: join(certs, 'intruder.crt'),
      ETCD_KEY_FILE: join(certs, 'intruder.key'),
      ETCD_USERNAME: 'pw-reader',
    };
    const stats = await nexus(['queue', 'stats', '--json'], {
      ...base,
      ETCD_PASSWORD: 'pw-secret-1',
    });
    assert.equal(stats.code, 0, stats.stderr);
    assert.equal((JSON.parse(stats.stdout) as { dead: number }).dead, 1);
    const wrong = await nexus(['queue', 'stats'], { ...base, ETCD_PASSWORD: 'not-it' });
    assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
    assert.match(wrong.stderr, /etcd refused the password of user "pw-reader"/);
  });

  it('make stop-etcd stops it', async () => {
    const pid = Number(readFileSync(join(secureDir, 'etcd.pid'), 'utf8'));
    const stop = await make('stop-etcd');
    assert.equal(stop.code, 0, stop.stderr);
    assert.match(stop.stdout, /secure etcd stopped/);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });
});
