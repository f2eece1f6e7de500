import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run, spawnNexus } from '../helpers/child.js';
import { startEtcd, uniqueCluster, type EtcdServer } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { freePort } from '../helpers/ports.js';
import { drain, etcdQueue, naturalKey, recordsOf, TEST_PREFIX } from '../helpers/queues.js';
import { SAMPLE } from '../helpers/sample.js';
import { envelope } from '../conformance/queue-suite.js';

/** These tests stop and restart etcd (same data directory, same port), so they have their own. */
let etcd: EtcdServer;
const dir = mkdtempSync(join(tmpdir(), 'nexus-streamer-outage-'));
before(async () => {
  etcd = await startEtcd();
});
after(async () => {
  await etcd.destroy();
  rmSync(dir, { recursive: true, force: true });
});

const SAMPLE_RECORDS = 2470;

function streamerEnv(cluster: string, metricsPort: number): Record<string, string> {
  return {
    ETCD_ENDPOINTS: etcd.endpoint,
    ETCD_TIMEOUT: '1s',
    // The session lease holding the stream outlives a short outage only: with 2 s, an outage of
    // several seconds loses it (as tens of seconds would with the default 10 s).
    LEASE_TTL: '2s',
    CLUSTER_ID: cluster,
    MESSAGE_QUEUE_PREFIX: TEST_PREFIX,
    LOOP_MODE: 'false',
    // About 25 seconds of publishing: the outage lands in the middle of the file.
    BATCH_SIZE: '5',
    STREAM_INTERVAL: '50ms',
    PUBLISH_CONCURRENCY: '4',
    METRICS_PORT: String(metricsPort),
    LOG_LEVEL: 'info',
    PROGRESS: 'off',
    NEXUS_DATA_DIR: dir,
  };
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

/** The child's exit, or a failure naming what it printed if it has not exited in time. */
async function exitWithin(
  child: ChildProcess,
  exited: ReturnType<typeof run>,
  ms: number,
): ReturnType<typeof run> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const first = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (first !== 'timeout') return first;
  child.kill('SIGKILL');
  const res = await exited;
  assert.fail(
    `the streamer had not finished ${ms} ms after etcd returned: ${res.stdout.slice(-3000)}`,
  );
}

async function readyz(port: number): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  const body = (await res.json()) as { reasons?: string[] };
  return { status: res.status, reasons: body.reasons ?? [] };
}

async function metrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** The JSON log lines of a run with this message. */
function logLines(stdout: string, msg: RegExp): { level: string; msg: string }[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string })
    .filter((l) => msg.test(l.msg));
}

