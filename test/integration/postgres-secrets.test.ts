/**
 * Database secrets from files, as the components read them: DB_PASSWORD_FILE and
 * DATABASE_URL_FILE work; a wrong password from a file is refused without the password (or the
 * URL holding it) ever reaching a log line, stderr or an HTTP answer; no password at all is a
 * clear error saying what to set (the default `password` is gone).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { killHard, run, spawnNexus } from '../helpers/child.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { until } from '../helpers/pipeline.js';

const etcd = await sharedEtcd();
const pg = await sharedPostgres();
const dir = mkdtempSync(join(tmpdir(), 'nexus-pg-secrets-'));
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd.release();
  await pg.release();
});

const url = new URL(await pg.server.createDatabase(uniqueDatabase('secrets')));
/** A wrong password, distinctive enough that finding it anywhere means it leaked. */
const WRONG = 'Wr0ng-s3cret-9f2c7a';
const wrongUrl = new URL(url.href);
wrongUrl.password = WRONG;

function secretFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, `${content}\n`, { mode: 0o600 });
  return path;
}

/** The database as DB_* settings, without a password. */
const DB = {
  DB_HOST: url.hostname,
  DB_PORT: url.port,
  DB_NAME: url.pathname.slice(1),
  DB_USER: decodeURIComponent(url.username),
  DATABASE_URL: '',
  DB_PASSWORD: '',
  LOG_LEVEL: 'debug',
};

function assertNoSecret(output: string, where: string): void {
  assert.ok(!output.includes(WRONG), `the password is in the ${where}:\n${output.slice(-3000)}`);
  assert.ok(!output.includes(wrongUrl.href), `the URL is in the ${where}`);
}

describe('database secrets from files', { timeout: 120_000 }, () => {
  it('DB_PASSWORD_FILE and DATABASE_URL_FILE connect (nexus migrate)', async () => {
    const password = decodeURIComponent(url.password);
    const byFile = await run(
      spawnNexus(['migrate'], {
        ...DB,
        DB_PASSWORD_FILE: secretFile('db-password', password),
      }),
    );
    assert.equal(byFile.code, 0, byFile.stderr);
    assert.match(byFile.stdout, /schema at version \d+/);
    const byUrl = await run(
      spawnNexus(['migrate'], {
        ...DB,
        DATABASE_URL_FILE: secretFile('database-url', url.href),
      }),
    );
    assert.equal(byUrl.code, 0, byUrl.stderr);
    for (const r of [byFile, byUrl]) assert.ok(!(r.stdout + r.stderr).includes(password));
  });

  it('a wrong password from a file is refused, and appears in no output (migrate, collector, gateway)', async () => {
    const passwordFile = secretFile('wrong-password', WRONG);
    for (const env of [
      { ...DB, DB_PASSWORD_FILE: passwordFile },
      { ...DB, DATABASE_URL_FILE: secretFile('wrong-url', wrongUrl.href) },
    ]) {
      const migrate = await run(spawnNexus(['migrate'], env));
      assert.equal(migrate.code, 1, migrate.stderr);
      assert.match(migrate.stderr, /password authentication failed for user "nexus"/);
      assertNoSecret(migrate.stdout + migrate.stderr, 'migrate output');
    }

    // The long-running components keep trying: their logs, and the gateway's readiness answer.
    const cluster = uniqueCluster('secrets');
    const collectorChild = spawnNexus(['collector'], {
      ...DB,
      DB_PASSWORD_FILE: passwordFile,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      MESSAGE_QUEUE_PREFIX: `/secrets-test/${cluster}/queue`,
      REGISTRY_PREFIX: `/secrets-test/${cluster}`,
    });
    const collector = run(collectorChild);
    const port = await freePort();
    const gatewayChild = spawnNexus(['gateway'], {
      ...DB,
      DB_PASSWORD_FILE: passwordFile,
      ENABLE_NEXUS: 'false',
      HOST: '127.0.0.1',
      PORT: String(port),
      AUTH_MODE: 'none',
    });
    const gateway = run(gatewayChild);
    let readyz = '';
    try {
      assert.ok(
        await until(async () => {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
          if (res === undefined) return false;
          readyz = await res.text();
          return res.status === 503 && readyz.includes('password authentication failed');
        }, 30_000),
        `the gateway's /readyz does not say why: ${readyz}`,
      );
      let collected = '';
      collectorChild.stdout?.on('data', (d: Buffer) => (collected += d.toString()));
      assert.ok(
        await until(
          () => Promise.resolve(collected.includes('password authentication failed')),
          30_000,
        ),
        'the collector does not say why it waits',
      );
    } finally {
      await Promise.all([killHard(collectorChild), killHard(gatewayChild)]);
    }
    const [c, g] = await Promise.all([collector, gateway]);
    assertNoSecret(readyz, 'readiness answer');
    assertNoSecret(c.stdout + c.stderr, 'collector output');
    assertNoSecret(g.stdout + g.stderr, 'gateway output');
  });

  it('no password at all: exit 2 and a message that says what to set', async () => {
    const none = await run(spawnNexus(['migrate'], DB));
    assert.equal(none.code, 2, none.stderr);
    assert.match(
      none.stderr,
      /PostgreSQL asks for a password for user nexus and none is set: set DB_PASSWORD_FILE/,
    );
    const missing = join(dir, 'not-there');
    const unreadable = await run(spawnNexus(['migrate'], { ...DB, DB_PASSWORD_FILE: missing }));
    assert.equal(unreadable.code, 2, unreadable.stderr);
    assert.match(
      unreadable.stderr,
      new RegExp(`DB_PASSWORD_FILE: cannot read ${missing} \\(ENOENT\\)`),
    );
  });
});
