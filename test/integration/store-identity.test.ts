import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type Logger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { PostgresDatabase, type PostgresConnection } from '../../src/store/postgres/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import type { WriteResult } from '../../src/store/types.js';
import { POWER, T0, TEMP, grid } from '../conformance/store-fixtures.js';
import { storeSettings } from '../conformance/store-suite.js';
import { envelope } from '../conformance/queue-suite.js';
import { sharedEtcd, uniqueCluster } from '../helpers/etcd.js';
import { sharedPostgres, startPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { startCollector, until } from '../helpers/pipeline.js';
import { etcdQueue } from '../helpers/queues.js';

/**
 * A database replaced under a running store (dropped and re-created, restored from a dump, its
 * schema dropped): the store's cached dimension ids, and its reader's, belong to the old one.
 * Nothing may be written or read under them: every reading written after the replacement is
 * stored under the right host, GPU and metric, none under a dangling id, and the reader names
 * every reading right.
 */
const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const pg = await sharedPostgres();
const etcd = await sharedEtcd();
const dumps = mkdtempSync(join(tmpdir(), 'nexus-identity-'));
const opened: PostgresDatabase[] = [];
after(async () => {
  await Promise.all(opened.map((db) => db.close()));
  rmSync(dumps, { recursive: true, force: true });
  await pg.release();
  await etcd.release();
});

function connection(url: string): PostgresConnection {
  return {
    url,
    host: 'unused',
    port: 5432,
    database: 'unused',
    user: 'unused',
    password: 'unused',
    sslMode: 'disable',
    poolSize: 4,
    statementTimeoutMs: 60_000,
    connectTimeoutMs: 5000,
    applicationName: 'identity-test',
  };
}

/** A logger whose lines the test reads. */
function capturing(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'info', destination: sink }), lines };
}

function storeAt(url: string, logger: Logger): { store: SqlStore; db: PostgresDatabase } {
  const db = new PostgresDatabase(connection(url), logger);
  opened.push(db);
  return { store: new SqlStore({ db, logger, ...storeSettings({}) }), db };
}

