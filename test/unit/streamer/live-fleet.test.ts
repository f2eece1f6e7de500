import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { NexusMetrics } from '../../../src/core/metrics.js';
import { MemoryQueue } from '../../../src/queue/memory/memory-queue.js';
import { DEFAULT_QUEUE_OPTIONS } from '../../../src/queue/options.js';
import { RecordPublisher } from '../../../src/queue/record-publisher.js';
import {
  DEFAULT_FLEET,
  generateFleetRecords,
  type FleetOptions,
} from '../../../src/streamer/sim/fleet.js';
import { LiveFleet } from '../../../src/streamer/sim/live.js';
import { drain, recordsOf } from '../../helpers/queues.js';

const FLEET: FleetOptions = { ...DEFAULT_FLEET, intervalMs: 1000, speed: 10 };

function live(nowOffsetMs: number, maxDepth = 0, maxCatchUp?: number) {
  const queue = new MemoryQueue({
    ...DEFAULT_QUEUE_OPTIONS,
    clusterId: 'c1',
    logger: silentLogger(),
  });
  const metrics = new NexusMetrics({ component: 'embedded', version: 'test' });
  const fleet = new LiveFleet({
    fleet: FLEET,
    publisher: new RecordPublisher({ queue, producer: 'test', batchSize: 250, maxDepth }),
    logger: silentLogger(),
    metrics,
    // The clock stands still: instants up to it are due, the next one is a real second away.
    now: () => FLEET.startMs + nowOffsetMs,
    ...(maxCatchUp === undefined ? {} : { maxCatchUp }),
  });
  return { queue, metrics, fleet };
}

async function instants(metrics: NexusMetrics, result: string): Promise<number | undefined> {
  const { values } = await metrics.simulatedInstants.get();
  return values.find((v) => v.labels.result === result)?.value;
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 5));
}

describe('LiveFleet: the simulated fleet published as time passes', () => {
  it('publishes each instant that is due, with the model’s timestamps, nothing ahead of the clock', async () => {
    const { queue, metrics, fleet } = live(3500);
    fleet.start();
    await until(() => fleet.stats.instants === 4);
    await fleet.stop();
    assert.deepEqual(fleet.stats, {
      instants: 4,
      published: 4,
      skipped: 0,
      records: generateFleetRecords({ ...FLEET, durationMs: 4000 }).length,
    });
    const got = recordsOf(await drain(queue, 50));
    const plain = (rs: readonly object[]) => rs.map((r) => JSON.stringify(r)).sort();
    assert.deepEqual(plain(got), plain(generateFleetRecords({ ...FLEET, durationMs: 4000 })));
    assert.equal(await instants(metrics, 'published'), 4);
  });

  it('after a stall, publishes the last maxCatchUp instants and skips older ones', async () => {
    const { fleet, metrics } = live(100_000, 0, 30);
    fleet.start();
    await until(() => fleet.stats.instants === 101);
    await fleet.stop();
    assert.equal(fleet.stats.published, 31);
    assert.equal(fleet.stats.skipped, 70);
    assert.equal(await instants(metrics, 'skipped_late'), 70);
  });

  it('skips instants while the queue is full (backpressure), and the model carries on', async () => {
    const { fleet, queue } = live(4500, 1);
    fleet.start();
    await until(() => fleet.stats.instants === 5);
    await fleet.stop();
    assert.equal(fleet.stats.published, 1);
    assert.equal(fleet.stats.skipped, 4);
    const got = recordsOf(await drain(queue, 50));
    assert.deepEqual([...new Set(got.map((r) => r.timestamp))], [FLEET.startMs]);
  });
});
