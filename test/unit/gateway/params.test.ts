import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NexusError } from '../../../src/core/errors.js';
import { FIRST_INSTANT, LAST_INSTANT, parseInstant } from '../../../src/gateway/params.js';

const NOW = Date.UTC(2025, 6, 18, 20, 42, 34); // 2025-07-18T20:42:34Z

/** The 400 parseInstant throws for `text`, as its message. */
function refusal(text: string, name = 'from'): string {
  try {
    parseInstant(name, text, NOW);
  } catch (err) {
    assert.ok(err instanceof NexusError, String(err));
    assert.equal(err.code, 'BAD_REQUEST');
    return err.message;
  }
  assert.fail(`${name}=${text} was accepted`);
}

const at = (text: string): string => new Date(parseInstant('from', text, NOW)).toISOString();

describe('parseInstant: RFC 3339 across years 1 to 9999', () => {
  it('reads years 1 to 99 as written, not as 1901 to 1999', () => {
    assert.equal(at('0001-01-01T00:00:00Z'), '0001-01-01T00:00:00.000Z');
    assert.equal(parseInstant('from', '0001-01-01T00:00:00Z', NOW), FIRST_INSTANT);
    assert.equal(at('0050-01-01T00:00:00Z'), '0050-01-01T00:00:00.000Z');
    assert.equal(at('0099-12-31T23:59:59.999Z'), '0099-12-31T23:59:59.999Z');
    assert.equal(at('0100-01-01T00:00:00Z'), '0100-01-01T00:00:00.000Z');
    assert.equal(at('9999-12-31T23:59:59.999Z'), '9999-12-31T23:59:59.999Z');
    assert.equal(parseInstant('to', '9999-12-31T23:59:59.999Z', NOW), LAST_INSTANT);
  });

  it('refuses year 0000 and years past 9999 as out of range, naming the parameter', () => {
    for (const text of [
      '0000-12-31T00:00:00Z',
      '0000-01-01T00:00:00Z',
      '0001-01-01T00:30:00+01:00', // 0000-12-31T23:30:00Z
      '9999-12-31T23:30:00-01:00', // 10000-01-01T00:30:00Z
      '10000-01-01T00:00:00Z',
      '99999-01-01T00:00:00Z',
    ]) {
      assert.equal(refusal(text), `from: "${text}" is out of range (years 1 to 9999)`, text);
    }
    assert.match(refusal('0000-12-31T00:00:00Z', 'to'), /^to: .* is out of range/);
  });
});

describe('parseInstant: bare numbers', () => {
  it('reads 12 or more digits as epoch milliseconds', () => {
    assert.equal(parseInstant('from', '1752871354000', NOW), 1752871354000);
    assert.equal(parseInstant('from', '1752871354123', NOW), 1752871354123);
    assert.equal(parseInstant('from', '100000000000', NOW), 100_000_000_000);
    assert.equal(parseInstant('from', '000000000000', NOW), 0);
    assert.equal(parseInstant('from', ' 253402300799999 ', NOW), LAST_INSTANT);
  });

  it('reads 9 to 11 digits as epoch seconds, with a fraction truncated to the millisecond', () => {
    assert.equal(at('1000000000'), '2001-09-09T01:46:40.000Z');
    assert.equal(parseInstant('from', '1752871354', NOW), 1752871354000);
    assert.equal(parseInstant('from', '1752871354.25', NOW), 1752871354250);
    assert.equal(parseInstant('from', '1752871354.1239', NOW), 1752871354123);
    assert.equal(at('100000000'), '1973-03-03T09:46:40.000Z');
    assert.equal(at('99999999999'), '5138-11-16T09:46:39.000Z');
  });

  it('meets at 1973-03-03T09:46:40Z: the smallest 9-digit seconds and 12-digit milliseconds', () => {
    assert.equal(parseInstant('from', '100000000', NOW), parseInstant('from', '100000000000', NOW));
  });

  it('refuses fewer than 9 digits, and numbers of neither form, saying what is accepted', () => {
    const accepted =
      'is not a time: a number is epoch milliseconds, a whole number of 12 or more digits (100000000000 is 1973-03-03T09:46:40Z), or epoch seconds, 9 to 11 digits with an optional fraction; write earlier instants in RFC 3339 (1970-01-01T00:00:00Z)';
    for (const text of [
      '0',
      '1000',
      '86400000',
      '99999999',
      '12345678.5',
      '1752871354000.5',
      '1752871354.',
      '.5',
      '1.2.3',
    ]) {
      assert.equal(refusal(text), `from: "${text}" ${accepted}`, text);
    }
  });

  it('refuses milliseconds past 9999 as out of range', () => {
    for (const text of ['253402300800000', '9999999999999999', '99999999999999999999']) {
      assert.equal(refusal(text, 'to'), `to: "${text}" is out of range (years 1 to 9999)`);
    }
    assert.match(
      refusal('1'.repeat(5000), 'to'),
      /^to: "1{64}\.\.\. \(5000 characters\)" is out of range/,
    );
  });
});

describe('parseInstant: now, relative and garbage', () => {
  it('reads now and relative times, stopping at year 1', () => {
    assert.equal(parseInstant('to', 'now', NOW), NOW);
    assert.equal(parseInstant('from', '-15m', NOW), NOW - 900_000);
    assert.equal(parseInstant('from', 'now-1h', NOW), NOW - 3_600_000);
    assert.equal(parseInstant('from', '-99999999d', NOW), FIRST_INSTANT);
  });

  it('keeps the general message for text that is no time', () => {
    assert.equal(
      refusal('yesterday'),
      'from: "yesterday" is not a time (RFC 3339 like 2025-07-18T20:42:34Z, epoch ms, now, or -15m)',
    );
    assert.match(refusal('1e9'), /is not a time \(RFC 3339/);
    assert.match(refusal('2025-02-30T00:00:00Z'), /is not a time \(RFC 3339/);
  });
});
