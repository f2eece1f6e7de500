import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { NexusError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { PostgresDatabase, type PostgresConnection } from '../../src/store/postgres/database.js';
import { SqlStore } from '../../src/store/sql-store.js';
import {
  storeConformance,
  storeSettings,
  type StoreHarness,
  type StoreOptions,
} from '../conformance/store-suite.js';
import { B, fleetConformance, fleetRecords, writeAll } from '../conformance/fleet-suite.js';
import { REPORT_STATEMENTS, withHashJoins } from '../../src/store/fleet-reads.js';
import { run, spawnNexus } from '../helpers/child.js';
import { sharedPostgres, startPostgres, uniqueDatabase } from '../helpers/postgres.js';

const pg = await sharedPostgres();
after(() => pg.release());
const logger = silentLogger();

/** A connection from a URL, the other fields placeholders (the URL wins). */
function connection(url: string): PostgresConnection {
  return {
    url,
    host: 'unused',
    port: 5432,
    database: 'unused',
    user: 'unused',
    password: 'unused',
    sslMode: 'disable',
    poolSize: 6,
    statementTimeoutMs: 60_000,
    connectTimeoutMs: 5000,
    applicationName: 'test',
  };
}

/** A store as the CLI builds it (src/cli/backends.ts createStore). */
function storeAt(url: string, o: StoreOptions = {}): { store: SqlStore; db: PostgresDatabase } {
  const db = new PostgresDatabase(connection(url), logger);
  const store = new SqlStore({
    db,
    logger,
    ...storeSettings(o),
  });
  return { store, db };
}

const opened: PostgresDatabase[] = [];

const harness: StoreHarness = {
  name: 'postgres',
  create: async (options) => {
    const url = await pg.server.createDatabase(uniqueDatabase('store'));
    const { store, db } = storeAt(url, options);
    opened.push(db);
    return { store, sql: db };
  },
  teardown: async () => {
    await Promise.all(opened.map((db) => db.close()));
  },
};
storeConformance(harness);
fleetConformance(harness);

const reading = (timestamp: number, value: number): TelemetryRecord => ({
  timestamp,
  value,
  metric: 'DCGM_FI_DEV_GPU_TEMP',
  gpu: 0,
  hostname: 'node-a',
  uuid: 'GPU-0',
  labels: {},
});

describe('store: PostgreSQL only', () => {
  it('with the server stopped, write() fails as STORE_UNAVAILABLE (retryable), and works again once it is back', async (t) => {
    const server = await startPostgres();
    t.after(() => server.destroy());
    const { store, db } = storeAt(server.url, { writeMethod: 'copy' });
    t.after(() => store.close());
    await store.migrate();
    const T0 = Date.UTC(2025, 6, 18, 13, 42, 10, 123);
    assert.deepEqual(await store.write('cluster-1', [reading(T0, 40.5)]), {
      inserted: 1,
      duplicates: 0,
    });

    await server.stop();
    const batch = [reading(T0 + 1000, 41.5), reading(T0 + 2000, 42.5)];
    await assert.rejects(store.write('cluster-1', batch), (err: unknown) => {
      assert.ok(err instanceof NexusError, `not a NexusError: ${String(err)}`);
      assert.equal(err.code, 'STORE_UNAVAILABLE');
      assert.equal(err.retryable, true);
      return true;
    });

    await server.start();
    assert.deepEqual(await store.write('cluster-1', batch), { inserted: 2, duplicates: 0 });
    const res = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM samples');
    assert.equal(res.rows[0]?.n, 3);
  });

  it('5 processes running `nexus migrate` at once all succeed, and each version is applied once', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('migrate'));
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        run(spawnNexus(['migrate'], { DATABASE_URL: url, LOG_LEVEL: 'info' })),
      ),
    );
    for (const r of results) assert.equal(r.code, 0, `nexus migrate failed: ${r.stderr}`);
    const logs = results.flatMap((r) =>
      r.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg?: string; migration?: string }),
    );
    assert.deepEqual(
      logs
        .filter((l) => l.msg === 'applied migration')
        .map((l) => l.migration)
        .sort(),
      [
        '001_schema',
        '002_rollup_pending',
        '003_database_identity',
        '004_series_chunks',
        '005_api_tokens',
        '006_partition_definer',
        '007_token_write_scope',
        '008_events',
        '009_usage',
        '010_mig',
        '011_usage_hourly',
        '012_fleet_changes',
        '013_rollup_hot_updates',
        '014_fleet_rollup_at_sealing',
        '015_usage_slices',
        '016_util_peaks',
        '017_partition_drop_lock',
        '018_inline_time_functions',
        '019_identity_plpgsql',
      ],
    );

    const { db } = storeAt(url);
    t.after(() => db.close());
    const rows = await db.query<{ version: number; name: string }>(
      'SELECT version, name FROM nexus_schema_migrations ORDER BY version',
    );
    assert.deepEqual(rows.rows, [
      { version: 1, name: '001_schema' },
      { version: 2, name: '002_rollup_pending' },
      { version: 3, name: '003_database_identity' },
      { version: 4, name: '004_series_chunks' },
      { version: 5, name: '005_api_tokens' },
      { version: 6, name: '006_partition_definer' },
      { version: 7, name: '007_token_write_scope' },
      { version: 8, name: '008_events' },
      { version: 9, name: '009_usage' },
      { version: 10, name: '010_mig' },
      { version: 11, name: '011_usage_hourly' },
      { version: 12, name: '012_fleet_changes' },
      { version: 13, name: '013_rollup_hot_updates' },
      { version: 14, name: '014_fleet_rollup_at_sealing' },
      { version: 15, name: '015_usage_slices' },
      { version: 16, name: '016_util_peaks' },
      { version: 17, name: '017_partition_drop_lock' },
      { version: 18, name: '018_inline_time_functions' },
      { version: 19, name: '019_identity_plpgsql' },
    ]);
  });
  it('the idle and usage reports are planned without JIT (the nested loops they keep are costed as disabled, which would compile them at every run)', async (t) => {
    const url = await pg.server.createDatabase(uniqueDatabase('jit'));
    const { store, db } = storeAt(url);
    t.after(() => store.close());
    await store.migrate();
    await writeAll(store, fleetRecords());
    const jit = await db.query<{ on: boolean }>('SELECT pg_jit_available() AS on');
    if (jit.rows[0]?.on !== true) {
      t.skip('this PostgreSQL has no JIT');
      return;
    }
    const params = {
      idle: ['fleet', 5, 15 * 60_000],
      usage: ['fleet', B, B + 3_600_000],
    } as const;
    const plan = (sql: string, p: readonly (string | number)[]) =>
      db.transaction(async (tx) => {
        await tx.query('SET LOCAL enable_nestloop = off');
        const a = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, [...p]);
        const withoutSetting = JSON.stringify(a.rows[0]?.['QUERY PLAN']);
        return withHashJoins(tx, async () => {
          const b = await tx.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, [
            ...p,
          ]);
          return { withoutSetting, planned: JSON.stringify(b.rows[0]?.['QUERY PLAN']) };
        });
      });
    for (const kind of ['idle', 'usage'] as const) {
      const { withoutSetting, planned } = await plan(REPORT_STATEMENTS[kind], params[kind]);
      // The hazard is real on this server: nested loops off alone, the report is JIT-compiled.
      assert.match(withoutSetting, /"JIT"/, `${kind}: JIT expected with enable_nestloop off alone`);
      assert.doesNotMatch(planned, /"JIT"/, `${kind}: planned with JIT`);
    }
  });
});
