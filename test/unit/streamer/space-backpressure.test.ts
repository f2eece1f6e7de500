import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { Backpressure } from '../../../src/streamer/pacing.js';

/**
 * The streamer's backpressure on etcd's space (ETCD_QUOTA_BYTES): with a queue far below
 * MAX_QUEUE_DEPTH, a publish waits while etcd's database is at 80% of the quota or an alarm is
 * raised, and goes on once it is under 75% and the alarms are disarmed.
 */
describe('backpressure on etcd space', () => {
  const QUOTA = 1000;
  function setup(): {
    bp: Backpressure;
    etcd: { inUse: number; dbSize: number; alarms: string[] };
    abort: AbortController;
  } {
    const etcd = { inUse: 0, dbSize: 0, alarms: [] as string[] };
    const abort = new AbortController();
    const bp = new Backpressure({
      queue: { depth: () => Promise.resolve(0) },
      maxQueueDepth: 10_000,
      space: { quotaBytes: QUOTA, read: () => Promise.resolve({ ...etcd }) },
      untilAnswered: (_what, fn) => fn(),
      stopping: () => abort.signal.aborted,
      signal: abort.signal,
      logger: silentLogger(),
      onChange: () => undefined,
    });
    return { bp, etcd, abort };
  }

  async function settles(p: Promise<void>, ms: number): Promise<boolean> {
    return Promise.race([
      p.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
    ]);
  }

  it('waits at 80% of the quota (dbSize or in use) and resumes under 75%', async () => {
    const { bp, etcd } = setup();
    etcd.inUse = 500;
    etcd.dbSize = 820;
    const waiting = bp.wait();
    assert.equal(await settles(waiting, 1500), false, 'published at 82% of the quota');
    assert.ok(bp.paused?.includes('ETCD_QUOTA_BYTES'), bp.paused);
    assert.equal(bp.alarmed, undefined, 'space alone is not an alarm (still ready)');
    etcd.dbSize = 700; // compacted and defragmented
    assert.equal(await settles(waiting, 2500), true, 'still waiting under 75%');
    assert.equal(bp.paused, undefined);
  });

  it('waits while an alarm is raised, whatever the size, and says so for /readyz', async () => {
    const { bp, etcd } = setup();
    etcd.inUse = 100;
    etcd.dbSize = 100;
    etcd.alarms = ['NOSPACE'];
    const waiting = bp.wait();
    assert.equal(await settles(waiting, 1500), false, 'published during NOSPACE');
    const why = bp.alarmed ?? '';
    assert.ok(why.includes('NOSPACE'), why);
    assert.ok(why.includes('The NOSPACE alarm'), why);
    etcd.alarms = [];
    assert.equal(await settles(waiting, 2500), true, 'still waiting once disarmed');
    assert.equal(bp.alarmed, undefined);
  });

  it('does not wait below 80%', async () => {
    const { bp, etcd } = setup();
    etcd.inUse = 700;
    etcd.dbSize = 790;
    assert.equal(await settles(bp.wait(), 500), true);
  });
});
