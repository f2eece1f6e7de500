/**
 * The fleet pages of the dashboard (issue 19) in Chromium against a real `nexus up` streaming the
 * bundled sample (31 hosts, 247 GPUs, looped with live timestamps): the multi-GPU panels of the
 * host page and the overview, with what they show checked against the API's own answers.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page, Response } from 'playwright-core';
import { ROOT } from '../helpers/child.js';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../helpers/nexus-up.js';

const CLUSTER = 'local-cluster';
const HOST = 'mtv5-dgx1-hgpu-031';
const GPUS = 247;
const RESULTS = join(ROOT, 'test-results');

interface SeriesAnswer {
  step: string;
  series: {
    host_id: string;
    gpu_id: number;
    metric: string;
    points: { timestamp: string; value: number }[];
  }[];
}

/** Milliseconds of a step as the API writes it (`15s`, `2m`, `1h`). */
function stepMs(step: string): number {
  const m = /^(\d+)([smh])$/.exec(step);
  assert.ok(m !== null, step);
  return Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
}

/** The sum of the GPUs' power per step, as the page should compute it: [time, watts][]. */
function totals(a: SeriesAnswer): [number, number][] {
  const by = new Map<number, number>();
  for (const s of a.series)
    for (const p of s.points) {
      const t = Date.parse(p.timestamp);
      by.set(t, (by.get(t) ?? 0) + p.value);
    }
  return [...by].sort((x, y) => x[0] - y[0]);
}

describe('dashboard fleet pages (browser, nexus up)', { timeout: 300_000 }, () => {
  let nexus: NexusUp | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const pageErrors: string[] = [];
  /** The answers of the series requests for power, newest last. */
  const powerAnswers: SeriesAnswer[] = [];

  before(async () => {
    mkdirSync(RESULTS, { recursive: true });
    ensureDashboardBuilt();
    nexus = await startNexusUp();
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 }, colorScheme: 'light' });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    page.on('response', (r: Response) => {
      const u = new URL(r.url());
      if (
        u.pathname === '/api/v1/telemetry' &&
        u.searchParams.get('metric') === 'DCGM_FI_DEV_POWER_USAGE' &&
        u.searchParams.has('step') &&
        r.ok()
      )
        void r.json().then((j: unknown) => powerAnswers.push(j as SeriesAnswer));
    });
  });

  after(async () => {
    await browser?.close();
    await nexus?.stop();
  });

  async function api<T>(path: string): Promise<T> {
    assert.ok(nexus !== undefined);
    const res = await fetch(`${nexus.url}${path}`);
    assert.equal(res.status, 200, path);
    return (await res.json()) as T;
  }

  it('host page: a line per GPU of the host on each panel, a legend with the GPU index, the range in the URL', async () => {
    assert.ok(nexus !== undefined);
    // The sample's first loop may still be streaming: wait until the host has its GPUs.
    let gpus: number[] = [];
    for (let i = 0; i < 60 && gpus.length < 8; i++) {
      const host = await api<{ gpus: { gpu_id: number }[] }>(
        `/api/v1/clusters/${CLUSTER}/hosts/${HOST}`,
      ).catch(() => ({ gpus: [] }));
      gpus = host.gpus.map((g) => g.gpu_id).sort((a, b) => a - b);
      if (gpus.length < 8) await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(gpus.length, 8, 'the host has 8 GPUs');
    await page.goto(`${nexus.url}/#/host/${CLUSTER}/${HOST}`);
    await page.waitForSelector('[data-testid="multi-gpu"][data-gpus="8"]', { timeout: 60_000 });
    const labels = gpus.map((g) => `GPU ${g}`).join(',');
    for (const key of ['util', 'temp', 'power']) {
      // Metrics the sample's first loop has not streamed yet come with the next reload (30 s).
      await page.waitForSelector(
        `[data-testid="multi-chart"][data-key="${key}"][data-series="8"]`,
        {
          timeout: 60_000,
        },
      );
      const chart = page.locator(`[data-testid="multi-chart"][data-key="${key}"]`);
      assert.equal(await chart.getAttribute('data-labels'), labels, key);
      await chart.locator('.uplot canvas').first().waitFor();
      // The legend names every GPU (and the time).
      assert.equal(await chart.locator('.u-legend .u-series').count(), 9, key);
    }
    // Hovering shows every GPU's value at that time.
    const over = page.locator('[data-testid="multi-chart"][data-key="power"] .u-over');
    const box = await over.boundingBox();
    assert.ok(box !== null);
    await page.mouse.move(box.x + box.width - 3, box.y + box.height / 2);
    const values = await page
      .locator('[data-testid="multi-chart"][data-key="power"] .u-legend .u-series .u-value')
      .allTextContents();
    assert.equal(values.length, 9);
    assert.ok(
      values.slice(1).some((v) => / W$/.test(v)),
      `hover shows the GPUs' values: ${values.join(' | ')}`,
    );
    await page.screenshot({ path: join(RESULTS, 'host-multi.png'), fullPage: true });
    // The range selector: 6h in the URL and a coarser step.
    await page.locator('[data-testid="multi-gpu"] button[data-range="6h"]').click();
    await page.waitForURL(/range=6h/);
    await page.waitForSelector('[data-testid="multi-gpu"][data-step="2m"]');
  });

  it('host page: total power and energy are the sum of the API series and its integral', async () => {
    // The page's last power answer is what it shows.
    await page.waitForSelector('[data-testid="stat-energy"][data-kwh]');
    const a = powerAnswers[powerAnswers.length - 1];
    assert.ok(a !== undefined && a.step === '2m');
    assert.ok(a.series.length === 8 && a.series.every((s) => s.host_id === HOST));
    const sums = totals(a);
    const kwh = sums.reduce((acc, [, w]) => acc + (w * stepMs(a.step)) / 3_600_000 / 1000, 0);
    const shown = Number(await page.getByTestId('stat-energy').getAttribute('data-kwh'));
    assert.ok(Math.abs(shown - kwh) < 1e-9, `energy ${shown} kWh, from the API ${kwh} kWh`);
    const last = sums[sums.length - 1];
    assert.ok(last !== undefined);
    const power = (await page.getByTestId('stat-power').textContent()) ?? '';
    assert.equal(power.replace(/[^\d.]/g, ''), String(Math.round(last[1])));
  });

  it('overview: beyond 64 GPUs the panels draw min, avg and max across the fleet, and say so', async () => {
    assert.ok(nexus !== undefined);
    await page.goto(`${nexus.url}/`);
    await page.waitForSelector('[data-testid="multi-gpu"][data-mode="bands"]', {
      timeout: 60_000,
    });
    const panel = page.getByTestId('multi-gpu');
    for (const key of ['util', 'temp', 'power']) {
      const chart = page.locator(`[data-testid="multi-chart"][data-key="${key}"]`);
      assert.equal(await chart.getAttribute('data-labels'), 'max,avg,min', key);
    }
    const gpus = Number(await panel.getAttribute('data-gpus'));
    assert.ok(gpus > 64 && gpus <= GPUS, `${gpus} GPUs`);
    assert.match(
      (await page.getByTestId('multi-mode').textContent()) ?? '',
      /GPUs: min, avg and max across GPUs/,
    );
    assert.equal(
      await page
        .locator('[data-testid="multi-chart"][data-key="total"]')
        .getAttribute('data-series'),
      '1',
    );
    await page.screenshot({ path: join(RESULTS, 'overview-multi.png'), fullPage: true });
    assert.deepEqual(pageErrors, [], 'no errors in the page');
  });
});
