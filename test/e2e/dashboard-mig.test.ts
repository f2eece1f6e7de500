/**
 * The GPU page of a MIG-partitioned GPU in Chromium: nexus up scrapes a fixture dcgm-exporter whose
 * GPU 1 is reported only by its two MIG instances (test/fixtures/dcgm-exporter/mig-node.prom). The
 * page lists the instances under the GPU (profile, utilisation from GR_ENGINE_ACTIVE, pod), opens
 * on the first instance's charts, and draws another instance's or the whole GPU's when picked.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { startFixtureExporter, type FixtureExporter } from '../helpers/dcgm-exporter.js';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../helpers/nexus-up.js';

const ENGINE = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE';

describe(
  'dashboard: MIG instances on the GPU page (browser, nexus up)',
  { timeout: 240_000 },
  () => {
    let exporter: FixtureExporter | undefined;
    let nexus: NexusUp | undefined;
    let browser: Browser | undefined;
    let page: Page;

    before(async () => {
      ensureDashboardBuilt();
      exporter = await startFixtureExporter({ file: 'mig-node.prom' });
      nexus = await startNexusUp(90_000, {
        SCRAPE_TARGETS: exporter.target,
        SCRAPE_INTERVAL: '1s',
      });
      browser = await launchChromium();
      page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    });

    after(async () => {
      await browser?.close();
      await nexus?.stop();
      await exporter?.close();
    });

    it('lists the instances under GPU 1 with profile, utilisation and pod, and opens on instance 1', async () => {
      assert.ok(nexus !== undefined);
      // Until both instances' engine-activity readings are servable, the page would rightly show
      // no utilisation (a metric first stored after the gateway cached the metric list is in
      // `latest` a few seconds later): wait for the API to know them, then open the page.
      const url = `${nexus.url}/api/v1/clusters/local-cluster/hosts/mig-node-1/gpus/1`;
      for (let i = 0; i < 300; i++) {
        const res = await fetch(url);
        const body = res.ok
          ? ((await res.json()) as { mig_instances?: { utilization_percent?: unknown }[] })
          : {};
        const known = (body.mig_instances ?? []).filter(
          (m) => typeof m.utilization_percent === 'number',
        );
        if (known.length === 2) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      await page.goto(`${nexus.url}/#/gpu/local-cluster/mig-node-1/1`);
      await page.getByTestId('page-gpu').waitFor();
      await page.waitForSelector('[data-testid="mig-row"][data-instance="2"]', { timeout: 60_000 });
      const texts = (testId: string): Promise<string[]> =>
        page.locator(`[data-testid="mig-row"] [data-testid="${testId}"]`).allTextContents();
      assert.deepEqual(await texts('mig-profile'), ['3g.40gb', '3g.40gb']);
      assert.deepEqual(await texts('mig-util'), ['62.5%', '25%']);
      assert.deepEqual(await texts('mig-pod'), ['serving/infer-a', '–']);
      // The GPU has no series of its own: the page draws its first instance's.
      await page.waitForSelector('[data-testid="page-gpu"][data-instance="1"]');
      assert.equal(
        (await page.getByTestId('chart-target').textContent())?.trim(),
        'Charts of MIG instance 1 (3g.40gb)',
      );
      await page.waitForSelector(`[data-testid="chart"][data-metric="${ENGINE}"]`, {
        timeout: 30_000,
      });
      await page.waitForSelector('[data-testid="chart"][data-metric="DCGM_FI_DEV_FB_USED"]');
      const chart = page.locator('[data-testid="chart"]');
      const charts: string[] = [];
      for (let k = 0; k < (await chart.count()); k++)
        charts.push((await chart.nth(k).getAttribute('data-metric')) ?? '');
      charts.sort();
      assert.deepEqual(charts, ['DCGM_FI_DEV_FB_USED', ENGINE]);
      assert.equal(
        await page.getAttribute('[data-testid="mig-charts"][data-instance="1"]', 'aria-pressed'),
        'true',
      );
    });

    it("draws instance 2's charts when picked, and the whole GPU's (none) after", async () => {
      await page.click('[data-testid="mig-charts"][data-instance="2"]');
      await page.waitForSelector('[data-testid="page-gpu"][data-instance="2"]');
      assert.equal(
        (await page.getByTestId('chart-target').textContent())?.trim(),
        'Charts of MIG instance 2 (3g.40gb)',
      );
      await page.waitForSelector(`[data-testid="chart"][data-metric="${ENGINE}"]`, {
        timeout: 30_000,
      });
      assert.equal(
        await page.getAttribute('[data-testid="mig-charts"][data-instance="1"]', 'aria-pressed'),
        'false',
      );

      await page.click('[data-testid="mig-charts"][data-instance="gpu"]');
      await page.waitForSelector('[data-testid="page-gpu"][data-instance="gpu"]');
      assert.equal(
        (await page.getByTestId('chart-target').textContent())?.trim(),
        'Charts of GPU 1',
      );
      await page.waitForSelector('.charts-state >> text=Waiting for data', { timeout: 30_000 });
      assert.equal(await page.locator('[data-testid="chart"]').count(), 0);
    });

    it('a whole GPU shows no MIG panel and draws its own charts', async () => {
      assert.ok(nexus !== undefined);
      await page.goto(`${nexus.url}/#/gpu/local-cluster/mig-node-1/0`);
      await page.waitForSelector('[data-testid="chart"][data-metric="DCGM_FI_DEV_GPU_UTIL"]', {
        timeout: 30_000,
      });
      assert.equal(await page.locator('[data-testid="mig-row"]').count(), 0);
      // The page says which charts it draws once the GPU's details are in, which can come after
      // its first chart (ci61 read the attribute before): waited for, not read at once.
      await page.waitForSelector('[data-testid="page-gpu"][data-instance="gpu"]', {
        timeout: 30_000,
      });
    });
  },
);
