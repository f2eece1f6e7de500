/**
 * `nexus migrate --create-roles`: a PostgreSQL role per component, least privilege. On a database
 * migrated and written by one all-powerful user (a deployment from before the roles), it makes the
 * owner, collector and gateway roles and hands the schema over; then the whole pipeline runs with
 * them (the collector writes, rolls up, seals, merges a late reading, applies retention; the
 * gateway reads every route, from the hot tier and from chunks), and whatever else the gateway or
 * the collector tries on the schema is refused.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { PostgresDatabase } from '../../src/store/postgres/database.js';
import { roleNames } from '../../src/store/postgres/roles.js';
import { SqlStore } from '../../src/store/sql-store.js';
import { run, spawnNexus } from '../helpers/child.js';
import { sampleGateway, sampleRecords, type TestGateway } from '../helpers/gateway.js';
import { postgresDatabase, sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const pg = await sharedPostgres();
const dir = mkdtempSync(join(tmpdir(), 'nexus-pg-roles-'));
// Roles belong to the whole server: a prefix of this run's own.
const prefix = `t${process.pid}_${Date.now().toString(36)}`;
const names = roleNames(prefix);
const adminUrl = new URL(await pg.server.createDatabase(uniqueDatabase('roles')));
const PASSWORDS = { owner: 'owner-Pw-1', collector: 'collector-Pw-2', gateway: 'gateway-Pw-3' };

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, `${content}\n`, { mode: 0o600 });
  return path;
}

const urlAs = (role: string, password: string): string => {
  const u = new URL(adminUrl.href);
  u.username = role;
  u.password = password;
  return u.href;
};
const COLLECTOR = urlAs(names.collector, PASSWORDS.collector);
const GATEWAY = urlAs(names.gateway, PASSWORDS.gateway);

function psqlAdmin(sql: string, database = adminUrl.pathname.slice(1)): string {
  const u = new URL(adminUrl.href);
  u.pathname = `/${database}`;
  return execFileSync(
    '/usr/lib/postgresql/15/bin/psql',
    ['-qAt', '-v', 'ON_ERROR_STOP=1', '-d', u.href, '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  ).trim();
}

const CREATE_ROLES_ENV = {
  DATABASE_URL: adminUrl.href,
  DB_ROLE_PREFIX: prefix,
  DB_OWNER_PASSWORD_FILE: file('owner', PASSWORDS.owner),
  DB_COLLECTOR_PASSWORD_FILE: file('collector', PASSWORDS.collector),
  DB_GATEWAY_PASSWORD_FILE: file('gateway', PASSWORDS.gateway),
};

const open: { close(): Promise<void> }[] = [];
function store(
  url: string,
  over: Partial<ConstructorParameters<typeof SqlStore>[0]> = {},
): SqlStore {
  const s = new SqlStore({
    db: postgresDatabase(url),
    logger: silentLogger(),
    writeMethod: 'unnest',
    retentionDays: 0,
    rollupRetentionDays: 0,
    partitionAheadMs: 0,
    compactDelayMs: 0,
    ...over,
  });
  open.push(s);
  return s;
}
function database(url: string): PostgresDatabase {
  const db = postgresDatabase(url, 2);
  open.push(db);
  return db;
}

const records = sampleRecords();
const WINDOW = Date.UTC(2025, 6, 18, 20); // the 2-hour window of the whole sample
const first = records[0] as TelemetryRecord;

let gateway: TestGateway | undefined;
before(async () => {
  // A deployment from before the roles: one user migrated and wrote, so it owns everything,
  // partitions included.
  const old = sqlStore(adminUrl.href);
  await old.migrate();
  await old.write('before-roles', [{ ...first, timestamp: WINDOW - 86_400_000 }]);
  await old.close();
});
after(async () => {
  await gateway?.close();
  for (const o of open.reverse()) await o.close().catch(() => undefined);
  psqlAdmin(`DROP DATABASE "${adminUrl.pathname.slice(1)}" WITH (FORCE)`, 'postgres');
  psqlAdmin(`DROP ROLE ${names.collector}, ${names.gateway}, ${names.owner}`, 'postgres');
  rmSync(dir, { recursive: true, force: true });
  await pg.release();
});

/** The statement fails for want of a privilege (SQLSTATE 42501), or "must be owner" alike. */
async function refused(db: PostgresDatabase, sql: string): Promise<void> {
  await assert.rejects(
    db.query(sql),
    (err: { details?: { sqlstate?: string }; message: string }) => {
      assert.equal(err.details?.sqlstate, '42501', `${sql}: ${err.message}`);
      return true;
    },
    sql,
  );
}

