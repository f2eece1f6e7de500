/**
 * The dashboard on a big fleet in Chromium (issue 20): 2,500 hosts x 8 GPUs written through the
 * store, served by an in-process gateway with the dashboard. The overview draws the aggregated
 * heatmap (GET /api/v1/clusters/{c}/heatmap) with the API's figures, drills down twice to a
 * host's GPUs and back, the search box finds a host and a GPU and opens them, and the page never
 * asks for every GPU's latest value. First paint, drill-down and search times are logged (the
 * bench measures them: test/helpers/dashboard-timing.ts), never asserted.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page, Request } from 'playwright-core';
import { dashboardPlugin } from '../../src/cli/dashboard.js';
import { silentLogger } from '../../src/core/logger.js';
import type { TelemetryRecord } from '../../src/core/record.js';
import { buildGateway, type Gateway } from '../../src/gateway/app.js';
import { MemoryFeed } from '../../src/registry/memory/memory-feed.js';
import type { SqlStore } from '../../src/store/sql-store.js';
import { TEMP, rec } from '../conformance/store-fixtures.js';
import { measureDashboard } from '../helpers/dashboard-timing.js';
import { DEFAULT_GATEWAY, NO_AUTH } from '../helpers/gateway.js';
import { ensureDashboardBuilt, launchChromium } from '../helpers/nexus-up.js';
import { sqlStore } from '../helpers/pipeline.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';

const CLUSTER = 'scale-1';
const HOSTS = 2500;
const PER_HOST = 8;
const UTIL = 'DCGM_FI_DEV_GPU_UTIL';
const host = (i: number): string => `gpu-node-${String(i).padStart(4, '0')}`;
/** Utilisation of GPU g of host i; 90 C (alerting) on GPU 0 of every seventh host. */
const util = (i: number, g: number): number => (i * 7 + g * 13) % 101;
const temp = (i: number, g: number): number => (g === 0 && i % 7 === 0 ? 90 : 55);

interface Cell {
  key: string;
  prefix?: string;
  from?: string;
  to?: string;
  host_id?: string;
  gpus?: number;
  reporting?: number;
  min?: number | null;
  avg?: number | null;
  max?: number | null;
  alerting?: number;
}
interface HeatmapAnswer {
  level: string;
  hosts: number;
  gpus: number;
  cells: Cell[];
}

/** The fleet's records, one instant a minute ago. */
function fleet(): TelemetryRecord[] {
  const t = Date.now() - 60_000;
  const out: TelemetryRecord[] = [];
  for (let i = 0; i < HOSTS; i++)
    for (let g = 0; g < PER_HOST; g++) {
      out.push(rec(t, util(i, g), { hostname: host(i), gpu: g, metric: UTIL }));
      out.push(rec(t, temp(i, g), { hostname: host(i), gpu: g, metric: TEMP }));
    }
  return out;
}

/** The figures of the page's aggregated cells, as the data attributes say. */
async function shownCells(page: Page): Promise<string[][]> {
  return page.evaluate<string[][]>(`[...document.querySelectorAll('[data-testid="agg-cell"]')].map(
    (b) => [b.dataset.key, b.dataset.gpus, b.dataset.reporting, b.dataset.min, b.dataset.avg, b.dataset.max, b.dataset.alerting],
  )`);
}

const asShown = (c: Cell): string[] => [
  c.key,
  String(c.gpus ?? 0),
  String(c.reporting ?? 0),
  ...[c.min, c.avg, c.max].map((v) => (v === null || v === undefined ? '' : String(v))),
  String(c.alerting ?? 0),
];

