/**
 * The dashboard against a gateway that wants a token (AUTH_MODE=token, issue 16), in Chromium: a
 * `nexus up` with the embedded token store (NEXUS_DATA_DIR/tokens.json) and a read token from
 * `nexus token create --scope read --embedded`. The page asks for a token, refuses a wrong one,
 * shows the fleet and its live readings with the right one (sent on every API call, and to the
 * live socket as its subprotocol), keeps it across a reload (sessionStorage, not localStorage),
 * asks again when it is revoked while the page is open, and after "Sign out".
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { run, spawnNexus } from '../helpers/child.js';
import {
  ensureDashboardBuilt,
  launchChromium,
  startNexusUp,
  type NexusUp,
} from '../helpers/nexus-up.js';

const GPUS = 247;

/** `nexus token ARGS --embedded` on the data directory of the nexus up: its output. */
async function tokenCommand(dir: string, args: readonly string[]): Promise<string> {
  const res = await run(spawnNexus(['token', ...args, '--embedded'], { NEXUS_DATA_DIR: dir }));
  assert.equal(res.code, 0, res.stderr);
  return res.stdout;
}

/** A new read token, as `nexus token create` prints it on its last line. */
async function readToken(dir: string, name: string): Promise<string> {
  const out = await tokenCommand(dir, ['create', '--scope', 'read', '--name', name]);
  const token = out.trim().split('\n').at(-1) ?? '';
  assert.match(token, /^nexus_[A-Za-z0-9_-]{43}$/);
  return token;
}

