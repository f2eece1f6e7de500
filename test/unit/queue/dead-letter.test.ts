import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  DEAD_LETTER_MAX_BYTES,
  deadLetterValue,
  type DeadLetterRecord,
} from '../../../src/queue/etcd/dead-letter.js';
import { MAX_MESSAGE_BYTES } from '../../../src/queue/etcd/etcd-queue.js';

const ETCD_REQUEST_BYTES = 1.5 * 1024 * 1024;

describe('dead-letter values fit one etcd request', () => {
  it('keep a body of the largest message published byte for byte, even with the longest reason in its longest JSON', () => {
    const raw = randomBytes(MAX_MESSAGE_BYTES);
    // Control characters are escaped as \u00XX: the most bytes a reason of 1,000 characters takes.
    const { value, omitted } = deadLetterValue({
      reason: '\u0001'.repeat(5000),
      attempts: 3,
      deadAt: 1_752_871_354_000,
      consumer: 'collector-0123456789abcdef',
      envelope: undefined,
      raw,
    });
    assert.equal(omitted, undefined);
    assert.ok(Buffer.byteLength(value) <= DEAD_LETTER_MAX_BYTES, `${Buffer.byteLength(value)}`);
    assert.ok(DEAD_LETTER_MAX_BYTES + 4096 < ETCD_REQUEST_BYTES);
    const record = JSON.parse(value) as DeadLetterRecord;
    assert.ok(Buffer.from(record.raw ?? '', 'base64').equals(raw));
    assert.equal(record.reason, `${'\u0001'.repeat(1000)}... (4000 more characters)`);
  });

  it('describe a body too large to keep (size, SHA-256) instead of a write that would always fail', () => {
    // A message of an earlier release (up to 1.4 MB) or of another producer.
    const raw = randomBytes(1_400_000);
    const { value, omitted } = deadLetterValue({
      reason: 'message is not JSON: Unexpected token',
      attempts: 0,
      deadAt: 1_752_871_354_000,
      envelope: undefined,
      raw,
    });
    const sha256 = createHash('sha256').update(raw).digest('hex');
    assert.deepEqual(omitted, { field: 'raw', bytes: 1_400_000, sha256 });
    const record = JSON.parse(value) as DeadLetterRecord;
    assert.equal(record.raw, undefined);
    assert.deepEqual(record.omitted, omitted);
    assert.equal(
      record.reason,
      'message is not JSON: Unexpected token (its 1400000-byte body was too large to keep in one etcd request and was not kept)',
    );
    assert.ok(Buffer.byteLength(value) < 1024);
  });

  it('keep small dead letters as they were', () => {
    const { value, omitted } = deadLetterValue({
      reason: 'r',
      attempts: 1,
      deadAt: 2,
      envelope: undefined,
      raw: Buffer.from('not json'),
    });
    assert.equal(omitted, undefined);
    assert.deepEqual(JSON.parse(value), {
      reason: 'r',
      attempts: 1,
      deadAt: 2,
      raw: Buffer.from('not json').toString('base64'),
    });
  });
});
