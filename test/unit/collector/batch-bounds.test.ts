/**
 * The collector's check of every record (src/collector/batch.ts) on messages of the compact form,
 * whose label sets the decoder checks once per message instead of each reading's labels: a label
 * set out of bounds still has each of its readings refused with the reason recordProblem gives,
 * and a message of the expanded form is checked record by record.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBatch } from '../../../src/collector/batch.js';
import { recordProblem, type TelemetryRecord } from '../../../src/core/record.js';
import { labelsInBounds } from '../../../src/queue/compact.js';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../../../src/queue/envelope.js';
import type { Delivery } from '../../../src/queue/types.js';

const NOW = Date.UTC(2026, 11, 7, 12);

function reading(gpu: number, labels: Record<string, string>): TelemetryRecord {
  return {
    timestamp: NOW - 1000,
    metric: 'DCGM_FI_DEV_GPU_UTIL',
    gpu,
    hostname: 'node-1',
    uuid: `GPU-${gpu}`,
    value: 50,
    labels: { Hostname: 'node-1', UUID: `GPU-${gpu}`, gpu: String(gpu), ...labels },
  };
}

function envelopeOf(records: TelemetryRecord[]): Envelope {
  return { v: 1, id: 'b-1', producer: 'p', cluster: 'c', createdAt: NOW, attempt: 0, records };
}

const delivery = (envelope: Envelope): Delivery => ({
  id: 'm-1',
  envelope,
  attempt: 1,
  claimedAt: NOW,
});

/** What checkBatch refused of one message, as [index, reason]. */
function refused(envelope: Envelope): [number, string][] {
  const d = delivery(envelope);
  const batch = checkBatch([d], NOW);
  return (batch.refused.get(d) ?? []).map((r) => [r.index, r.reason]);
}

describe('checkBatch on compact messages', () => {
  it('says the labels of a compact message within bounds once its label sets are', () => {
    const e = envelopeOf([reading(0, { job: 'dcgm' }), reading(1, { job: 'dcgm' })]);
    const decoded = decodeEnvelope(encodeEnvelope(e));
    assert.equal(labelsInBounds(decoded.records), true);
    assert.deepEqual(refused(decoded), []);
    assert.equal(checkBatch([delivery(decoded)], NOW).records.length, 2);
    // The expanded form is checked record by record.
    assert.equal(labelsInBounds(decodeEnvelope(JSON.stringify(e)).records), false);
  });

  it('refuses each reading of a label set out of bounds, with recordProblem’s reason', () => {
    const cases: [string, Record<string, string>, RegExp][] = [
      ['a NUL in a value', { job: 'dc\u0000gm' }, /label job holds a NUL character/],
      ['a bad name', { 'bad name': 'x' }, /bad label name "bad name"/],
      ['a long value', { job: 'x'.repeat(1025) }, /label job longer than 1024 characters/],
      [
        'too many labels',
        Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, 'v'])),
        /more than 64 labels/,
      ],
    ];
    for (const [what, labels, reason] of cases) {
      const bad = reading(1, labels);
      const e = envelopeOf([reading(0, { job: 'dcgm' }), bad, reading(2, { job: 'dcgm' })]);
      const decoded = decodeEnvelope(encodeEnvelope(e));
      assert.equal(labelsInBounds(decoded.records), false, what);
      const out = refused(decoded);
      assert.deepEqual(
        out.map(([i]) => i),
        [1],
        what,
      );
      assert.match(out[0]?.[1] ?? '', reason, what);
      assert.equal(out[0]?.[1], `record out of bounds: ${recordProblem(bad, NOW) ?? ''}`, what);
    }
  });

  it('still checks the fields a label set’s labels take their values from', () => {
    // The label set is within bounds; the uuid it implies for UUID is not (a control character).
    const bad = { ...reading(1, {}), uuid: 'GPU-\u0007', labels: { UUID: 'GPU-\u0007' } };
    const decoded = decodeEnvelope(encodeEnvelope(envelopeOf([reading(0, {}), bad])));
    assert.equal(labelsInBounds(decoded.records), true);
    const out = refused(decoded);
    assert.deepEqual(
      out.map(([i]) => i),
      [1],
    );
    assert.match(out[0]?.[1] ?? '', /uuid holds a control character \(U\+0007\)/);
  });
});
