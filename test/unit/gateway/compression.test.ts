import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import Fastify, { type FastifyInstance } from 'fastify';
import { acceptedEncoding, registerCompression } from '../../../src/gateway/compression.js';
import {
  LatestBodies,
  latestJson,
  type CacheResult,
} from '../../../src/gateway/routes/latest-bodies.js';
import type { Encoding } from '../../../src/gateway/compression.js';
import type { LatestValue } from '../../../src/store/reader.js';

const BIG = JSON.stringify({
  rows: Array.from({ length: 200 }, (_, i) => ({ i, name: `row ${i}` })),
});

async function app(): Promise<FastifyInstance> {
  const a = Fastify();
  await registerCompression(a);
  a.get('/json', async (req, reply) =>
    reply.header('x-accepted', acceptedEncoding(req)).type('application/json').send(BIG),
  );
  a.get('/events', async (_req, reply) => reply.type('text/event-stream').send(`data: ${BIG}\n\n`));
  a.get('/small', async () => ({ ok: true }));
  return a;
}

describe('answer compression', () => {
  it('chooses the encoding the plugin chooses, for every Accept-Encoding', async () => {
    const a = await app();
    try {
      for (const accept of [
        undefined,
        '',
        'gzip',
        'br',
        'gzip, deflate, br, zstd',
        'gzip;q=0.8, br;q=0.9',
        'br;q=0.1, gzip;q=0.9',
        'br;q=0',
        'gzip;q=0, br;q=0',
        'identity',
        '*',
        '*;q=0',
        'x-gzip',
        'GZIP',
        'deflate',
        'zstd',
        'br;q=garbage, gzip',
      ]) {
        const res = await a.inject({
          url: '/json',
          headers: accept === undefined ? {} : { 'accept-encoding': accept },
        });
        assert.equal(res.statusCode, 200);
        const chosen = res.headers['content-encoding'] ?? 'identity';
        assert.equal(res.headers['x-accepted'], chosen, `Accept-Encoding: ${String(accept)}`);
        const body =
          chosen === 'gzip'
            ? gunzipSync(res.rawPayload)
            : chosen === 'br'
              ? brotliDecompressSync(res.rawPayload)
              : res.rawPayload;
        assert.equal(body.toString(), BIG);
      }
      const none = await a.inject({
        url: '/json',
        headers: { 'accept-encoding': 'gzip', 'x-no-compression': '1' },
      });
      assert.equal(none.headers['content-encoding'], undefined);
      assert.equal(none.headers['x-accepted'], 'identity');
    } finally {
      await a.close();
    }
  });

  it('never compresses text/event-stream nor answers under 1 KB', async () => {
    const a = await app();
    try {
      const events = await a.inject({ url: '/events', headers: { 'accept-encoding': 'gzip, br' } });
      assert.equal(events.headers['content-encoding'], undefined);
      assert.equal(events.body, `data: ${BIG}\n\n`);
      const small = await a.inject({ url: '/small', headers: { 'accept-encoding': 'gzip, br' } });
      assert.equal(small.headers['content-encoding'], undefined);
      assert.deepEqual(small.json(), { ok: true });
    } finally {
      await a.close();
    }
  });
});

/** `n` latest values of GPUs of one host (~200 bytes of JSON each), new objects. */
function values(n: number, value = 1): LatestValue[] {
  return Array.from({ length: n }, (_, i) => ({
    cluster_id: 'c',
    hostname: 'h',
    gpu_id: i,
    uuid: `GPU-${i}`,
    metric: 'DCGM_FI_DEV_GPU_TEMP',
    unit: 'C',
    timestamp: 1_752_871_354_000,
    value,
  }));
}

function counted(limits?: { maxEntries: number; maxBytes: number }): {
  bodies: LatestBodies;
  counts: Map<string, number>;
} {
  const counts = new Map<string, number>();
  const bodies = new LatestBodies(limits, (r: CacheResult, e: Encoding) =>
    counts.set(`${r} ${e}`, (counts.get(`${r} ${e}`) ?? 0) + 1),
  );
  return { bodies, counts };
}

