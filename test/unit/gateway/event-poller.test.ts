/**
 * The gateway's poll of the events table (src/gateway/live/event-poller.ts): an event whose
 * transaction committed after a poll that would have read it is delivered by a later poll, once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import type { EventReads, GpuEvent, RecordedEvents } from '../../../src/store/event-reads.js';
import { EventPoller } from '../../../src/gateway/live/event-poller.js';

const event = (id: string): GpuEvent => ({
  id,
  cluster_id: 'c',
  type: 'xid',
  time: 0,
  ended_at: null,
  severity: 'critical',
  host_id: 'h',
  gpu_id: 0,
  uuid: null,
  code: 79,
  message: 'XID 79',
  details: {},
});

/** A table whose rows become visible when "committed", stamped earlier (like recorded_at). */
class FakeTable {
  now = 1_000_000;
  readonly rows: { id: string; recorded: number; visible: boolean }[] = [];
  reads = 0;
  recordedSince(since: number, afterId: string, limit: number): Promise<RecordedEvents> {
    this.reads++;
    const after = (r: { id: string; recorded: number }) =>
      r.recorded > since || (r.recorded === since && BigInt(r.id) > BigInt(afterId));
    const rows = this.rows
      .filter((r) => r.visible && after(r))
      .sort((a, b) => a.recorded - b.recorded || Number(BigInt(a.id) - BigInt(b.id)));
    return Promise.resolve({
      events: rows.slice(0, limit).map((r) => ({ event: event(r.id), recorded: r.recorded })),
      now: this.now,
      more: rows.length > limit,
    });
  }
}

function poller(table: FakeTable, pageSize = 1000): EventPoller {
  return new EventPoller(
    { events: table as unknown as EventReads },
    {
      intervalMs: 3_600_000, // polled by hand
      overlapMs: 60_000,
      pageSize,
      maxRemembered: 1000,
      logger: silentLogger(),
    },
  );
}

describe('event poller', () => {
  it('a poll still reading when the last listener leaves delivers nothing to the listeners that come next', async () => {
    const table = new FakeTable();
    table.now = Date.now();
    // Events recorded a while before anyone listens.
    table.rows.push({ id: '1', recorded: table.now - 30_000, visible: true });
    const p = poller(table);
    // The first listener's poll is held until released.
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const read = table.recordedSince.bind(table);
    table.recordedSince = async (...args) => {
      await held;
      return read(...args);
    };
    const first: string[] = [];
    const stopFirst = p.add((e) => first.push(e.id));
    const heldPoll = p.poll();
    stopFirst();
    // The next listener comes while that poll still reads; its own poll starts afresh.
    table.recordedSince = read;
    // Recorded after the next listener comes (stamped ahead of this clock).
    table.rows.push({ id: '2', recorded: Date.now() + 10_000, visible: true });
    table.now = Date.now() + 20_000;
    const next: string[] = [];
    const stopNext = p.add((e) => next.push(e.id));
    await p.poll();
    assert.deepEqual(next, ['2']);
    // Recorded meanwhile: the void poll, released now, would read it and hand it on.
    table.rows.push({ id: '3', recorded: Date.now() + 11_000, visible: true });
    release();
    await heldPoll;
    assert.deepEqual(first, []);
    assert.deepEqual(next, ['2']);
    // The next listener's own poll delivers it.
    await p.poll();
    assert.deepEqual(next, ['2', '3']);
    stopNext();
  });

  it('delivers an event committed late (stamped before the previous poll) once, and each other event once', async () => {
    const table = new FakeTable();
    table.now = Date.now();
    const p = poller(table);
    const got: string[] = [];
    const stop = p.add((e) => got.push(e.id));
    await p.poll();
    // Event 2 is stamped first but commits after event 3 and after the next poll.
    table.rows.push({ id: '2', recorded: table.now + 1000, visible: false });
    table.rows.push({ id: '3', recorded: table.now + 2000, visible: true });
    table.now += 5000;
    await p.poll();
    assert.deepEqual(got, ['3']);
    table.rows[0] = { id: '2', recorded: table.now - 4000, visible: true };
    table.now += 5000;
    await p.poll();
    await p.poll();
    assert.deepEqual(got, ['3', '2']);
    stop();
  });

  it('reads page after page when more were stored than a page holds', async () => {
    const table = new FakeTable();
    table.now = Date.now();
    const p = poller(table, 2);
    const got: string[] = [];
    const stop = p.add((e) => got.push(e.id));
    await p.poll();
    for (let i = 1; i <= 5; i++)
      table.rows.push({ id: String(i), recorded: table.now + 10, visible: true });
    table.now += 1000;
    await p.poll();
    assert.deepEqual(got, ['1', '2', '3', '4', '5']);
    stop();
  });
});
