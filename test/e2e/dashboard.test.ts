/**
 * The dashboard in a real browser against a real `nexus up` (streamer, collector, gateway and PGlite
 * in one process, streaming the bundled sample: 31 hosts, 247 H100 GPUs, looped with live
 * timestamps). Needs Debian's Chromium (make setup-dev); no etcd or PostgreSQL.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { ROOT } from '../helpers/child.js';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../helpers/nexus-up.js';

const HOSTS = 31;
const GPUS = 247;
const RESULTS = join(ROOT, 'test-results');

interface HeatmapLayout {
  labelW: number;
  headerH: number;
  cellW: number;
  cellH: number;
  gap: number;
  groupGap: number;
  groups: number;
  rowsPerGroup: number;
  cols: number;
  rows: number;
}

/** The centre of a heatmap cell in page coordinates, from the geometry the canvas exposes. */
async function cellCentre(page: Page, row: number, col: number): Promise<{ x: number; y: number }> {
  const canvas = page.locator('canvas.heatmap-canvas');
  const raw = await canvas.getAttribute('data-layout');
  assert.ok(raw !== null, 'the heatmap exposes its layout');
  const l = JSON.parse(raw) as HeatmapLayout;
  const box = await canvas.boundingBox();
  assert.ok(box !== null, 'the heatmap canvas is on screen');
  const group = Math.floor(row / l.rowsPerGroup);
  const groupW = l.labelW + l.cols * (l.cellW + l.gap) + l.groupGap;
  return {
    x: box.x + group * groupW + l.labelW + col * (l.cellW + l.gap) + l.cellW / 2,
    y: box.y + l.headerH + (row % l.rowsPerGroup) * (l.cellH + l.gap) + l.cellH / 2,
  };
}