describe('dashboard on 20,000 GPUs (browser, in-process gateway)', { timeout: 600_000 }, () => {
  let store: SqlStore;
  let feed: MemoryFeed;
  let gateway: Gateway;
  let url = '';
  let browser: Browser;
  let page: Page;
  const requests: string[] = [];
  let searchable = false;

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    assert.equal(res.status, 200, path);
    return (await res.json()) as T;
  };

  before(async () => {
    ensureDashboardBuilt();
    const pg = await sharedPostgres();
    store = sqlStore(await pg.server.createDatabase(uniqueDatabase('scale')));
    await store.migrate();
    const records = fleet();
    for (let i = 0; i < records.length; i += 8000)
      await store.write(CLUSTER, records.slice(i, i + 8000));
    feed = new MemoryFeed();
    gateway = await buildGateway({
      reader: store.reader,
      auth: NO_AUTH,
      feed,
      checks: [],
      logger: silentLogger(),
      ...DEFAULT_GATEWAY,
      version: '0.0.0-test',
      websocket: true,
      cors: { enabled: false, origins: [] },
      maxPoints: 100_000,
      extensions: [dashboardPlugin(silentLogger())],
    });
    url = await gateway.app.listen({ host: '127.0.0.1', port: 0 });
    const paths = (await api<{ paths: Record<string, unknown> }>('/openapi.json')).paths;
    searchable = '/api/v1/search' in paths;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('request', (r: Request) => {
      const u = new URL(r.url());
      if (u.pathname.startsWith('/api/')) requests.push(`${u.pathname}${u.search}`);
    });
  });

  after(async () => {
    await browser.close();
    await gateway.app.close();
    await feed.close();
    await store.close();
    await (await sharedPostgres()).release();
  });

  it('draws aggregated cells whose figures are the API’s, without loading every GPU', async () => {
    await page.goto(`${url}/#/?cluster=${CLUSTER}`);
    await page.waitForSelector('[data-testid="agg-map"][data-level="group"]', { timeout: 60_000 });
    const answer = await api<HeatmapAnswer>(`/api/v1/clusters/${CLUSTER}/heatmap?metric=${UTIL}`);
    assert.deepEqual(
      [answer.level, answer.hosts, answer.gpus, answer.cells.length],
      ['group', HOSTS, HOSTS * PER_HOST, 250],
    );
    assert.deepEqual(await shownCells(page), answer.cells.map(asShown));
    const summary = page.getByTestId('heatmap-summary');
    assert.deepEqual(
      [await summary.getAttribute('data-gpus'), await summary.getAttribute('data-hosts')],
      [String(HOSTS * PER_HOST), String(HOSTS)],
    );
    // The first cell's tooltip gives min, max and the GPUs reporting.
    await page.locator('[data-testid="agg-cell"]').first().hover();
    const tip = (await page.getByTestId('agg-tooltip').textContent()) ?? '';
    const first = answer.cells[0];
    assert.ok(first !== undefined);
    assert.ok(tip.includes(`${first.reporting ?? 0} reporting`), tip);
    assert.ok(
      tip.includes(`min ${first.min ?? ''}`) && tip.includes(`max ${first.max ?? ''}`),
      tip,
    );
    // No request for every GPU's latest values or series, nor for the whole host list.
    const heavy = requests.filter(
      (r) => r.startsWith('/api/v1/telemetry') || /\/hosts(\?|$)/.test(r),
    );
    assert.deepEqual(heavy, []);
    assert.ok(requests.length <= 10, requests.join('\n'));
    console.log(`dashboard-scale: requests for the first paint: ${requests.join(', ')}`);
  });

  it('drills down twice (group -> hosts -> a host’s GPUs), in the URL; Back and Escape go up', async () => {
    await page.locator('[data-testid="agg-cell"][data-key="gpu-node-012"]').click();
    await page.waitForSelector('[data-testid="agg-map"][data-level="host"]', { timeout: 30_000 });
    const hosts = await api<HeatmapAnswer>(
      `/api/v1/clusters/${CLUSTER}/heatmap?metric=${UTIL}&prefix=gpu-node-012&from=gpu-node-0120&to=gpu-node-0129&max_cells=64`,
    );
    assert.equal(hosts.level, 'host');
    assert.deepEqual(await shownCells(page), hosts.cells.map(asShown));
    assert.equal(hosts.cells.length, 10);
    assert.ok(page.url().includes('in=gpu-node-012|gpu-node-0120|gpu-node-0129'), page.url());

    await page.locator('[data-testid="agg-cell"][data-key="gpu-node-0123"]').focus();
    await page.keyboard.press('Enter');
    const canvas = page.getByTestId('heatmap');
    await page.waitForSelector('[data-testid="heatmap"][data-gpus="8"][data-hosts="1"]', {
      timeout: 30_000,
    });
    assert.equal(await canvas.isVisible(), true);
    assert.equal(await page.getByTestId('agg-map').isVisible(), false);
    const crumbs = (await page.locator('.crumbs').textContent()) ?? '';
    assert.ok(crumbs.includes('gpu-node-012…') && crumbs.includes('gpu-node-0123'), crumbs);

    await page.goBack();
    await page.waitForSelector('[data-testid="agg-map"][data-level="host"]', { timeout: 30_000 });
    await page.keyboard.press('Escape');
    await page.waitForSelector('[data-testid="agg-map"][data-level="group"]', { timeout: 30_000 });
    assert.equal(new URL(page.url()).hash, `#/?cluster=${CLUSTER}`);
    const heavy = requests.filter((r) => r.startsWith('/api/v1/telemetry/latest'));
    assert.deepEqual(heavy, []);
  });

  /** Waits until the page's location hash starts with `prefix` (polled from here: the page's
   * CSP forbids the string evaluation waitForFunction would do). */
  const hashStartsWith = async (prefix: string): Promise<void> => {
    const deadline = Date.now() + 15_000;
    while (!new URL(page.url()).hash.startsWith(prefix)) {
      if (Date.now() > deadline) assert.fail(`the page did not go to ${prefix}: ${page.url()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('search finds a host by part of its name and a GPU by uuid, and opens them', async (t) => {
    if (!searchable) {
      t.skip('this gateway has no GET /api/v1/search yet (the state helper builds it)');
      return;
    }
    await page.keyboard.press('/');
    const box = page.getByTestId('search');
    await box.fill('node-0123');
    await page.waitForSelector('[data-testid="search-hit"][data-kind="host"]', { timeout: 15_000 });
    const label = await page
      .locator('[data-testid="search-hit"][data-kind="host"] .search-label')
      .first()
      .textContent();
    assert.equal(label, 'gpu-node-0123');
    await box.press('Enter');
    await hashStartsWith(`#/host/${CLUSTER}/gpu-node-0123`);

    await page.keyboard.press('/');
    await box.fill('GPU-gpu-node-0042-3');
    // The hits of this query (the previous one's list holds GPUs of gpu-node-0123 too).
    await page
      .locator('[data-testid="search-hit"][data-kind="gpu"]', { hasText: 'GPU-gpu-node-0042-3' })
      .first()
      .waitFor({ timeout: 15_000 });
    await box.press('Enter');
    await hashStartsWith(`#/gpu/${CLUSTER}/gpu-node-0042/3`);
  });

  it('searches at a key at once, and a key typed sooner after it once the interval ends', async (t) => {
    if (!searchable) {
      t.skip('this gateway has no GET /api/v1/search yet (the state helper builds it)');
      return;
    }
    await page.keyboard.press('/');
    // Longer than the box's interval since its last search (SEARCH_INTERVAL_MS, 50 ms).
    await new Promise((r) => setTimeout(r, 200));
    // Two keys in one task of the page: the first is searched for before its input event returns,
    // the second (within the interval) is not, until the interval ends.
    const sent = await page.evaluate<{ before: number; first: number; second: number }>(`(() => {
      const input = document.querySelector('[data-testid="search"]');
      const box = input.parentElement;
      const count = () => Number(box.dataset.sent ?? '0');
      const before = count();
      input.value = 'node-000';
      input.dispatchEvent(new Event('input'));
      const first = count();
      input.value = 'node-0007';
      input.dispatchEvent(new Event('input'));
      return { before, first, second: count() };
    })()`);
    assert.equal(sent.first, sent.before + 1, 'a key after a pause is searched for at once');
    assert.equal(sent.second, sent.first, 'a key within the interval waits for it to end');
    // Then the box holds the hits of what it held when the interval ended, searched for once more.
    await page.waitForSelector('.search[data-q="node-0007"] [data-testid="search-hit"]', {
      timeout: 15_000,
    });
    const after = await page.evaluate<number>(
      `Number(document.querySelector('.search').dataset.sent)`,
    );
    assert.equal(after, sent.first + 1);
    const label = await page
      .locator('[data-testid="search-hit"][data-kind="host"] .search-label')
      .first()
      .textContent();
    assert.equal(label, 'gpu-node-0007');
    // Enter while a search is in flight, then one more key before its answer (each answer held
    // back 300 ms here): the first hit of the whole of what was typed opens, not of what the box
    // held at Enter.
    const box = page.getByTestId('search');
    const searches = (url: URL): boolean => url.pathname === '/api/v1/search';
    await page.route(searches, async (route) => {
      await new Promise((r) => setTimeout(r, 300));
      await route.continue().catch(() => undefined); // aborted by the page meanwhile
    });
    try {
      await box.fill('node-004');
      await box.press('Enter');
      await box.press('2');
      await hashStartsWith(`#/host/${CLUSTER}/gpu-node-0042`);
    } finally {
      await page.unroute(searches);
    }
  });

  it('logs first paint, drill-down and search times (measured, not asserted)', async () => {
    const timing = await measureDashboard(url, undefined, {
      cluster: CLUSTER,
      browser,
      search: 'gpu-node-01',
    });
    console.log(`dashboard-scale: ${JSON.stringify(timing)}`);
    assert.ok(timing.firstPaintMs > 0 && timing.drillMs > 0 && timing.searchMs > 0);
  });
});