function psql(url: string, sql: string): void {
  execFileSync(join(BIN, 'psql'), ['-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

/** Drops the database (its connections too) and creates an empty one of the same name. */
function recreate(name: string): void {
  psql(pg.server.url, `DROP DATABASE "${name}" WITH (FORCE)`);
  psql(pg.server.url, `CREATE DATABASE "${name}"`);
}

/** Readings of `hosts` (2 GPUs each, 2 metrics) at `times`. */
function readings(hosts: readonly string[], times: readonly number[]): TelemetryRecord[] {
  return grid({ hosts, gpus: 2, metrics: [TEMP, POWER], times });
}

/**
 * Writes as the collector does: a failed write (the database going away, coming back) is tried
 * again, until it succeeds or `attempts` run out.
 */
async function write(
  store: SqlStore,
  records: readonly TelemetryRecord[],
  attempts = 40,
): Promise<WriteResult> {
  for (let i = 1; ; i++) {
    try {
      return await store.write('c1', records);
    } catch (err) {
      if (i >= attempts) throw err;
      await sleep(100);
    }
  }
}

const key = (hostname: string, gpu: number, metric: string, t: number): string =>
  `${hostname}/${gpu}/${metric}/${t}`;

/** Every reading in the database, named through the dimension tables; and the dangling ones. */
async function stored(
  db: PostgresDatabase,
): Promise<{ named: Map<string, number>; dangling: number }> {
  const res = await db.query<{ k: string; value: number }>(
    `SELECT h.hostname || '/' || g.gpu_index || '/' || m.name || '/' || nexus_ms(s.time) AS k, s.value
     FROM samples s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id
     JOIN metrics m ON m.id = s.metric_id`,
  );
  const dangling = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM samples s
     WHERE NOT EXISTS (SELECT FROM gpus g WHERE g.id = s.gpu_id)
        OR NOT EXISTS (SELECT FROM metrics m WHERE m.id = s.metric_id)`,
  );
  return {
    named: new Map(res.rows.map((r) => [r.k, r.value])),
    dangling: dangling.rows[0]?.n ?? -1,
  };
}

/** Asserts each of `records` is stored, under its own host, GPU and metric, with its value. */
function assertStoredAsWritten(
  got: { named: Map<string, number>; dangling: number },
  records: readonly TelemetryRecord[],
): void {
  assert.equal(got.dangling, 0, 'readings under ids no GPU or metric has');
  const wrong: string[] = [];
  for (const r of records) {
    const k = key(r.hostname, r.gpu, r.metric, r.timestamp);
    if (got.named.get(k) !== r.value)
      wrong.push(`${k}: ${got.named.get(k) ?? 'missing'} (wrote ${r.value})`);
  }
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} readings not stored as written`);
}

const S = 1000;

describe('a database replaced under a running store', () => {
  it('dropped and re-created empty: the store migrates it again and writes under the new ids', async () => {
    const name = uniqueDatabase('ident_drop');
    const url = await pg.server.createDatabase(name);
    const { logger, lines } = capturing();
    const { store, db } = storeAt(url, logger);
    await store.migrate();
    await write(store, readings(['node-a', 'node-b'], [T0]));
    recreate(name);
    const after = readings(['node-a', 'node-b'], [T0 + S, T0 + 2 * S]);
    await write(store, after);
    const got = await stored(db);
    assertStoredAsWritten(got, after);
    assert.equal(got.named.size, after.length);
    assert.ok(
      lines.some(
        (l) => l.msg === 'the schema is missing from the database: applying the migrations again',
      ),
      JSON.stringify(lines),
    );
  });

  it('dropped and re-created, another writer first: the ids it cached now name other GPUs; its readings still go to their own', async () => {
    const name = uniqueDatabase('ident_other');
    const url = await pg.server.createDatabase(name);
    const { logger, lines } = capturing();
    const { store, db } = storeAt(url, logger);
    await store.migrate();
    await write(store, readings(['node-a', 'node-b'], [T0]));
    // Its reader caches the fleet and the metrics too.
    assert.equal((await store.reader.latest({ cluster: 'c1' })).length, 8);
    recreate(name);
    // Another collector migrates the new database and writes other hosts first: they get the ids
    // 1, 2, ... that this store has cached for node-a and node-b.
    const other = storeAt(url, createLogger({ level: 'silent' }));
    await other.store.migrate();
    const others = readings(['node-y', 'node-z'], [T0 + S]);
    await write(other.store, others);
    const after = readings(['node-a', 'node-b'], [T0 + S, T0 + 2 * S]);
    await write(store, after);
    const got = await stored(db);
    assertStoredAsWritten(got, [...others, ...after]);
    assert.equal(got.named.size, others.length + after.length);
    const warn = lines.find(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('the database was replaced'),
    );
    assert.ok(warn !== undefined, JSON.stringify(lines));
    assert.notEqual(warn.old_identity, warn.new_identity);

    // The reader names every reading right (it had cached node-a under an id node-y has now).
    const latest = await store.reader.latest({ cluster: 'c1', hosts: ['node-a'] });
    assert.deepEqual(
      latest.map((l) => `${l.hostname}/${l.gpu_id}/${l.metric}=${l.value}`).sort(),
      after
        .filter((r) => r.hostname === 'node-a' && r.timestamp === T0 + 2 * S)
        .map((r) => `${r.hostname}/${r.gpu}/${r.metric}=${r.value}`)
        .sort(),
    );
    const page = await store.reader.telemetry({
      cluster: 'c1',
      hosts: ['node-y'],
      from: 0,
      to: T0 + 60 * S,
      limit: 100,
    });
    assert.deepEqual(
      page.readings
        .map((r) => `${r.hostname}/${r.gpu_id}/${r.metric}/${r.timestamp}=${r.value}`)
        .sort(),
      others
        .filter((r) => r.hostname === 'node-y')
        .map((r) => `${r.hostname}/${r.gpu}/${r.metric}/${r.timestamp}=${r.value}`)
        .sort(),
    );
    const series = await store.reader.series({
      cluster: 'c1',
      hosts: ['node-b'],
      metrics: [TEMP],
      from: T0,
      to: T0 + 60 * S,
      stepMs: 60 * S,
      agg: 'max',
      maxPoints: 1000,
    });
    assert.deepEqual(
      series.series
        .map((s) => `${s.hostname}/${s.gpu_id}/${s.metric}:${s.points.map((p) => p[1]).join(',')}`)
        .sort(),
      [0, 1].map((gpu) => {
        const values = after
          .filter((r) => r.hostname === 'node-b' && r.gpu === gpu && r.metric === TEMP)
          .map((r) => r.value);
        return `node-b/${gpu}/${TEMP}:${Math.max(...values)}`;
      }),
    );
    assert.deepEqual(
      store.identityChanges(),
      { database: 2, server: 0 },
      'the writer and the reader each count it',
    );
  });

  it("the gateway's latest values in memory: dropped with the old database, not merged into the new one's ids", async () => {
    const name = uniqueDatabase('ident_latest');
    const url = await pg.server.createDatabase(name);
    const { logger } = capturing();
    const { store } = storeAt(url, logger);
    await store.migrate();
    // Newer readings in the old database than the new one will have.
    await write(store, readings(['node-a', 'node-b'], [T0 + 10 * S]));
    const tracker = store.reader.trackLatest?.({ reloadMs: 300 });
    assert.ok(tracker !== undefined, 'the SQL reader keeps latest values in memory');
    tracker.start();
    try {
      assert.equal((await store.reader.latest({ cluster: 'c1' })).length, 8);
      recreate(name);
      const other = storeAt(url, createLogger({ level: 'silent' }));
      await other.store.migrate();
      // node-y gets the ids node-a had (hosts and GPUs are inserted in name order), and other
      // values (grid values follow the position in this list).
      const others = readings(['node-z', 'node-y'], [T0 + S]);
      await write(other.store, others);
      const want = others
        .filter((r) => r.hostname === 'node-y')
        .map((r) => `${r.hostname}/${r.gpu}/${r.metric}=${r.value}`)
        .sort();
      let got: string[] = [];
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        got = (await store.reader.latest({ cluster: 'c1', hosts: ['node-y'] }).catch(() => []))
          .map((l) => `${l.hostname}/${l.gpu_id}/${l.metric}=${l.value}`)
          .sort();
        if (JSON.stringify(got) === JSON.stringify(want)) break;
        await sleep(200);
      }
      assert.deepEqual(got, want, "node-y's latest values");
    } finally {
      tracker.stop();
    }
  });

  it('restored from a dump of an earlier state (the same random id comes back): new GPUs get ids it cached for others; nothing goes under them', async () => {
    const name = uniqueDatabase('ident_restore');
    const url = await pg.server.createDatabase(name);
    const { logger } = capturing();
    const { store, db } = storeAt(url, logger);
    await store.migrate();
    const before = readings(['node-a'], [T0]);
    await write(store, before);
    const dump = join(dumps, `${name}.dump`);
    execFileSync(join(BIN, 'pg_dump'), ['-Fc', '-f', dump, '-d', url], { stdio: 'pipe' });
    const randomId = async (on: PostgresDatabase): Promise<string | undefined> =>
      (await on.query<{ id: string }>('SELECT id::text FROM nexus_identity')).rows[0]?.id;
    const idBefore = await randomId(db);
    // After the dump: node-b, whose GPUs get ids 3 and 4 (cached here).
    await write(store, readings(['node-a', 'node-b'], [T0 + S]));
    recreate(name);
    execFileSync(join(BIN, 'pg_restore'), ['-d', url, dump], { stdio: 'pipe' });
    // Another writer adds node-c first: the restored sequences give it GPU ids 3 and 4.
    const other = storeAt(url, createLogger({ level: 'silent' }));
    assert.equal(await randomId(other.db), idBefore, 'the dump brought the same random id back');
    const others = readings(['node-c'], [T0 + 2 * S]);
    await write(other.store, others);
    const after = readings(['node-a', 'node-b'], [T0 + 2 * S, T0 + 3 * S]);
    await write(store, after);
    const got = await stored(db);
    assertStoredAsWritten(got, [...before, ...others, ...after]);
    assert.equal(got.named.size, before.length + others.length + after.length);
    assert.equal(store.identityChanges().database, 1);
  });

  it('restored into the same database while connected (its schema dropped, the dump restored): the ids are read again', async () => {
    const name = uniqueDatabase('ident_clean');
    const url = await pg.server.createDatabase(name);
    const { logger } = capturing();
    const { store, db } = storeAt(url, logger);
    await store.migrate();
    const before = readings(['node-a'], [T0]);
    await write(store, before);
    const dump = join(dumps, `${name}.dump`);
    execFileSync(join(BIN, 'pg_dump'), ['-Fc', '-f', dump, '-d', url], { stdio: 'pipe' });
    await write(store, readings(['node-a', 'node-b'], [T0 + S]));
    // (pg_restore --clean cannot drop the partitions' inherited keys; this is what it would do.)
    psql(url, 'DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    execFileSync(join(BIN, 'pg_restore'), ['-d', url, dump], { stdio: 'pipe' });
    const other = storeAt(url, createLogger({ level: 'silent' }));
    const others = readings(['node-c'], [T0 + 2 * S]);
    await write(other.store, others);
    const after = readings(['node-a', 'node-b'], [T0 + 2 * S]);
    await write(store, after);
    const got = await stored(db);
    assertStoredAsWritten(got, [...before, ...others, ...after]);
    assert.equal(got.named.size, before.length + others.length + after.length);
  });

  it('a server restart (as a failover): the ids are read again, counted as a server change', async () => {
    const server = await startPostgres();
    try {
      const { logger, lines } = capturing();
      const { store, db } = storeAt(server.url, logger);
      await store.migrate();
      await write(store, readings(['node-a'], [T0]));
      await server.stop();
      await server.start();
      const after = readings(['node-a', 'node-b'], [T0 + S]);
      await write(store, after);
      assertStoredAsWritten(await stored(db), after);
      assert.deepEqual(store.identityChanges(), { database: 0, server: 1 });
      assert.ok(
        lines.some((l) =>
          String(l.msg).startsWith('the PostgreSQL server restarted or failed over'),
        ),
        JSON.stringify(lines),
      );
      await db.close();
    } finally {
      await server.destroy();
    }
  });

  it('its schema dropped while it runs: migrated again; with no schema to create in, the write fails saying so', async () => {
    const name = uniqueDatabase('ident_schema');
    const url = await pg.server.createDatabase(name);
    const { logger } = capturing();
    const { store, db } = storeAt(url, logger);
    await store.migrate();
    await write(store, readings(['node-a'], [T0]));
    psql(url, 'DROP SCHEMA public CASCADE; CREATE SCHEMA public');
    const after = readings(['node-a'], [T0 + S]);
    await store.write('c1', after);
    const got = await stored(db);
    assertStoredAsWritten(got, after);
    assert.equal(got.named.size, after.length);

    psql(url, 'DROP SCHEMA public CASCADE');
    await assert.rejects(store.write('c1', readings(['node-a'], [T0 + 2 * S])), (err: Error) => {
      assert.match(err.message, /schema is missing and could not be created again/);
      return true;
    });
    psql(url, 'CREATE SCHEMA public');
    const last = readings(['node-a'], [T0 + 3 * S]);
    await store.write('c1', last);
    assertStoredAsWritten(await stored(db), last);
  });

  it('under a running collector: every reading published after it is stored under its own GPU and metric', async () => {
    const cluster = uniqueCluster('ident');
    const name = uniqueDatabase('ident_collector');
    const url = await pg.server.createDatabase(name);
    const c = await startCollector({ endpoint: etcd.endpoint, url, cluster });
    const queue = etcdQueue(etcd.endpoint, cluster);
    const check = storeAt(url, createLogger({ level: 'silent' }));
    const count = async (): Promise<number> =>
      (await check.db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples')).rows[0]?.n ??
      -1;
    try {
      const first = readings(['node-a', 'node-b'], [T0]);
      await queue.publish(envelope(cluster, { records: first }));
      assert.ok(await until(async () => (await count().catch(() => 0)) === first.length, 20_000));
      recreate(name);
      // Another writer takes the ids the collector cached: its cluster, hosts and GPUs 1, 2, ...
      const other = storeAt(url, createLogger({ level: 'silent' }));
      await other.store.migrate();
      const others = readings(['node-y', 'node-z'], [T0 + S]);
      await write(other.store, others);
      const after = readings(['node-a', 'node-b'], [T0 + S, T0 + 2 * S]);
      await queue.publish(envelope(cluster, { records: after.slice(0, 8) }));
      await queue.publish(envelope(cluster, { records: after.slice(8) }));
      assert.ok(
        await until(
          async () =>
            (await queue.depth()) === 0 &&
            (await count().catch(() => 0)) >= others.length + after.length,
          30_000,
        ),
        `stored ${await count().catch(() => -1)} of ${others.length + after.length}`,
      );
      const got = await stored(check.db);
      const mine = await check.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM samples s JOIN gpus g ON g.id = s.gpu_id JOIN hosts h ON h.id = g.host_id
         JOIN clusters k ON k.id = h.cluster_id WHERE k.name = $1`,
        [cluster],
      );
      assert.equal(mine.rows[0]?.n, after.length);
      assertStoredAsWritten(got, [...others, ...after]);
      assert.equal(got.named.size, others.length + after.length);
      assert.equal(c.collector.stats.lostAcks, 0);
    } finally {
      await c.stop();
      await queue.close();
    }
  });
});