describe('streamer: etcd outages are a wait, never an exit', () => {
  it('etcd stopped for several seconds mid-file and restarted: the streamer waits, reports not ready, carries on and publishes every record exactly once', async () => {
    const cluster = uniqueCluster('etcd-down');
    const port = await freePort();
    const child = spawnNexus(['streamer', '--csv', SAMPLE], streamerEnv(cluster, port));
    const exited = run(child);
    const queue = etcdQueue(etcd.endpoint, cluster);
    assert.ok(
      await until(async () => (await queue.depth()) >= 20, 30_000),
      'the streamer did not start publishing',
    );
    assert.equal((await readyz(port)).status, 200);
    await etcd.stop();
    // Down long enough for the client's circuit breaker to open and every request to fail fast.
    // Not ready, and saying why in the streamer's own words (not only the probe's).
    const notReady = await until(async () => {
      const r = await readyz(port);
      return r.status === 503 && r.reasons.some((x) => /^etcd unavailable for \d+ s/.test(x));
    }, 10_000);
    const during = await readyz(port);
    const duringMetrics = await metrics(port);
    await new Promise((r) => setTimeout(r, 8000));
    const aliveAfterOutage = child.exitCode === null;
    await etcd.start();
    const readyAgain = await until(async () => (await readyz(port)).status === 200, 20_000);
    const exit = await exitWithin(child, exited, 90_000);
    assert.ok(aliveAfterOutage, `the streamer exited while etcd was down: ${exit.stdout}`);
    assert.ok(notReady, '/readyz stayed 200 while etcd was down');
    assert.ok(
      during.reasons.some((r) => /etcd/.test(r)),
      `no etcd reason: ${during.reasons.join('; ')}`,
    );
    assert.ok(readyAgain, '/readyz did not return to 200 after etcd came back');
    assert.equal(exit.code, 0, exit.stdout + exit.stderr);
    assert.match(exit.stdout, new RegExp(`summary: ${SAMPLE_RECORDS} records published`));
    // Logged once when the outage began (warn) and once when it ended (info).
    const down = logLines(exit.stdout, /^etcd unavailable/);
    const back = logLines(exit.stdout, /^etcd available again/);
    assert.equal(down.length, 1, JSON.stringify(down));
    assert.equal(down[0]?.level, 'warn');
    assert.equal(back.length, 1, JSON.stringify(back));
    assert.equal(back[0]?.level, 'info');
    const got = recordsOf(await drain(queue));
    assert.equal(got.length, SAMPLE_RECORDS);
    assert.equal(new Set(got.map(naturalKey)).size, SAMPLE_RECORDS);
    assert.equal(metricSum(duringMetrics, 'nexus_ready'), 0);
    assert.equal(metricSum(duringMetrics, 'nexus_streamer_queue_unavailable'), 1);
    assert.ok((metricSum(duringMetrics, 'nexus_etcd_errors_total') ?? 0) > 0);
    await queue.close();
  });

  it('started while etcd is down: the streamer waits for it, then publishes the file exactly once', async () => {
    const cluster = uniqueCluster('etcd-late');
    const port = await freePort();
    await etcd.stop();
    const child = spawnNexus(['streamer', '--csv', SAMPLE], {
      ...streamerEnv(cluster, port),
      BATCH_SIZE: '100',
      STREAM_INTERVAL: '0',
    });
    const exited = run(child);
    const notReady = await until(async () => (await readyz(port)).status === 503, 15_000);
    await new Promise((r) => setTimeout(r, 4000));
    const aliveWhileDown = child.exitCode === null;
    await etcd.start();
    const exit = await exitWithin(child, exited, 60_000);
    assert.ok(aliveWhileDown, `the streamer exited while etcd was down: ${exit.stdout}`);
    assert.ok(notReady, '/readyz was not 503 while etcd was down');
    assert.equal(exit.code, 0, exit.stdout + exit.stderr);
    const queue = etcdQueue(etcd.endpoint, cluster);
    const got = recordsOf(await drain(queue));
    assert.equal(got.length, SAMPLE_RECORDS);
    assert.equal(new Set(got.map(naturalKey)).size, SAMPLE_RECORDS);
    await queue.close();
  });

  it('a second streamer on a stream another one holds exits 1, saying why on stderr (its JSON log is on stdout)', async () => {
    const cluster = uniqueCluster('owned');
    const first = spawnNexus(['streamer', '--csv', SAMPLE], streamerEnv(cluster, await freePort()));
    const firstDone = run(first);
    const queue = etcdQueue(etcd.endpoint, cluster);
    try {
      assert.ok(
        await until(async () => (await queue.depth()) >= 5, 30_000),
        'the first streamer did not start publishing',
      );
      const second = await run(
        spawnNexus(['streamer', '--csv', SAMPLE], streamerEnv(cluster, await freePort())),
      );
      assert.equal(second.code, 1, second.stdout);
      assert.match(second.stderr, /^nexus streamer: .+/m);
      assert.match(second.stderr, /stream/);
    } finally {
      first.kill('SIGTERM');
      await exitWithin(first, firstDone, 30_000);
      await queue.close();
    }
  });

  it('a stream whose session lease lapsed is taken back by its next write; a stream another streamer took is lost for good', async () => {
    const cluster = uniqueCluster('retake');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const other = etcdQueue(etcd.endpoint, cluster);
    const stream = await queue.openStream('retake', 'first');
    const ownerKey = queue.layout.streamOwner('retake');
    // What etcd does when the lease expires: the owner key goes.
    await queue.etcd.delete().key(ownerKey);
    const t1 = await stream.publish(stream.prepare(envelope(cluster)), 0, null, { batch: 0 });
    const owner = await queue.etcd.get(ownerKey).string();
    assert.match(owner ?? '', /"owner":"first"/);
    await queue.etcd.delete().key(ownerKey);
    await stream.writeMeta({ v: 1 });
    assert.deepEqual(await stream.readMeta(), { v: 1 });
    // Several lanes find the key gone at once (as after an outage): they all carry on, also
    // when one lane's write fails on the old fence after another lane has taken the stream back
    // (judged against its own fence, not the new one). Ten rounds: the interleavings vary.
    const tokens = new Map<number, string>();
    for (let round = 0; round < 10; round++) {
      await queue.etcd.delete().key(ownerKey);
      await Promise.all(
        [1, 2, 3, 4, 5, 6, 7].map(async (lane) => {
          const token = await stream.publish(
            stream.prepare(envelope(cluster)),
            lane,
            tokens.get(lane) ?? null,
            {
              batch: round,
            },
          );
          tokens.set(lane, token);
        }),
      );
    }
    // Now another streamer takes the stream while the first one's key is gone.
    await queue.etcd.delete().key(ownerKey);
    const second = await other.openStream('retake', 'second');
    await assert.rejects(
      stream.publish(stream.prepare(envelope(cluster)), 0, t1, { batch: 1 }),
      (err: unknown) => {
        const e = err as { code?: string; retryable?: boolean; message?: string };
        assert.equal(e.code, 'STREAM_OWNED');
        assert.equal(e.retryable, false);
        assert.match(e.message ?? '', /another streamer took it .*second/);
        return true;
      },
    );
    assert.equal(recordsOf(await drain(queue)).length, 1 + 7 * 10);
    await second.release();
    await other.close();
    await queue.close();
  });
  it("a lane whose write was fenced before another lane took the stream back writes again (not 'message already exists')", async () => {
    const cluster = uniqueCluster('refence');
    const queue = etcdQueue(etcd.endpoint, cluster);
    const stream = await queue.openStream('refence', 'first');
    const ownerKey = queue.layout.streamOwner('refence');
    const lane2 = queue.layout.streamLane('refence', 2);
    // The interleaving CI met once, made certain: lane 2's write, fenced with the lapsed owner
    // revision, reaches etcd only once lane 1 has taken the stream back.
    const kv = queue.etcd.kv;
    const txn = kv.txn.bind(kv);
    let retook: () => void = () => undefined;
    const takenBack = new Promise<void>((resolve) => (retook = resolve));
    let held = false;
    kv.txn = async (req) => {
      const puts = (req.success ?? []).map((op) => op.request_put?.key?.toString());
      if (puts.includes(lane2) && !held) {
        held = true;
        await takenBack;
      }
      const res = await txn(req);
      if (puts.includes(ownerKey) && res.succeeded) setImmediate(retook);
      return res;
    };
    try {
      await queue.etcd.delete().key(ownerKey);
      const [t1, t2] = await Promise.all([
        stream.publish(stream.prepare(envelope(cluster)), 1, null, { batch: 1 }),
        stream.publish(stream.prepare(envelope(cluster)), 2, null, { batch: 1 }),
      ]);
      assert.ok(held);
      assert.notEqual(t1, t2);
      assert.equal(recordsOf(await drain(queue)).length, 2);
    } finally {
      kv.txn = txn;
      await queue.close();
    }
  });
});
