/**
 * TLS to PostgreSQL, against a server of our own that takes TLS connections only (pg_hba.conf
 * hostssl; plain ones are rejected) with a certificate from the project's CA (scripts/certs.sh):
 * each DB_SSLMODE with libpq's meaning, the same through DATABASE_URL's own sslmode, client
 * certificate authentication, and every command that connects (migrate, compact, gateway,
 * collector) honouring the settings.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { postgresConnection } from '../../src/cli/backends.js';
import { loadConfig } from '../../src/core/config.js';
import { describeError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { PostgresDatabase } from '../../src/store/postgres/database.js';
import { killHard, ROOT, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';
import { startPostgres, type PgServer } from '../helpers/postgres.js';
import { until } from '../helpers/pipeline.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-pg-tls-'));
const certs = join(dir, 'certs');
const otherCa = join(dir, 'other');
const certsSh = (d: string, name: string): void => {
  execFileSync(join(ROOT, 'scripts/certs.sh'), [d, name], { stdio: 'pipe' });
};
// The server's certificate (CN postgres; SANs localhost and 127.0.0.1), a client certificate
// whose CN is a database user, and a CA of another deployment.
certsSh(certs, 'postgres');
certsSh(certs, 'nexus_cert');
certsSh(otherCa, 'postgres');
const CA = join(certs, 'ca.crt');
const WRONG_CA = join(otherCa, 'ca.crt');

let server: PgServer;
let DB: Record<string, string>;
const etcd = await sharedEtcd();
before(async () => {
  server = await startPostgres({
    tls: {
      certFile: join(certs, 'postgres.crt'),
      keyFile: join(certs, 'postgres.key'),
      caFile: CA,
    },
    // 127.0.0.2 is this machine too, but not a name in the certificate.
    listen: ['127.0.0.1', '127.0.0.2'],
    hba: [
      'local all all trust',
      'hostssl all nexus_cert 127.0.0.1/32 cert',
      'hostssl all all 127.0.0.0/8 scram-sha-256',
      'hostnossl all all 0.0.0.0/0 reject',
    ],
  });
  execFileSync('/usr/lib/postgresql/15/bin/psql', [
    '-q',
    '-d',
    `${server.url}?sslmode=require`,
    '-c',
    'CREATE ROLE nexus_cert LOGIN SUPERUSER',
  ]);
  DB = {
    DATABASE_URL: '',
    DB_HOST: '127.0.0.1',
    DB_PORT: String(server.port),
    DB_NAME: server.database,
    DB_USER: server.user,
    DB_PASSWORD: server.password,
    DB_SSLMODE: 'verify-full',
    DB_SSLROOTCERT: CA,
  };
});
after(async () => {
  await server.destroy();
  await etcd.release();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Connects with these settings (over DB's), as every command does (postgresConnection), and
 * returns whether the session is encrypted, or the error.
 */
async function connect(env: Record<string, string>): Promise<{ ssl?: boolean; error?: string }> {
  let db: PostgresDatabase | undefined;
  try {
    db = new PostgresDatabase(
      postgresConnection(loadConfig({ ...DB, ...env }), 'tls-test'),
      silentLogger(),
    );
    const res = await db.query<{ ssl: boolean }>(
      'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
    );
    return { ssl: res.rows[0]?.ssl ?? false };
  } catch (err) {
    return { error: describeError(err) };
  } finally {
    await db?.close();
  }
}

const url = (query: string, host = '127.0.0.1'): string =>
  `postgres://${server.user}:${server.password}@${host}:${server.port}/${server.database}?${query}`;

