/**
 * How responsive the dashboard is on a big fleet, measured in Chromium with the Performance API
 * (for the bench, and logged by test/e2e/dashboard-scale.test.ts; nothing asserts timings):
 *
 * - firstPaintMs: from navigation start to the first heatmap data on screen (the page marks
 *   `nexus:heatmap-shown` when it shows the heatmap's data).
 * - drillMs: from a click on the first aggregated cell to its drill-down shown.
 * - searchMs: from the key event of the last character of `search`, typed TYPIST_PAUSE_MS after
 *   the others (as someone typing), to its hits shown.
 * - searchBurstMs: the same, the last character typed right after the others (a fast burst, or a
 *   paste and a key): includes the wait for the box's interval between two searches
 *   (dashboard/src/search-box.ts, SEARCH_INTERVAL_MS).
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
  readonly searchBurstMs: number;
}

/**
 * The pause before the last key of the typed search: a brisk typist's time between two keys
 * (60 words a minute is 200 ms a key), longer than the box's interval between searches.
 */
export const TYPIST_PAUSE_MS = 150;

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

/**
 * Makes the page mark `name` when it next receives an event of `type` (caught before any handler
 * of the page), so an interaction is timed from the event, not from Playwright's call.
 */
async function markNextEvent(page: Page, type: string, name: string): Promise<void> {
  await page.evaluate(
    ([t, n]) => {
      const doc = (
        globalThis as unknown as {
          document: { addEventListener: (t: string, f: () => void, o: object) => void };
        }
      ).document;
      doc.addEventListener(t, () => performance.mark(n), { capture: true, once: true });
    },
    [type, name] as const,
  );
}

/**
 * Types `query` into the search box, all but its last character at once, then the last after
 * `pauseMs`; the time from that key's event in the page (not from Playwright's call, which adds
 * its own round trip) to the hits for the whole query shown.
 */
async function lastKeyToHits(
  page: Page,
  query: string,
  pauseMs: number,
  timeout: number,
): Promise<number> {
  const box = page.locator('[data-testid="search"]');
  // Start from an empty box, its (empty) answer shown (none yet, the first time). A box still
  // showing the hits of `query` (the measurement before this one) rightly sends no search when
  // `query` is typed again within the search interval of its last search: nothing new is shown
  // then, and the wait below timed out (CI, the burst search after the typed one: the box was
  // filled within 50 ms of the typed search, which the search's own time and the polling fill).
  await box.fill('');
  await page.waitForFunction(
    () =>
      ((
        globalThis as unknown as {
          document: { querySelector: (s: string) => { dataset: Record<string, string> } | null };
        }
      ).document.querySelector('.search')?.dataset.q ?? '') === '',
    undefined,
    { timeout },
  );
  await box.fill(query.slice(0, -1));
  if (pauseMs > 0) await page.waitForTimeout(pauseMs);
  // This key's mark, not one an earlier measurement left.
  const previous = await lastMark(page, 'nexus:bench-key');
  await markNextEvent(page, 'keydown', 'nexus:bench-key');
  await box.press(query.slice(-1));
  const t0 = await markAfter(page, 'nexus:bench-key', previous, timeout);
  // The hits of the whole query (not those of the characters before, which may still arrive).
  const handle = await page.waitForFunction(
    ([q, t]) => {
      const m = performance.getEntriesByName('nexus:search-shown', 'mark').at(-1);
      const shownFor = (
        globalThis as unknown as {
          document: { querySelector: (s: string) => { dataset: Record<string, string> } | null };
        }
      ).document.querySelector('.search')?.dataset.q;
      return m !== undefined && m.startTime > t && shownFor === q ? m.startTime : false;
    },
    [query, t0] as const,
    { timeout, polling: 'raf' },
  );
  return ((await handle.jsonValue()) as number) - t0;
}

/** Runs `fn`, naming `what` in its error (a timeout says which step of a page load it was). */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new Error(`${what}: ${message}`, { cause: err });
  }
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
    const firstPaintMs = await step('first paint', () =>
      markAfter(page, 'nexus:heatmap-shown', -1, timeout),
    );

    // Drill into the first aggregated cell (a small fleet has none: drillMs is then 0).
    let drillMs = 0;
    const cell = page.locator('[data-testid="agg-cell"]').first();
    if ((await page.locator('[data-testid="agg-cell"]').count()) > 0) {
      const before = await lastMark(page, 'nexus:heatmap-shown');
      // Timed from the click event the page receives (Playwright's own checks before it clicks,
      // scrolling and waiting for the cell to be stable, are no part of the interaction).
      await markNextEvent(page, 'click', 'nexus:bench-click');
      const t0 = await step('drill-down click', async () => {
        await cell.click();
        return markAfter(page, 'nexus:bench-click', -1, timeout);
      });
      // The page marks again when the drilled heatmap is in (and at each refresh of the old one:
      // wait for the URL to say the drill first). A function, not a string: the page's CSP
      // forbids evaluating strings.
      await step('drill-down address', () =>
        page.waitForFunction(
          () =>
            (globalThis as unknown as { location: { hash: string } }).location.hash.includes('in='),
          undefined,
          { timeout },
        ),
      );
      const shown = await step('drill-down heatmap', () =>
        markAfter(page, 'nexus:heatmap-shown', Math.max(before, t0), timeout),
      );
      drillMs = shown - t0;
    }

    const query =
      o.search ??
      (await page.evaluate<string>(`(() => {
        const first = document.querySelector('[data-testid="agg-cell"] .agg-name');
        return (first?.textContent ?? 'node').replace(/…$/, '').slice(0, 12) || 'node';
      })()`));
    await page.keyboard.press('/');
    const searchMs = await step(`search for "${query}", typed`, () =>
      lastKeyToHits(page, query, TYPIST_PAUSE_MS, timeout),
    );
    const searchBurstMs = await step(`search for "${query}", burst`, () =>
      lastKeyToHits(page, query, 0, timeout),
    );
    return { firstPaintMs, drillMs, searchMs, searchBurstMs };
  } finally {
    await context.close();
    if (o.browser === undefined) await browser.close();
  }
}
