import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import type { TelemetryRecord } from '../../../src/core/record.js';
import type { Envelope } from '../../../src/queue/envelope.js';
import type { LaneState, PreparedMessage, StreamHandle } from '../../../src/queue/types.js';
import { Batch, Lanes } from '../../../src/streamer/lanes.js';
import { Publisher } from '../../../src/streamer/publisher.js';
import type { UntilAnswered } from '../../../src/streamer/queue-outage.js';

const record = (i: number): TelemetryRecord => ({
  timestamp: 1_752_845_000_000 + i,
  metric: 'DCGM_FI_DEV_GPU_UTIL',
  gpu: 0,
  hostname: 'node-a',
  value: i,
  labels: {},
});

/** A stream whose publishes wait until the test answers them, and that keeps what it was given. */
function pendingStream(): {
  handle: StreamHandle;
  prepared: Envelope[];
  publishes: { message: PreparedMessage; answer: (token: string) => void }[];
} {
  const prepared: Envelope[] = [];
  const publishes: { message: PreparedMessage; answer: (token: string) => void }[] = [];
  const handle: StreamHandle = {
    streamId: 's',
    readMeta: () => Promise.resolve(undefined),
    writeMeta: () => Promise.resolve(),
    readLanes: () => Promise.resolve([]),
    prepare: (envelope: Envelope): PreparedMessage => {
      prepared.push(envelope);
      return { id: envelope.id, records: envelope.records.length };
    },
    publish: (message: PreparedMessage, _lane: number, _token: string | null, _s: LaneState) =>
      new Promise<string>((answer) => publishes.push({ message, answer })),
    reset: () => Promise.resolve(),
    release: () => Promise.resolve(),
  };
  return { handle, prepared, publishes };
}

function publisherOn(
  handle: StreamHandle,
  lanes: Lanes,
  untilAnswered: UntilAnswered = (_what, fn) => fn(),
): Publisher {
  return new Publisher({
    handle,
    lanes,
    runTag: 'run',
    streamId: 's',
    producerId: 'p',
    clusterId: 'c',
    csvFile: '/data/x.csv',
    timestampMode: 'original',
    untilAnswered,
    logger: silentLogger(),
  });
}

describe('streamer publisher', () => {
  it('a batch hands its records over once: a publish in flight holds the message, not the records', async () => {
    const { handle, prepared, publishes } = pendingStream();
    const lanes = new Lanes(2);
    const publisher = publisherOn(handle, lanes);
    const records = [record(1), record(2), record(3)];
    const batch = new Batch(0, 0, records, 2, 4, 300);
    assert.equal(batch.size, 3);
    const done = publisher.publish(batch);
    await new Promise((r) => setImmediate(r));
    // Encoded before the round trip: the batch no longer holds its records while it is in flight.
    assert.equal(publishes.length, 1);
    assert.deepEqual(prepared[0]?.records, records);
    assert.deepEqual(publishes[0]?.message, { id: '0-run', records: 3 });
    assert.throws(
      () => batch.take(),
      (err: { code?: string }) => err.code === 'INTERNAL',
    );
    assert.equal(lanes.contiguous, null);
    const inFlight = publishes.at(0);
    assert.ok(inFlight);
    inFlight.answer('7');
    await done;
    assert.deepEqual(lanes.contiguous, { batch: 0, loop: 0, offset: 300, line: 4 });
    assert.equal(lanes.token(0), '7');
  });

  it('a publish tried again sends the message prepared the first time, the same bytes under the same key', async () => {
    const { handle, prepared } = pendingStream();
    const sent: PreparedMessage[] = [];
    const flaky: StreamHandle = {
      ...handle,
      publish: (message: PreparedMessage) => {
        sent.push(message);
        return sent.length === 1
          ? Promise.reject(new NexusError('QUEUE_UNAVAILABLE', 'etcd went away'))
          : Promise.resolve('9');
      },
    };
    const lanes = new Lanes(1);
    // As the streamer's outage wait does: the same function again after a retryable error.
    const retrying: UntilAnswered = async (_what, fn) => {
      try {
        return await fn();
      } catch (err) {
        assert.ok(err instanceof NexusError && err.retryable);
        return fn();
      }
    };
    await publisherOn(flaky, lanes, retrying).publish(new Batch(0, 0, [record(1)], 2, 2, 100));
    assert.equal(prepared.length, 1);
    assert.equal(sent.length, 2);
    assert.equal(sent[0], sent[1]);
    assert.equal(lanes.token(0), '9');
  });

  it('a message over the queue limit fails the publish before anything is sent', async () => {
    const { handle, publishes } = pendingStream();
    const tooLarge: StreamHandle = {
      ...handle,
      prepare: () => {
        throw new NexusError(
          'QUEUE_MESSAGE_TOO_LARGE',
          'message of 2000000 bytes exceeds the limit',
        );
      },
    };
    const lanes = new Lanes(1);
    await assert.rejects(
      publisherOn(tooLarge, lanes).publish(new Batch(0, 0, [record(1)], 2, 2, 100)),
      (err: { code?: string }) => err.code === 'QUEUE_MESSAGE_TOO_LARGE',
    );
    assert.equal(publishes.length, 0);
    assert.equal(lanes.contiguous, null);
  });
});