describe('latest values: encoded answers', () => {
  it('builds an answer once per encoding, and again when a value changes', async () => {
    const { bodies, counts } = counted();
    const v = values(20);
    const json = latestJson(v) ?? '';
    assert.ok(Buffer.byteLength(json) > 1024);
    const id1 = await bodies.body('k', v, 'identity');
    const gz1 = await bodies.body('k', v, 'gzip');
    const br1 = await bodies.body('k', [...v], 'br');
    const gz2 = await bodies.body('k', [...v], 'gzip');
    assert.ok(id1 !== undefined && gz1 !== undefined && br1 !== undefined && gz2 !== undefined);
    assert.equal(id1.encoding, 'identity');
    assert.equal(String(id1.body), json);
    assert.equal(gz1.encoding, 'gzip');
    assert.equal(gunzipSync(gz1.body).toString(), json);
    assert.equal(br1.encoding, 'br');
    assert.equal(brotliDecompressSync(br1.body).toString(), json);
    assert.equal(gz2.body, gz1.body, 'the same buffer');
    assert.deepEqual(Object.fromEntries(counts), {
      'miss identity': 1,
      'miss gzip': 1,
      'miss br': 1,
      'hit gzip': 1,
    });
    // A new value (a new object in the same place): built again.
    const changed = [...v];
    changed[3] = values(20, 99)[3] as LatestValue;
    const gz3 = await bodies.body('k', changed, 'gzip');
    assert.equal(counts.get('miss gzip'), 2);
    assert.ok(gz3 !== undefined);
    assert.equal(gunzipSync(gz3.body).toString(), latestJson(changed));
    assert.match(gunzipSync(gz3.body).toString(), /"value":99/);
  });

  it('keeps at most maxEntries selections, the least recently used leaves first', async () => {
    const { bodies, counts } = counted({ maxEntries: 2, maxBytes: 1 << 20 });
    const a = values(20);
    const b = values(20);
    const c = values(20);
    await bodies.body('a', a, 'identity');
    await bodies.body('b', b, 'identity');
    await bodies.body('a', a, 'identity'); // a is now the most recent
    await bodies.body('c', c, 'identity'); // b leaves
    await bodies.body('a', a, 'identity');
    assert.equal(counts.get('hit identity'), 2);
    await bodies.body('b', b, 'identity');
    assert.equal(counts.get('miss identity'), 4);
  });

  it('keeps at most maxBytes; an answer over a quarter of it is not kept', async () => {
    const json = Buffer.byteLength(latestJson(values(20)) ?? '');
    const { bodies, counts } = counted({ maxEntries: 100, maxBytes: json * 4 });
    for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) await bodies.body(k, values(20), 'identity');
    assert.ok(bodies.size <= json * 4, `${bodies.size} bytes kept`);
    assert.ok(bodies.size >= json * 3);

    const big = values(100);
    const first = await bodies.body('big', big, 'gzip');
    // Sent as JSON for the compression plugin, built again each time.
    assert.equal(first?.encoding, 'identity');
    await bodies.body('big', big, 'gzip');
    assert.equal(counts.get('miss gzip'), 2);
    assert.equal(counts.get('hit gzip'), undefined);
  });

  it('does not keep answers under the compression threshold', async () => {
    const { bodies, counts } = counted();
    const v = values(2);
    const small = await bodies.body('k', v, 'gzip');
    assert.deepEqual(small, { body: latestJson(v), encoding: 'identity' });
    await bodies.body('k', v, 'gzip');
    assert.equal(counts.size, 0);
    assert.equal(bodies.size, 0);
  });

  it('leaves answers with a value JSON cannot carry to the schema', async () => {
    const { bodies } = counted();
    const v = values(20);
    v[5] = { ...(v[5] as LatestValue), value: Number.NaN };
    assert.equal(await bodies.body('k', v, 'gzip'), undefined);
  });
});
