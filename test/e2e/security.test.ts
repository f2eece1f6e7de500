/**
 * The gateway's pages in Chromium under its Content-Security-Policy, over HTTPS (issue 16): a
 * `nexus up` with a certificate of scripts/certs.sh (TLS_CERT_FILE, TLS_KEY_FILE); the dashboard
 * shows the fleet and receives live readings over wss://, Swagger UI lists every operation of
 * /openapi.json, GraphiQL runs a query and shows the answer, and the browser reports no violation
 * of the policy on any of them.
 *
 * Trust: headless Chromium on Linux takes its roots from an NSS database, which needs NSS's
 * certutil to write (not installed here). So the browser is told to accept the gateway's own
 * public key (--ignore-certificate-errors-spki-list, the SHA-256 of the certificate's key), and
 * nothing else: a browser without it refuses the page, as checked first. Node's clients check the
 * chain against the CA in test/integration/gateway-security.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
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

const GPUS = 247;

/** What the page's policy refused: `securitypolicyviolation` events and the console's reports. */
const WATCH_VIOLATIONS = `
  window.__violations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber);
  });
`;

interface Watched {
  readonly page: Page;
  /** Console errors and page errors. */
  readonly errors: string[];
  violations(): Promise<string[]>;
}

async function watchedPage(browser: Browser): Promise<Watched> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    // GraphiQL's page names no icon: the browser's own /favicon.ico is a 404 (not the policy).
    if (m.type() === 'error' && !m.location().url.endsWith('/favicon.ico')) errors.push(m.text());
  });
  await page.addInitScript(WATCH_VIOLATIONS);
  return {
    page,
    errors,
    violations: () => page.evaluate<string[]>('window.__violations'),
  };
}

/** GET over HTTPS trusting `ca`: status, headers and body. */
function httpsGet(
  url: string,
  ca: Buffer,
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    get(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    }).on('error', reject);
  });
}

describe(
  'the pages under the Content-Security-Policy, over HTTPS (browser)',
  { timeout: 240_000 },
  () => {
    let dir = '';
    let ca: Buffer;
    let spki = '';
    let nexus: NexusUp | undefined;
    let browser: Browser | undefined;
    let base = '';

    before(async () => {
      ensureDashboardBuilt();
      dir = mkdtempSync(join(tmpdir(), 'nexus-e2e-tls-'));
      execFileSync(join(ROOT, 'scripts', 'certs.sh'), [dir, 'gateway']);
      ca = readFileSync(join(dir, 'ca.crt'));
      const key = new X509Certificate(readFileSync(join(dir, 'gateway.crt'))).publicKey;
      spki = createHash('sha256')
        .update(key.export({ type: 'spki', format: 'der' }))
        .digest('base64');
      nexus = await startNexusUp(90_000, {
        TLS_CERT_FILE: join(dir, 'gateway.crt'),
        TLS_KEY_FILE: join(dir, 'gateway.key'),
      });
      base = nexus.url.replace(/^http:/, 'https:');
      browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki}`]);
    });

    after(async () => {
      await browser?.close();
      await nexus?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('is refused by a browser that does not trust the certificate', async () => {
      const plain = await launchChromium();
      try {
        const page = await plain.newPage();
        await assert.rejects(page.goto(`${base}/`), /ERR_CERT_AUTHORITY_INVALID/);
      } finally {
        await plain.close();
      }
    });

    it('serves the dashboard with its policy and HSTS', async () => {
      const res = await httpsGet(`${base}/`, ca);
      assert.equal(res.status, 200);
      assert.match(res.body, /<script type="module" src="\.\/assets\/app-/);
      assert.match(String(res.headers['content-security-policy']), /script-src 'self';/);
      assert.match(String(res.headers['content-security-policy']), /frame-ancestors 'none'/);
      assert.equal(res.headers['strict-transport-security'], 'max-age=31536000');
    });

    it('shows the fleet on the dashboard, with live readings over wss://, and no violation', async () => {
      assert.ok(browser !== undefined);
      const w = await watchedPage(browser);
      try {
        let liveReadings = 0;
        w.page.on('websocket', (ws) => {
          if (!ws.url().startsWith('wss://')) return;
          ws.on('framereceived', (f) => {
            if (typeof f.payload === 'string' && f.payload.includes('"type":"telemetry"'))
              liveReadings++;
          });
        });
        await w.page.goto(`${base}/`);
        await w.page.waitForSelector(`canvas.heatmap-canvas[data-gpus="${GPUS}"]`, {
          timeout: 60_000,
        });
        await w.page.waitForSelector(`[data-testid="stat-gpus"]:text-is("${GPUS}")`);
        await w.page.waitForSelector('[data-testid="live-status"][data-state="live"]', {
          timeout: 20_000,
        });
        // The sample loops every few seconds with live timestamps.
        for (let i = 0; i < 300 && liveReadings === 0; i++) await w.page.waitForTimeout(100);
        assert.ok(liveReadings > 0, 'live readings arrive over wss://');
        assert.deepEqual(await w.violations(), []);
        assert.deepEqual(w.errors, []);
      } finally {
        await w.page.close();
      }
    });

    it('lists every operation of the OpenAPI document in Swagger UI, with no violation', async () => {
      assert.ok(browser !== undefined);
      const doc = JSON.parse((await httpsGet(`${base}/openapi.json`, ca)).body) as {
        paths: Record<string, Record<string, unknown>>;
      };
      const operations = Object.values(doc.paths).reduce((n, p) => n + Object.keys(p).length, 0);
      assert.ok(operations >= 15, `the document lists the API (${operations} operations)`);
      const w = await watchedPage(browser);
      try {
        for (const path of ['/swagger/index.html', '/swagger/']) {
          await w.page.goto(`${base}${path}`);
          await w.page.locator('.opblock').first().waitFor({ timeout: 30_000 });
          assert.equal(await w.page.locator('.opblock').count(), operations, path);
          assert.match((await w.page.locator('.info .title').textContent()) ?? '', /Nexus API/);
          assert.deepEqual(await w.violations(), [], path);
        }
        assert.deepEqual(w.errors, []);
      } finally {
        await w.page.close();
      }
    });

    it('runs a query in GraphiQL and shows the answer, with no violation', async () => {
      assert.ok(browser !== undefined);
      const w = await watchedPage(browser);
      try {
        await w.page.goto(`${base}/graphql`);
        const run = w.page.locator('.graphiql-execute-button');
        await run.waitFor({ timeout: 30_000 });
        await run.click();
        const answer = w.page.locator('.graphiql-response');
        // (A locator, not waitForFunction: that evaluates a string, which this policy forbids.)
        await answer
          .filter({ hasText: '"cluster_id": "local-cluster"' })
          .waitFor({ timeout: 30_000 });
        assert.match((await answer.textContent()) ?? '', /"clusters"/);
        assert.deepEqual(await w.violations(), []);
        assert.deepEqual(w.errors, []);
      } finally {
        await w.page.close();
      }
    });
  },
);