describe('TLS to PostgreSQL', { timeout: 120_000 }, () => {
  it('verify-full with the right CA connects, encrypted', async () => {
    assert.deepEqual(await connect({}), { ssl: true });
  });

  it('verify-full refuses a server whose certificate another CA signed, saying so', async () => {
    const r = await connect({ DB_SSLROOTCERT: WRONG_CA });
    assert.match(
      r.error ?? '',
      /the server's certificate was refused \(self[- ]signed certificate in certificate chain\); check DB_SSLROOTCERT/,
    );
  });

  it('verify-full refuses a host name the certificate is not for; verify-ca does not check it', async () => {
    const r = await connect({ DB_HOST: '127.0.0.2' });
    assert.match(r.error ?? '', /certificate was refused .*127\.0\.0\.2 is not in the cert's list/);
    assert.deepEqual(await connect({ DB_HOST: '127.0.0.2', DB_SSLMODE: 'verify-ca' }), {
      ssl: true,
    });
    assert.match(
      (await connect({ DB_SSLMODE: 'verify-ca', DB_SSLROOTCERT: '' })).error ?? '',
      /DB_SSLMODE=verify-ca needs DB_SSLROOTCERT/,
    );
  });

  it('require encrypts without checking, unless a CA is given (as libpq)', async () => {
    assert.deepEqual(await connect({ DB_SSLMODE: 'require', DB_SSLROOTCERT: '' }), { ssl: true });
    assert.match(
      (await connect({ DB_SSLMODE: 'require', DB_SSLROOTCERT: WRONG_CA })).error ?? '',
      /certificate was refused/,
    );
  });

  it('a plain connection is refused by a server that requires TLS', async () => {
    const r = await connect({ DB_SSLMODE: 'disable' });
    assert.match(
      r.error ?? '',
      /pg_hba\.conf rejects connection for host "127\.0\.0\.1", user "nexus", database "telemetry", no encryption/,
    );
  });

  it("DATABASE_URL's own sslmode and sslrootcert, with libpq's meanings; DB_SSLMODE wins over it", async () => {
    const off = { DB_SSLMODE: 'disable', DB_SSLROOTCERT: '' };
    assert.deepEqual(
      await connect({ ...off, DATABASE_URL: url(`sslmode=verify-full&sslrootcert=${CA}`) }),
      { ssl: true },
    );
    assert.match(
      (await connect({ ...off, DATABASE_URL: url(`sslmode=verify-full&sslrootcert=${WRONG_CA}`) }))
        .error ?? '',
      /certificate was refused/,
    );
    assert.match(
      (
        await connect({
          ...off,
          DATABASE_URL: url(`sslmode=verify-full&sslrootcert=${CA}`, '127.0.0.2'),
        })
      ).error ?? '',
      /certificate was refused .*127\.0\.0\.2/,
    );
    // require: encrypted, not verified (node-postgres alone would verify it, and fail).
    assert.deepEqual(await connect({ ...off, DATABASE_URL: url('sslmode=require') }), {
      ssl: true,
    });
    assert.match(
      (await connect({ ...off, DATABASE_URL: url('sslmode=disable') })).error ?? '',
      /no encryption/,
    );
    assert.deepEqual(await connect({ DATABASE_URL: url('sslmode=disable') }), { ssl: true });
    assert.match(
      (await connect({ DATABASE_URL: url('sslmode=disable'), DB_SSLROOTCERT: WRONG_CA })).error ??
        '',
      /certificate was refused/,
    );
  });

  it('a client certificate authenticates (DB_SSLCERT, DB_SSLKEY), no password', async () => {
    const asCert = { DB_USER: 'nexus_cert', DB_PASSWORD: '' };
    assert.deepEqual(
      await connect({
        ...asCert,
        DB_SSLCERT: join(certs, 'nexus_cert.crt'),
        DB_SSLKEY: join(certs, 'nexus_cert.key'),
      }),
      { ssl: true },
    );
    assert.match(
      (await connect(asCert)).error ?? '',
      /connection requires a valid client certificate|certificate authentication failed/,
    );
    assert.match(
      (await connect({ ...asCert, DB_SSLCERT: join(certs, 'nexus_cert.crt') })).error ?? '',
      /DB_SSLCERT and DB_SSLKEY go together/,
    );
    assert.match(
      (await connect({ DB_SSLROOTCERT: join(dir, 'missing.crt') })).error ?? '',
      /DB_SSLROOTCERT: cannot read .*missing\.crt \(ENOENT\)/,
    );
  });

  it('every command that connects honours the settings: migrate, compact, gateway, collector', async () => {
    const migrate = await run(spawnNexus(['migrate'], DB));
    assert.equal(migrate.code, 0, migrate.stderr);
    const refused = await run(spawnNexus(['migrate'], { ...DB, DB_SSLROOTCERT: WRONG_CA }));
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /the server's certificate was refused/);
    const compact = await run(spawnNexus(['compact'], DB));
    assert.equal(compact.code, 0, compact.stderr);

    const gatewayPort = await freePort();
    const collectorPort = await freePort();
    const cluster = uniqueCluster('tls');
    const gateway = spawnNexus(['gateway'], {
      ...DB,
      ENABLE_NEXUS: 'false',
      HOST: '127.0.0.1',
      PORT: String(gatewayPort),
      AUTH_MODE: 'none',
    });
    const collector = spawnNexus(['collector'], {
      ...DB,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: `/tls-test/${cluster}/queue`,
      REGISTRY_PREFIX: `/tls-test/${cluster}`,
      METRICS_PORT: String(collectorPort),
    });
    const ready = (port: number) => async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.status === 200;
    try {
      assert.ok(await until(ready(gatewayPort), 30_000), 'the gateway is not ready');
      assert.ok(await until(ready(collectorPort), 30_000), 'the collector is not ready');
    } finally {
      await Promise.all([killHard(gateway), killHard(collector)]);
    }
  });
});
