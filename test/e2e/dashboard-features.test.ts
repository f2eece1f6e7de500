/**
 * The dashboard against a gateway without live push and without GraphQL (ENABLE_WEBSOCKET=false,
 * ENABLE_GRAPHQL=false): it says it is polling, not that it is offline, its data still refreshes,
 * and nothing advertises GraphQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../helpers/nexus-up.js';

describe(
  'dashboard without live push and GraphQL (browser, nexus up)',
  { timeout: 240_000 },
  () => {
    let nexus: NexusUp | undefined;
    let browser: Browser | undefined;
    let page: Page;
    const sockets: string[] = [];

    before(async () => {
      ensureDashboardBuilt();
      nexus = await startNexusUp(90_000, { ENABLE_WEBSOCKET: 'false', ENABLE_GRAPHQL: 'false' });
      browser = await launchChromium();
      page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      page.on('websocket', (ws) => sockets.push(ws.url()));
    });

    after(async () => {
      await browser?.close();
      await nexus?.stop();
    });

    it('the gateway says what it serves: no GraphQL, no live push', async () => {
      assert.ok(nexus !== undefined);
      const overview = (await (await fetch(`${nexus.url}/api/v1/overview`)).json()) as {
        features: unknown;
      };
      assert.deepEqual(overview.features, { graphql: false, websocket: false });
      assert.equal((await fetch(`${nexus.url}/graphql`, { method: 'POST' })).status, 404);
      // Its start-up lines name only what it serves.
      const up = nexus
        .logs()
        .split('\n')
        .filter((l) => l.includes('Nexus is up'));
      assert.ok(up.length > 0);
      for (const line of up) assert.doesNotMatch(line, /GraphQL/);
    });

    it('advertises no GraphQL anywhere on the page', async () => {
      assert.ok(nexus !== undefined);
      await page.goto(`${nexus.url}/`);
      await page.getByTestId('page-overview').waitFor();
      await page.waitForSelector('[data-testid="live-status"][data-state="polling"]');
      // The whole fleet is in (so that the GPU page below finds its GPU).
      await page.waitForSelector('canvas.heatmap-canvas[data-gpus="247"]', { timeout: 60_000 });
      assert.doesNotMatch(await page.content(), /graphql/i);
    });

    it('shows "Polling", not "Offline", and the GPU page still refreshes its readings', async () => {
      assert.ok(nexus !== undefined);
      await page.goto(`${nexus.url}/#/gpu/local-cluster/mtv5-dgx1-hgpu-031/0`);
      const status = page.getByTestId('live-status');
      await page.waitForSelector('[data-testid="live-status"][data-state="polling"]');
      assert.equal((await status.textContent())?.trim(), 'Polling');
      await page.waitForSelector('[data-testid="latest-time"][data-time]', { timeout: 30_000 });
      const latest = page.getByTestId('latest-time');
      const first = (await latest.getAttribute('data-time')) ?? '';
      // The sample loops every ~10 s with live timestamps; the page reloads every 5 s.
      await page.waitForSelector(
        `[data-testid="latest-time"][data-time]:not([data-time="${first}"])`,
        {
          timeout: 45_000,
        },
      );
      assert.ok(Date.parse((await latest.getAttribute('data-time')) ?? '') > Date.parse(first));
      assert.equal(await status.getAttribute('data-state'), 'polling');
      assert.doesNotMatch((await status.textContent()) ?? '', /Offline/);
      assert.deepEqual(sockets, [], 'the page opened no WebSocket');
    });
  },
);
