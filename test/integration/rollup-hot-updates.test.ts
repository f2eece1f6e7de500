/**
 * Migration 013: the rollup job updates `samples_latest` and `samples_1m` rows in place, and those
 * tables leave half of each page free, so that each update stays on its page (a HOT update: no new
 * index entry). Checked the way PostgreSQL stores it: a fleet large enough to fill several pages
 * is read once, then again a second later (same minute), and every row updated must still be on
 * the page it was on. With full pages (the default fillfactor) most would have moved.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

/** 60 hosts x 8 GPUs: several pages of either table. */
const HOSTS = 60;
/** Second 10 of a minute, in a 2-hour window of its own. */
const T = Date.UTC(2026, 0, 5, 10, 30, 10);

function instant(t: number, offset: number): TelemetryRecord[] {
  const out: TelemetryRecord[] = [];
  for (let h = 0; h < HOSTS; h++) {
    for (let g = 0; g < 8; g++) {
      out.push({
        timestamp: t,
        metric: 'DCGM_FI_DEV_GPU_TEMP',
        gpu: g,
        hostname: `node-${String(h).padStart(3, '0')}`,
        uuid: `GPU-${h}-${g}`,
        value: h * 10 + g + offset,
        labels: {},
      });
    }
  }
  return out;
}

/** Each row's page, by its key. */
async function pages(client: pg.Client, table: string): Promise<Map<string, number>> {
  const res = await client.query<{ k: string; page: string }>(
    `SELECT gpu_id || ':' || metric_id AS k, (ctid::text::point)[0] AS page FROM ${table}`,
  );
  return new Map(res.rows.map((r) => [r.k, Number(r.page)]));
}

let url: string;
let store: SqlStore;
let client: pg.Client;
before(async () => {
  const server = await sharedPostgres();
  url = await server.server.createDatabase(uniqueDatabase('hotupd'));
  store = sqlStore(url, silentLogger());
  await store.migrate();
  client = new pg.Client({ connectionString: url });
  await client.connect();
});
after(async () => {
  await client.end();
  await store.close();
  await (await sharedPostgres()).release();
});

describe('the rollup job updates rows on their page', () => {
  it('leaves half of each page of samples_latest and of new samples_1m partitions free', async () => {
    await store.write('c', instant(T, 0));
    const res = await client.query<{ relname: string; ff: string | null }>(
      `SELECT c.relname, (SELECT option_value FROM pg_options_to_table(c.reloptions) WHERE option_name = 'fillfactor') AS ff
       FROM pg_class c WHERE c.relname IN ('samples_latest', 'samples_1m_20260105_10', 'samples_20260105_10', 'fleet_1m')
       ORDER BY c.relname`,
    );
    assert.deepEqual(
      res.rows.map((r) => [r.relname, r.ff]),
      [
        ['fleet_1m', null],
        ['samples_1m_20260105_10', '50'],
        ['samples_20260105_10', null],
        ['samples_latest', '50'],
      ],
    );
  });

  it('moves no row of samples_latest or samples_1m to another page when the fleet reports again', async () => {
    await store.rollUp();
    const latest = await pages(client, 'samples_latest');
    const rollup = await pages(client, 'samples_1m');
    assert.equal(latest.size, HOSTS * 8);
    assert.ok(new Set(latest.values()).size > 2, 'the fleet spans several pages');
    assert.ok(new Set(rollup.values()).size > 2, 'the fleet spans several pages');

    await store.write('c', instant(T + 1000, 1000));
    const folded = await store.rollUp();
    assert.equal(folded.moved, HOSTS * 8);

    // The updates happened: every row holds the second reading.
    const counts = await client.query<{ n: string; c: string }>(
      'SELECT count(*) AS n, min(count) AS c FROM samples_1m',
    );
    assert.equal(Number(counts.rows[0]?.n), HOSTS * 8);
    assert.equal(Number(counts.rows[0]?.c), 2);
    const late = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM samples_latest WHERE time = to_timestamp(${(T + 1000) / 1000})`,
    );
    assert.equal(Number(late.rows[0]?.n), HOSTS * 8);

    const moved = (before: Map<string, number>, after: Map<string, number>): string[] =>
      [...before].filter(([k, p]) => after.get(k) !== p).map(([k]) => k);
    assert.deepEqual(moved(latest, await pages(client, 'samples_latest')), []);
    assert.deepEqual(moved(rollup, await pages(client, 'samples_1m')), []);
  });
});
