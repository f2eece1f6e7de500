/**
 * How responsive the dashboard is on a big fleet, measured in Chromium with the Performance API
 * (for the bench, and logged by test/e2e/dashboard-scale.test.ts; nothing asserts timings):
 *
 * - firstPaintMs: from navigation start to the first heatmap data on screen (the page marks
 *   `nexus:heatmap-shown` when it shows the heatmap's data).
 * - drillMs: from a click on the first aggregated cell to its drill-down shown.
 * - searchMs: from typing the last character of `search` in the search box to its hits shown
 *   (includes the box's 200 ms debounce).
 *
 * The page runs in the CPU of the machine; `cpuThrottling` (Chrome DevTools' rate, 1 = none) slows
 * it down to model a smaller client.
 */
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from './nexus-up.js';

export interface DashboardTiming {
  readonly firstPaintMs: number;
  readonly drillMs: number;
  readonly searchMs: number;
}

export interface MeasureOptions {
  /** The cluster to open (default: the first, as the page picks it). */
  readonly cluster?: string;
  /** Typed into the search box (default: the first cell's first hostname, or "node"). */
  readonly search?: string;
  /** A browser to use (default: one launched and closed here). */
  readonly browser?: Browser;
  readonly cpuThrottling?: number;
  readonly timeoutMs?: number;
}

/** Time of the page's last `name` mark (performance.now() scale), or -1. */
async function lastMark(page: Page, name: string): Promise<number> {
  return page.evaluate(
    (n) => performance.getEntriesByName(n, 'mark').at(-1)?.startTime ?? -1,
    name,
  );
}

/** Waits until the page's `name` mark is later than `after`; its time. */
async function markAfter(
  page: Page,
  name: string,
  after: number,
  timeoutMs: number,
): Promise<number> {
  const handle = await page.waitForFunction(
    ([n, t]) => {
      const m = performance.getEntriesByName(n, 'mark').at(-1);
      return m !== undefined && m.startTime > t ? m.startTime : false;
    },
    [name, after] as const,
    { timeout: timeoutMs, polling: 'raf' },
  );
  return (await handle.jsonValue()) as number;
}

/** Opens the dashboard at `url` (with `token`, if the gateway wants one) and measures it. */
export async function measureDashboard(
  url: string,
  token: string | undefined,
  o: MeasureOptions = {},
): Promise<DashboardTiming> {
  const timeout = o.timeoutMs ?? 60_000;
  const browser = o.browser ?? (await launchChromium());
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  try {
    if (token !== undefined)
      await context.addInitScript(
        `sessionStorage.setItem('nexus.token', ${JSON.stringify(token)})`,
      );
    const page = await context.newPage();
    if (o.cpuThrottling !== undefined && o.cpuThrottling > 1) {
      const cdp = await context.newCDPSession(page);
      await cdp.send('Emulation.setCPUThrottlingRate', { rate: o.cpuThrottling });
    }
    const hash = o.cluster === undefined ? '#/' : `#/?cluster=${encodeURIComponent(o.cluster)}`;
    await page.goto(`${url.replace(/\/$/, '')}/${hash}`);
    const firstPaintMs = await markAfter(page, 'nexus:heatmap-shown', -1, timeout);

    // Drill into the first aggregated cell (a small fleet has none: drillMs is then 0).
    let drillMs = 0;
    const cell = page.locator('[data-testid="agg-cell"]').first();
    if ((await page.locator('[data-testid="agg-cell"]').count()) > 0) {
      const before = await lastMark(page, 'nexus:heatmap-shown');
      // Timed from the click event the page receives (Playwright's own checks before it clicks,
      // scrolling and waiting for the cell to be stable, are no part of the interaction).
      await page.evaluate(() => {
        const doc = (
          globalThis as unknown as {
            document: { addEventListener: (t: string, f: () => void, o: object) => void };
          }
        ).document;
        doc.addEventListener('click', () => performance.mark('nexus:bench-click'), {
          capture: true,
          once: true,
        });
      });
      await cell.click();
      const t0 = await markAfter(page, 'nexus:bench-click', -1, timeout);
      // The page marks again when the drilled heatmap is in (and at each refresh of the old one:
      // wait for the URL to say the drill first). A function, not a string: the page's CSP
      // forbids evaluating strings.
      await page.waitForFunction(
        () =>
          (globalThis as unknown as { location: { hash: string } }).location.hash.includes('in='),
        undefined,
        { timeout },
      );
      const shown = await markAfter(page, 'nexus:heatmap-shown', Math.max(before, t0), timeout);
      drillMs = shown - t0;
    }

    const query =
      o.search ??
      (await page.evaluate<string>(`(() => {
        const first = document.querySelector('[data-testid="agg-cell"] .agg-name');
        return (first?.textContent ?? 'node').replace(/…$/, '').slice(0, 12) || 'node';
      })()`));
    const box = page.locator('[data-testid="search"]');
    await page.keyboard.press('/');
    const before = await lastMark(page, 'nexus:search-shown');
    await box.fill(query.slice(0, -1));
    const t0 = await page.evaluate(() => performance.now());
    await box.press(query.slice(-1));
    const shown = await markAfter(page, 'nexus:search-shown', Math.max(before, t0), timeout);
    return { firstPaintMs, drillMs, searchMs: shown - t0 };
  } finally {
    await context.close();
    if (o.browser === undefined) await browser.close();
  }
}