/** Every REST route, and GraphQL, answer 200 with the sample's data through the reader. */
async function readEveryRoute(g: TestGateway, samples: number): Promise<void> {
  const host = records[0]?.hostname ?? '';
  const gpu = `/api/v1/clusters/local-cluster/hosts/${host}/gpus/0`;
  const range = 'from=2025-07-18T20:42:00Z&to=2025-07-18T20:43:00Z';
  const get = async (url: string): Promise<Record<string, unknown>> => {
    const res = await g.gateway.app.inject({ method: 'GET', url });
    assert.equal(res.statusCode, 200, `${url}: ${res.body.slice(0, 500)}`);
    return res.json<Record<string, unknown>>();
  };
  assert.equal((await get('/api/v1/clusters/local-cluster/stats')).samples, samples);
  for (const url of [
    '/api/v1/clusters',
    '/api/v1/clusters/local-cluster',
    '/api/v1/clusters/local-cluster/hosts',
    `/api/v1/clusters/local-cluster/hosts/${host}`,
    `/api/v1/clusters/local-cluster/hosts/${host}/gpus`,
    gpu,
    `${gpu}/metrics`,
    `${gpu}/metrics?${range}&step=1m`,
    `${gpu}/metrics?${range}&step=1s&agg=max`,
    '/api/v1/metrics',
    '/api/v1/overview',
    '/api/v1/telemetry/latest?cluster_id=local-cluster',
    '/api/v1/clusters/local-cluster/idle',
    '/api/v1/clusters/local-cluster/usage?group_by=pod&from=2025-07-18T20:00:00Z&to=2025-07-18T21:00:00Z',
    '/readyz',
  ])
    await get(url);
  const page = await get(`/api/v1/telemetry?cluster_id=local-cluster&limit=5000&${range}`);
  assert.equal(page.count, records.length);
  for (const query of ['step=1m', 'step=5s&agg=last', 'step=1m&format=columns'])
    assert.ok(
      ((await get(`/api/v1/telemetry?cluster_id=local-cluster&${range}&${query}`)).series ??
        (await get(`/api/v1/telemetry?cluster_id=local-cluster&${range}&${query}`)).columns) !==
        undefined,
      query,
    );
  const gql = await g.gateway.app.inject({
    method: 'POST',
    url: '/graphql',
    payload: {
      query: `{ clusters { cluster_id host_count gpu_count }
        hosts(cluster_id: "local-cluster") { host_id gpu_count }
        gpu(cluster_id: "local-cluster", host_id: "${host}", gpu_id: 0) {
          uuid labels workloads { pod } latest { metric value }
          series(metric: "GPU_TEMP", from: "2025-07-18T20:42:00Z", to: "2025-07-18T20:43:00Z", step: "1m") { points { value count } }
        }
        clusterStats(cluster_id: "local-cluster") { samples } }`,
    },
  });
  assert.equal(gql.statusCode, 200, gql.body.slice(0, 500));
  const body = gql.json<{ errors?: unknown; data?: { clusterStats?: { samples: number } } }>();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  assert.equal(body.data?.clusterStats?.samples, samples);
}