describe('the dashboard with AUTH_MODE=token (browser, nexus up)', { timeout: 240_000 }, () => {
  let dir = '';
  let nexus: NexusUp | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let token = '';
  /** Authorization headers of the page's API requests, in order. */
  const sent: string[] = [];
  const errors: string[] = [];
  let liveReadings = 0;

  before(async () => {
    ensureDashboardBuilt();
    dir = mkdtempSync(join(tmpdir(), 'nexus-e2e-auth-'));
    // A revoked token is refused within a second (and live sockets closed within 5 s more).
    nexus = await startNexusUp(90_000, {
      AUTH_MODE: 'token',
      NEXUS_DATA_DIR: dir,
      TOKEN_CACHE_TTL: '1s',
    });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // The browser reports each 401 it receives; those are the point of this test.
      if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text());
    });
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/api/')) sent.push(r.headers().authorization ?? '');
    });
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => {
        if (typeof f.payload === 'string' && f.payload.includes('"type":"telemetry"'))
          liveReadings++;
      });
    });
  });

  after(async () => {
    await browser?.close();
    await nexus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks for a token: the API answers 401 without one', async () => {
    assert.ok(nexus !== undefined);
    const res = await fetch(`${nexus.url}/api/v1/clusters`);
    assert.equal(res.status, 401);
    await page.goto(`${nexus.url}/`);
    const prompt = page.getByTestId('token-prompt');
    await prompt.waitFor();
    assert.match((await prompt.textContent()) ?? '', /nexus token create --scope read/);
    assert.equal(await page.getByTestId('token-error').isVisible(), false);
    assert.equal(await page.getByTestId('sign-out').isVisible(), false);
    assert.equal(await page.getByTestId('stat-gpus').textContent(), '–');
    assert.ok(sent.length > 0 && sent.every((a) => a === ''), 'no token sent yet');
  });

  it('says a wrong token is refused, and asks again', async () => {
    await page.getByTestId('token-input').fill(`nexus_${'A'.repeat(43)}`);
    await page.getByTestId('token-submit').click();
    const error = page.getByTestId('token-error');
    await error.waitFor({ state: 'visible' });
    assert.match((await error.textContent()) ?? '', /Token refused/);
    assert.equal(await page.getByTestId('token-prompt').isVisible(), true);
    assert.equal(await page.getByTestId('token-input').inputValue(), '');
    assert.equal(await page.evaluate<string | null>('sessionStorage.getItem("nexus.token")'), null);
  });

  it('shows the fleet and its live readings with a read token from nexus token create', async () => {
    token = await readToken(dir, 'dashboard');
    const before = sent.length;
    await page.getByTestId('token-input').fill(token);
    await page.getByTestId('token-submit').click();
    await page.waitForSelector(`canvas.heatmap-canvas[data-gpus="${GPUS}"]`, { timeout: 60_000 });
    await page.waitForSelector(`[data-testid="stat-gpus"]:text-is("${GPUS}")`);
    assert.equal(await page.getByTestId('token-prompt').count(), 0, 'the form is gone');
    // Live readings over the socket, which the gateway opens only with the token.
    await page.waitForSelector('[data-testid="live-status"][data-state="live"]', {
      timeout: 20_000,
    });
    for (let i = 0; i < 300 && liveReadings === 0; i++) await page.waitForTimeout(100);
    assert.ok(liveReadings > 0, 'live readings arrive');
    const after = sent.slice(before);
    assert.ok(after.length > 0);
    assert.deepEqual([...new Set(after)], [`Bearer ${token}`], 'every API call carries the token');
    assert.equal(
      await page.evaluate<string | null>('sessionStorage.getItem("nexus.token")'),
      token,
    );
    assert.equal(await page.evaluate<string | null>('localStorage.getItem("nexus.token")'), null);
    assert.equal(await page.getByTestId('sign-out').isVisible(), true);
  });

  it('keeps the token across a reload of the tab', async () => {
    liveReadings = 0;
    const before = sent.length;
    await page.reload();
    await page.waitForSelector(`canvas.heatmap-canvas[data-gpus="${GPUS}"]`, { timeout: 60_000 });
    assert.equal(await page.getByTestId('token-prompt').count(), 0);
    assert.deepEqual([...new Set(sent.slice(before))], [`Bearer ${token}`]);
    await page.waitForSelector('[data-testid="live-status"][data-state="live"]', {
      timeout: 20_000,
    });
  });

  it('asks again, saying the token was refused, when it is revoked while the page is open', async () => {
    await tokenCommand(dir, ['revoke', 'dashboard']);
    // The live socket is closed (4401); the page asks the API, which answers 401.
    const error = page.getByTestId('token-error');
    await error.waitFor({ state: 'visible', timeout: 30_000 });
    assert.match((await error.textContent()) ?? '', /Token refused/);
    assert.equal(await page.evaluate<string | null>('sessionStorage.getItem("nexus.token")'), null);
    // While the form asks, the page's polls (the overview's every 5 s) wait for it: a request
    // would only meet the same 401.
    const asked = sent.length;
    await page.waitForTimeout(6_000);
    assert.deepEqual(sent.slice(asked), [], 'requests sent while the form asks for a token');
    token = await readToken(dir, 'dashboard-2');
    const before = sent.length;
    await page.getByTestId('token-input').fill(token);
    await page.getByTestId('token-submit').click();
    await page.getByTestId('token-prompt').waitFor({ state: 'detached' });
    await page.waitForSelector('[data-testid="live-status"][data-state="live"]', {
      timeout: 20_000,
    });
    assert.deepEqual([...new Set(sent.slice(before))], [`Bearer ${token}`]);
    assert.deepEqual(
      errors.filter((e) => e.includes('WebSocket')),
      [],
      'the live socket waits for the new token instead of retrying the refused one',
    );
  });

  it('asks again after Sign out', async () => {
    await page.getByTestId('sign-out').click();
    await page.getByTestId('token-prompt').waitFor();
    assert.equal(await page.getByTestId('token-error').isVisible(), false);
    assert.equal(await page.evaluate<string | null>('sessionStorage.getItem("nexus.token")'), null);
    assert.equal(await page.getByTestId('stat-gpus').textContent(), '–');
    assert.deepEqual(errors, [], 'no other error on the page');
  });
});