describe('dashboard (browser, nexus up)', { timeout: 240_000 }, () => {
  let nexus: NexusUp | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  let gpuUrl = '';

  before(async () => {
    mkdirSync(RESULTS, { recursive: true });
    ensureDashboardBuilt();
    nexus = await startNexusUp();
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
    await nexus?.stop();
  });

  it('shows every GPU of the fleet on the heatmap, drawn on the canvas', async () => {
    assert.ok(nexus !== undefined);
    await page.goto(`${nexus.url}/`);
    // The first loop of the sample may still be streaming when the page loads: live readings fill
    // in the rest.
    await page.waitForSelector(`canvas.heatmap-canvas[data-gpus="${GPUS}"]`, { timeout: 60_000 });
    const canvas = page.locator('canvas.heatmap-canvas');
    assert.equal(await canvas.getAttribute('data-hosts'), String(HOSTS));
    assert.equal(await canvas.getAttribute('data-gpus'), String(GPUS));
    const summary = page.getByTestId('heatmap-summary');
    assert.match((await summary.textContent()) ?? '', /247 GPUs on 31 hosts/);
    // The overview cards, from GET /api/v1/overview.
    await page.waitForSelector(`[data-testid="stat-hosts"]:text-is("${HOSTS}")`, {
      timeout: 20_000,
    });
    await page.waitForSelector(`[data-testid="stat-gpus"]:text-is("${GPUS}")`, { timeout: 20_000 });
    assert.equal(await page.getByTestId('stat-collectors').textContent(), '1');
    // The cells are painted: count pixels unlike the background (the top-left corner). The
    // function runs in the page (a string: this file is type-checked without the DOM library).
    const painted = await page.evaluate<number>(`(() => {
      const c = document.querySelector('canvas.heatmap-canvas');
      const { data } = c.getContext('2d').getImageData(0, 0, c.width, c.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i] !== data[0] || data[i + 1] !== data[1] || data[i + 2] !== data[2]) n++;
      }
      return n;
    })()`);
    const l = JSON.parse((await canvas.getAttribute('data-layout')) ?? '{}') as HeatmapLayout;
    assert.ok(
      painted > GPUS * l.cellW * l.cellH * 0.5,
      `the heatmap canvas has ${painted} painted pixels, expected at least half of ${GPUS} cells`,
    );
    await page.screenshot({ path: join(RESULTS, 'overview.png') });
  });

  it('opens the GPU page of a clicked cell, with charts holding data', async () => {
    const { x, y } = await cellCentre(page, 4, 2);
    await page.mouse.move(x, y);
    const tooltip = page.getByTestId('heatmap-tooltip');
    await tooltip.waitFor({ state: 'visible' });
    const host = (await tooltip.locator('strong').first().textContent()) ?? '';
    assert.match(host, /^mtv5-dgx1-hgpu-\d+$/);
    assert.match((await tooltip.textContent()) ?? '', /GPU 2/);
    assert.match((await tooltip.textContent()) ?? '', /GPU utilisation: \d+ %/);
    await page.mouse.click(x, y);
    await page.waitForURL(`**/#/gpu/local-cluster/${host}/2`);
    gpuUrl = page.url();
    await page.getByTestId('page-gpu').waitFor();
    assert.match((await page.locator('.page-gpu h1').textContent()) ?? '', /^GPU 2/);
    // Every metric of the sample gets a chart; uPlot draws those with points.
    await page.waitForSelector(
      '[data-testid="chart"][data-points]:not([data-points="0"]) .uplot canvas',
      {
        timeout: 30_000,
      },
    );
    // One chart per metric of the sample; metrics not yet reported when the page loaded get theirs
    // from the live feed.
    await page.locator('[data-testid="chart"]').nth(9).waitFor({ timeout: 30_000 });
    const charts: { metric: string; points: number; plotted: boolean }[] = [];
    for (const chart of await page.locator('[data-testid="chart"]').all()) {
      charts.push({
        metric: (await chart.getAttribute('data-metric')) ?? '',
        points: Number(await chart.getAttribute('data-points')),
        plotted: (await chart.locator('.uplot canvas').count()) > 0,
      });
    }
    assert.equal(charts.length, 10, `one chart per metric: ${JSON.stringify(charts)}`);
    const util = charts.find((c) => c.metric === 'DCGM_FI_DEV_GPU_UTIL');
    assert.ok(util !== undefined && util.points >= 1 && util.plotted, JSON.stringify(util));
    // The identity comes from GET /api/v1/clusters/{c}/hosts/{h}/gpus/{g}.
    const facts = (await page.locator('.facts').textContent()) ?? '';
    assert.match(facts, /NVIDIA H100 80GB HBM3/);
    assert.match(facts, /GPU-[0-9a-f-]{36}/);
    assert.match(facts, /nvidia2/);
    await page.screenshot({ path: join(RESULTS, 'gpu.png') });
  });

  it('shows new telemetry as it is committed', async () => {
    const latest = page.getByTestId('latest-time');
    await page.waitForSelector('[data-testid="latest-time"][data-time]');
    const first = (await latest.getAttribute('data-time')) ?? '';
    const firstText = (await latest.textContent()) ?? '';
    // The sample loops every ~10 s with live timestamps: this GPU reports again within seconds.
    await page.waitForSelector(
      `[data-testid="latest-time"][data-time]:not([data-time="${first}"])`,
      {
        timeout: 45_000,
      },
    );
    const next = (await latest.getAttribute('data-time')) ?? '';
    assert.ok(Date.parse(next) > Date.parse(first), `${next} is after ${first}`);
    assert.notEqual((await latest.textContent()) ?? '', firstText);
  });

  it('goes up with Escape, picks metrics with keys, and keeps the selection in the URL', async () => {
    await page.keyboard.press('Escape');
    await page.getByTestId('page-host').waitFor();
    assert.match(page.url(), /#\/host\/local-cluster\/mtv5-dgx1-hgpu-\d+$/);
    await page.waitForSelector('[data-testid="gpu-panels"] .gpu-card');
    assert.ok((await page.locator('.gpu-card').count()) >= 7);
    await page.keyboard.press('Escape');
    await page.getByTestId('page-overview').waitFor();
    await page.keyboard.press('2');
    await page.waitForURL(/metric=DCGM_FI_DEV_GPU_TEMP/);
    await page.waitForSelector(
      `canvas.heatmap-canvas[data-metric="DCGM_FI_DEV_GPU_TEMP"][data-gpus="${GPUS}"]`,
    );
    // Arrow keys move a cursor over the cells; Enter opens that GPU.
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowRight');
    const cursor = (await page.locator('canvas.heatmap-canvas').getAttribute('data-cursor')) ?? '';
    assert.match(cursor, /^mtv5-dgx1-hgpu-\d+\/\d$/);
    await page.keyboard.press('Enter');
    await page.waitForURL(`**/#/gpu/local-cluster/${cursor}`);
    // Back returns to the overview with its metric; a deep link opens a GPU with its range.
    await page.goBack();
    await page.getByTestId('page-overview').waitFor();
    assert.match(page.url(), /metric=DCGM_FI_DEV_GPU_TEMP/);
    await page.goto(`${gpuUrl}?range=15m`);
    await page.getByTestId('page-gpu').waitFor();
    await page.waitForSelector('.page-gpu[data-step="2s"] button.active[data-range="15m"]');
    // The theme toggle.
    const html = page.locator('html');
    const theme = await html.getAttribute('data-theme');
    await page.keyboard.press('t');
    assert.notEqual(await html.getAttribute('data-theme'), theme);
    await page.keyboard.press('t');
  });

  it('says what is wrong instead of showing a blank page', async () => {
    assert.ok(nexus !== undefined);
    await page.goto(`${nexus.url}/#/gpu/local-cluster/no-such-host/0`);
    const error = page.getByTestId('notice-error');
    await error.waitFor();
    assert.match((await error.textContent()) ?? '', /not found/);
    assert.deepEqual(
      pageErrors.filter((e) => !e.includes('404')),
      [],
      'no errors in the page',
    );
  });

  it('serves Swagger UI at /swagger/index.html listing every operation of the OpenAPI document', async () => {
    assert.ok(nexus !== undefined && browser !== undefined);
    const doc = (await (await fetch(`${nexus.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const operations = Object.values(doc.paths).reduce((n, p) => n + Object.keys(p).length, 0);
    assert.ok(operations >= 15, `the document lists the API (${operations} operations)`);
    const swagger = await browser.newPage();
    const failed: string[] = [];
    swagger.on('response', (r) => {
      if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
    });
    try {
      for (const path of ['/swagger/index.html', '/swagger/']) {
        await swagger.goto(`${nexus.url}${path}`);
        await swagger.locator('.opblock').first().waitFor({ timeout: 30_000 });
        assert.equal(await swagger.locator('.opblock').count(), operations, path);
        assert.equal(await swagger.getByText('Failed to load API definition').count(), 0, path);
      }
      assert.deepEqual(failed, [], 'every file of the page loads');
    } finally {
      await swagger.close();
    }
  });
});
