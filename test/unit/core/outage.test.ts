import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { Outage } from '../../../src/core/outage.js';

function recorder(): {
  lines: { level: string; msg: string }[];
  outage: Outage;
  changes: boolean[];
} {
  const lines: { level: string; msg: string }[] = [];
  const changes: boolean[] = [];
  const logger = createLogger({
    level: 'info',
    destination: {
      write: (s: string) => {
        lines.push(JSON.parse(s) as { level: string; msg: string });
      },
    },
  });
  const outage = new Outage({
    dependency: 'etcd',
    logger,
    backoff: { baseMs: 1, capMs: 2, jitter: 0 },
    onChange: (down) => changes.push(down),
  });
  return { lines, outage, changes };
}

const unavailable = (): NexusError =>
  new NexusError('QUEUE_UNAVAILABLE', 'etcd range failed: connection refused', {
    retryable: true,
  });

describe('Outage', () => {
  it('waits out retryable failures and logs the outage once, and its end once', async () => {
    const { lines, outage, changes } = recorder();
    let calls = 0;
    const failThenSucceed = async (n: number): Promise<string> => {
      calls++;
      if (calls <= n) throw unavailable();
      return 'ok';
    };
    // Two operations waiting on the same outage at once.
    const [a, b] = await Promise.all([
      outage.retry('publish', () => failThenSucceed(10)),
      outage.retry('read the queue depth', () => failThenSucceed(10)),
    ]);
    assert.equal(a, 'ok');
    assert.equal(b, 'ok');
    assert.equal(outage.down, false);
    assert.equal(outage.reason, undefined);
    assert.deepEqual(
      lines.map((l) => [l.level, l.msg.replace(/[\d.]+ s/, 'N s')]),
      [
        ['warn', 'etcd unavailable: waiting for it to come back (publish failed)'],
        ['info', 'etcd available again after N s; carrying on'],
      ],
    );
    assert.deepEqual(changes, [true, false]);
  });

  it('says why it waits while it waits', () => {
    const { outage } = recorder();
    outage.failed(unavailable(), 'publish');
    assert.equal(outage.down, true);
    assert.match(outage.reason ?? '', /^etcd unavailable for \d+ s: etcd range failed/);
    outage.recovered();
    assert.equal(outage.down, false);
  });

  it('throws what waiting cannot fix at once, without calling it an outage', async () => {
    const { outage, lines } = recorder();
    let calls = 0;
    await assert.rejects(
      outage.retry('publish', () => {
        calls++;
        return Promise.reject(new NexusError('QUEUE_MESSAGE_TOO_LARGE', 'too large'));
      }),
      { code: 'QUEUE_MESSAGE_TOO_LARGE' },
    );
    assert.equal(calls, 1);
    assert.equal(outage.down, false);
    assert.equal(lines.length, 0);
  });

  it('gives up when told to, with the last error', async () => {
    const { outage } = recorder();
    let calls = 0;
    await assert.rejects(
      outage.retry(
        'publish',
        () => {
          calls++;
          return Promise.reject(unavailable());
        },
        { giveUp: (attempt) => attempt >= 3 },
      ),
      { code: 'QUEUE_UNAVAILABLE' },
    );
    assert.equal(calls, 3);
    assert.equal(outage.down, true);
  });
});
