import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import { Admission, installAdmission } from '../../../src/gateway/admission.js';

/** Sends a GET and destroys the connection after `ms`, before any answer. */
function abandon(port: number, path: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path });
    req.on('error', () => resolve());
    req.end();
    setTimeout(() => {
      req.destroy();
      resolve();
    }, ms);
  });
}

describe('admission control', () => {
  it('a client that goes away while its request waits gives nothing up: the queue empties and the next request is served', async (t) => {
    const admission = new Admission({
      maxConcurrent: 1,
      maxQueued: 10,
      queueTimeoutMs: 60_000,
      maxPerAddress: 100,
    });
    const app = Fastify();
    installAdmission(app, admission);
    let release = (): void => {};
    const held = new Promise<void>((r) => (release = r));
    let holdingTurn = false;
    app.get('/api/hold', async () => {
      holdingTurn = true;
      await held;
      return 'held';
    });
    app.get('/api/ok', () => 'ok');
    await app.listen({ host: '127.0.0.1', port: 0 });
    t.after(() => app.close());
    const port = (app.server.address() as AddressInfo).port;
    const base = `http://127.0.0.1:${port}`;

    // One request holds the only turn; five more wait behind it and their clients go away.
    const holding = fetch(`${base}/api/hold`);
    while (!holdingTurn) await new Promise((r) => setTimeout(r, 10));
    await Promise.all([1, 2, 3, 4, 5].map(() => abandon(port, '/api/ok', 200)));
    for (let i = 0; i < 100 && admission.waiting > 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(admission.waiting, 0, 'requests of clients gone stayed in the queue');

    release();
    assert.equal(await (await holding).text(), 'held');
    // The only turn is free again: two requests in a row are served (not queued until a 503).
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${base}/api/ok`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
    }
  });

  it('a request whose client goes away while it waits leaves the queue and holds no turn', async () => {
    const admission = new Admission({
      maxConcurrent: 1,
      maxQueued: 10,
      queueTimeoutMs: 60_000,
      maxPerAddress: 100,
    });
    const gone = new AbortController();
    const first = await admission.enter('a');
    const second = admission.enter('b', gone.signal);
    assert.equal(admission.waiting, 1);
    gone.abort();
    await assert.rejects(second, /closed the connection/);
    assert.equal(admission.waiting, 0);
    first();
    // The turn is free: entering does not wait.
    const third = await Promise.race([
      admission.enter('c'),
      new Promise<'waited'>((r) => setTimeout(() => r('waited'), 1_000)),
    ]);
    assert.notEqual(third, 'waited');
    if (typeof third === 'function') third();
  });
});