describe(
  'PostgreSQL roles per component (nexus migrate --create-roles)',
  { timeout: 180_000 },
  () => {
    it('makes three least-privilege roles, hands the existing schema to the owner, and runs again harmlessly', async () => {
      const made = await run(spawnNexus(['migrate', '--create-roles'], CREATE_ROLES_ENV));
      assert.equal(made.code, 0, made.stderr + made.stdout);
      assert.match(
        made.stdout,
        new RegExp(`"created":\\["${names.owner}","${names.collector}","${names.gateway}"\\]`),
      );
      assert.match(made.stdout, /granted .* what their components run/);
      for (const secret of Object.values(PASSWORDS))
        assert.ok(!(made.stdout + made.stderr).includes(secret));
      assert.equal(
        psqlAdmin(
          `SELECT string_agg(rolname || ':' || rolsuper || rolcreaterole || rolcreatedb || rolbypassrls || rolcanlogin, ',' ORDER BY rolname)
         FROM pg_roles WHERE rolname LIKE '${prefix}\\_%'`,
        ),
        [names.collector, names.gateway, names.owner]
          .map((r) => `${r}:falsefalsefalsefalsetrue`)
          .join(','),
      );
      // Everything of the schema is the owner's, the old user's partitions too; the partition
      // functions run as it, and PUBLIC may not call them.
      assert.equal(
        psqlAdmin(
          `SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace
           AND relkind IN ('r', 'p', 'v') AND relowner <> '${names.owner}'::regrole`,
        ),
        '0',
      );
      assert.equal(
        psqlAdmin(
          `SELECT string_agg(relname || ':' || relowner::regrole, ',' ORDER BY relname)
           FROM pg_class WHERE relname LIKE 'samples%20250717\\_20'`,
        ),
        `samples_1m_20250717_20:${names.owner},samples_20250717_20:${names.owner}`,
      );
      assert.equal(
        psqlAdmin(
          `SELECT string_agg(proname || ':' || prosecdef || ':' || has_function_privilege('public', oid, 'EXECUTE'), ',' ORDER BY proname)
         FROM pg_proc WHERE proname IN ('nexus_ensure_window_partitions', 'nexus_drop_partitions', 'nexus_drop_empty_partition')`,
        ),
        'nexus_drop_empty_partition:true:false,nexus_drop_partitions:true:false,nexus_ensure_window_partitions:true:false',
      );
      const again = await run(spawnNexus(['migrate', '--create-roles'], CREATE_ROLES_ENV));
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /"created":\[\]/);
      assert.match(again.stdout, /0 object\(s\) handed over/);
    });

    it('the collector role starts, writes (unnest and COPY) and the gateway role reads every route from the hot tier', async () => {
      const collector = store(COLLECTOR);
      // Start-up: every migration is applied, so it changes nothing (it may not).
      assert.deepEqual((await collector.migrate()).applied, []);
      assert.equal((await collector.write('local-cluster', records)).inserted, records.length);
      const copying = store(COLLECTOR, { writeMethod: 'copy' });
      assert.equal((await copying.write('copy-cluster', records.slice(0, 10))).inserted, 10);
      const reader = store(GATEWAY);
      gateway = await sampleGateway({
        reader: reader.reader,
        checks: [{ name: 'postgres', check: () => reader.ping() }],
      });
      await readEveryRoute(gateway, records.length); // still pending: nothing rolled up yet
    });

    it('the collector role rolls up, seals the window (dropping its partitions), merges a late reading; the gateway reads it all from chunks', async () => {
      const collector = store(COLLECTOR);
      assert.ok((await collector.rollUp()).moved >= records.length);
      const sealed = await collector.compact({ delayMs: 0 });
      assert.equal(sealed.busy, false);
      assert.ok(sealed.readings >= records.length, JSON.stringify(sealed));
      assert.ok(sealed.dropped.length >= 2, `dropped: ${JSON.stringify(sealed.dropped)}`);
      // A late reading of the sealed window: its partitions come back (the owner's function)...
      const late = { ...first, timestamp: WINDOW + 3_000_000 };
      assert.equal((await collector.write('local-cluster', [late])).inserted, 1);
      assert.equal((await collector.write('local-cluster', [late])).inserted, 0);
      // ... and the next pass merges it into its chunk and drops them again.
      const merged = await collector.compact({ delayMs: 0 });
      assert.equal(merged.readings, 1);
      assert.equal(psqlAdmin(`SELECT count(*) FROM samples`), '0');
      // The utilisation's minutes went to fleet_1m with the window's rollup (migration 014's
      // trigger, run as this role), and the hourly usage job, which reads them, runs.
      assert.ok(Number(psqlAdmin(`SELECT count(*) FROM fleet_1m`)) > 0);
      assert.equal(psqlAdmin(`SELECT count(*) FROM samples_1m`), '0');
      const usage = await store(COLLECTOR, { usageSettleMs: 0 }).rollUpUsage();
      assert.deepEqual(usage.busy, false);
      assert.ok(usage.hours > 0, JSON.stringify(usage));
      assert.ok(gateway !== undefined);
      await readEveryRoute(gateway, records.length + 1);
    });

    it('the collector role applies retention: old partitions dropped, raw chunks turned into their rollup, then deleted', async () => {
      const writer = store(COLLECTOR);
      const old = WINDOW - 400 * 86_400_000;
      assert.equal(
        (await writer.write('local-cluster', [{ ...first, timestamp: old }])).inserted,
        1,
      );
      const keepRollup = store(COLLECTOR, { retentionDays: 30, rollupRetentionDays: 36_500 });
      const kept = await keepRollup.maintain();
      assert.ok(kept.dropped.length >= 1, JSON.stringify(kept));
      assert.equal(psqlAdmin(`SELECT count(*) FROM sample_chunks WHERE data IS NOT NULL`), '0');
      assert.ok(
        Number(psqlAdmin(`SELECT count(*) FROM sample_chunks WHERE rollup IS NOT NULL`)) > 0,
      );
      await store(COLLECTOR, { retentionDays: 30, rollupRetentionDays: 30 }).maintain();
      assert.equal(psqlAdmin(`SELECT count(*) FROM sample_chunks`), '0');
    });

    it('the collector role detects and records events and runs the retirement job; the gateway role reads them', async () => {
      const collector = store(COLLECTOR);
      const xid = (t: number, v: number, hostname: string): TelemetryRecord => ({
        timestamp: t,
        metric: 'DCGM_FI_DEV_XID_ERRORS',
        gpu: 0,
        hostname,
        value: v,
        labels: {},
      });
      const T = Date.UTC(2025, 6, 20);
      const res = await collector.write('events-cluster', [
        xid(T, 0, 'e1'),
        xid(T + 60_000, 79, 'e1'),
        xid(T, 0, 'e2'),
        xid(T + 3_600_000, 0, 'e2'),
      ]);
      assert.deepEqual(res.events, { recorded: 2, ignored: 0 }); // the XID and the health change
      await collector.rollUp();
      assert.deepEqual(await collector.retire(600_000), { stopped: 1, reappeared: 0, busy: false });
      const page = await store(GATEWAY).reader.events.page({
        cluster: 'events-cluster',
        from: T - 1,
        to: T + 7_200_000,
        limit: 10,
      });
      assert.deepEqual(page.counts, { xid: 1, throttle: 0, health: 1, stopped: 1, reappeared: 0 });
    });

    it('nexus compact runs as the collector role', async () => {
      const u = new URL(COLLECTOR);
      const compact = await run(
        spawnNexus(['compact'], {
          DATABASE_URL: '',
          DB_HOST: u.hostname,
          DB_PORT: u.port,
          DB_NAME: u.pathname.slice(1),
          DB_USER: names.collector,
          DB_PASSWORD_FILE: file('collector-login', PASSWORDS.collector),
        }),
      );
      assert.equal(compact.code, 0, compact.stderr);
    });

    it('the gateway role can change nothing', async () => {
      const db = database(GATEWAY);
      const partition = psqlAdmin(
        `SELECT relname FROM pg_class WHERE relname LIKE 'samples\\_20%' ORDER BY 1 LIMIT 1`,
      );
      const before = psqlAdmin('SELECT count(*) FROM clusters');
      for (const sql of [
        `INSERT INTO clusters (name, first_seen, last_seen) VALUES ('forged', now(), now())`,
        `UPDATE gpus SET model = 'forged'`,
        'DELETE FROM samples_latest',
        'DELETE FROM sample_chunks',
        'TRUNCATE samples',
        'DROP TABLE sample_chunks',
        `DROP TABLE ${partition}`,
        'CREATE TABLE forged (a int)',
        'ALTER TABLE clusters ADD COLUMN forged int',
        `INSERT INTO nexus_schema_migrations (version, name, checksum) VALUES (999, 'x', 'x')`,
        'SELECT nexus_drop_partitions(now(), now())',
        'SELECT nexus_ensure_window_partitions(ARRAY[0::bigint])',
        `SELECT nexus_drop_empty_partition('samples', '${partition}')`,
        'SELECT count(*) FROM sealed_windows',
        `INSERT INTO gpu_events (gpu_id, type, time, severity, message) SELECT id, 'xid', now(), 'info', 'forged' FROM gpus LIMIT 1`,
        `UPDATE gpu_events SET message = 'forged'`,
        'SELECT count(*) FROM gpu_event_state',
        `UPDATE gpus SET retired_at = now()`,
        `CREATE ROLE ${prefix}_forged`,
        `SET ROLE ${names.owner}`,
      ])
        await refused(db, sql);
      assert.equal(psqlAdmin('SELECT count(*) FROM clusters'), before);
    });

    it('the collector role cannot create roles or change the schema outside its functions', async () => {
      const db = database(COLLECTOR);
      const partition = psqlAdmin(
        `SELECT relname FROM pg_class WHERE relname LIKE 'samples\\_20%' ORDER BY 1 LIMIT 1`,
      );
      for (const sql of [
        `CREATE ROLE ${prefix}_forged`,
        'CREATE TABLE forged (a int)',
        'CREATE FUNCTION forged() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$',
        'ALTER TABLE samples ADD COLUMN forged int',
        'CREATE INDEX ON samples_pending (gpu_id)',
        'DROP TABLE samples_latest',
        `DROP TABLE ${partition}`,
        'TRUNCATE samples',
        'DELETE FROM clusters',
        'ALTER FUNCTION nexus_ts(bigint) OWNER TO CURRENT_USER',
        `SET ROLE ${names.owner}`,
      ])
        await refused(db, sql);
    });

    it('a migration the collector may not apply is a clear error; nexus migrate as the owner applies it and grants again', async () => {
      // As if an upgrade brought migration 006, and a grant had gone astray.
      psqlAdmin(
        `SET ROLE ${names.owner}; DELETE FROM nexus_schema_migrations WHERE version = 6;
       DROP FUNCTION nexus_drop_empty_partition(text, text);
       REVOKE INSERT ON metrics FROM ${names.collector}`,
      );
      await assert.rejects(
        store(COLLECTOR).migrate(),
        /needs migration 006_partition_definer and this database user may not apply it .*run nexus migrate as the schema's owner/,
      );
      const u = new URL(adminUrl.href);
      const upgrade = await run(
        spawnNexus(['migrate'], {
          DATABASE_URL: '',
          DB_HOST: u.hostname,
          DB_PORT: u.port,
          DB_NAME: u.pathname.slice(1),
          DB_USER: names.owner,
          DB_PASSWORD_FILE: CREATE_ROLES_ENV.DB_OWNER_PASSWORD_FILE,
          DB_ROLE_PREFIX: prefix,
        }),
      );
      assert.equal(upgrade.code, 0, upgrade.stderr);
      assert.match(upgrade.stdout, /"applied":\["006_partition_definer"\]/);
      assert.match(upgrade.stdout, /granted .* what their components run/);
      assert.equal(
        psqlAdmin(`SELECT has_table_privilege('${names.collector}', 'metrics', 'INSERT')`),
        't',
      );
      assert.deepEqual((await store(COLLECTOR).migrate()).applied, []);
    });
  },
);
