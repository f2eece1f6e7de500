import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatTimestamp,
  isDcgmSentinel,
  parseTimestamp,
  parseValue,
} from '../../../src/core/record.js';

const BASE = Date.UTC(2025, 6, 18, 20, 42, 34); // 2025-07-18T20:42:34Z

describe('parseTimestamp: RFC 3339', () => {
  it('parses the form of the real export', () => {
    assert.equal(parseTimestamp('2025-07-18T20:42:34Z'), BASE);
  });

  it('accepts lower-case z, no zone (UTC) and a space instead of T', () => {
    assert.equal(parseTimestamp('2025-07-18T20:42:34z'), BASE);
    assert.equal(parseTimestamp('2025-07-18T20:42:34'), BASE);
    assert.equal(parseTimestamp('2025-07-18 20:42:34'), BASE);
    assert.equal(parseTimestamp('2025-07-18 20:42:34Z'), BASE);
  });

  it('accepts minutes-only precision', () => {
    assert.equal(parseTimestamp('2025-07-18T20:42Z'), BASE - 34_000);
  });

  it('trims surrounding whitespace', () => {
    assert.equal(parseTimestamp('  2025-07-18T20:42:34Z \t'), BASE);
  });

  it('reads fractions of any length, truncated (never rounded) to the millisecond', () => {
    const cases: [string, number][] = [
      ['.1', 100],
      ['.12', 120],
      ['.123', 123],
      ['.1239', 123],
      ['.123456', 123],
      ['.123456789', 123],
      ['.999999999', 999],
      ['.000001', 0],
      [',5', 500],
    ];
    for (const [frac, ms] of cases) {
      assert.equal(parseTimestamp(`2025-07-18T20:42:34${frac}Z`), BASE + ms, frac);
    }
  });

  it('applies +hh:mm, -hhmm and +hh offsets', () => {
    assert.equal(parseTimestamp('2025-07-18T22:42:34+02:00'), BASE);
    assert.equal(parseTimestamp('2025-07-18T15:12:34-0530'), BASE);
    assert.equal(parseTimestamp('2025-07-19T01:42:34+05'), BASE);
    assert.equal(parseTimestamp('2025-07-18T20:42:34+00:00'), BASE);
    assert.equal(parseTimestamp('2025-07-18T20:42:34-00:00'), BASE);
    assert.equal(parseTimestamp('2025-07-18T21:12:34.250+00:30'), BASE + 250);
  });

  it('crosses day, month and year boundaries through the offset', () => {
    assert.equal(parseTimestamp('2025-01-01T01:00:00+02:00'), Date.UTC(2024, 11, 31, 23, 0, 0));
    assert.equal(parseTimestamp('2024-12-31T23:00:00-01:00'), Date.UTC(2025, 0, 1, 0, 0, 0));
  });

  it('accepts 29 February only in leap years', () => {
    assert.equal(parseTimestamp('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
    assert.equal(parseTimestamp('2000-02-29T00:00:00Z'), Date.UTC(2000, 1, 29));
    assert.equal(parseTimestamp('2025-02-29T00:00:00Z'), undefined);
    assert.equal(parseTimestamp('1900-02-29T00:00:00Z'), undefined);
  });

  it('reads years 0000 to 0099 as written (Date.UTC alone makes them 1900 to 1999)', () => {
    const cases: [string, string][] = [
      ['0000-01-01T00:00:00Z', '0000-01-01T00:00:00.000Z'],
      ['0000-12-31T00:00:00Z', '0000-12-31T00:00:00.000Z'],
      ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
      ['0050-01-01T00:00:00Z', '0050-01-01T00:00:00.000Z'],
      ['0099-12-31T23:59:59.999Z', '0099-12-31T23:59:59.999Z'],
      ['0100-01-01T00:00:00Z', '0100-01-01T00:00:00.000Z'],
      ['1999-12-31T23:59:59Z', '1999-12-31T23:59:59.000Z'],
      ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
      // Offsets carry across the edges of year 1 and year 100.
      ['0001-01-01T00:30:00+01:00', '0000-12-31T23:30:00.000Z'],
      ['0099-12-31T23:30:00-01:00', '0100-01-01T00:30:00.000Z'],
      ['0100-01-01T00:30:00+01:00', '0099-12-31T23:30:00.000Z'],
    ];
    for (const [text, iso] of cases) {
      const ms = parseTimestamp(text);
      assert.notEqual(ms, undefined, text);
      assert.equal(formatTimestamp(ms ?? Number.NaN), iso, text);
    }
    assert.equal(parseTimestamp('0001-01-01T00:00:00Z'), -62_135_596_800_000);
    assert.equal(parseTimestamp('9999-12-31T23:59:59.999Z'), 253_402_300_799_999);
  });

  it('round-trips every day of years 0 to 101 and 399 to 401', () => {
    for (const [from, to] of [
      [0, 101],
      [399, 401],
    ] as const) {
      const end = new Date(0).setUTCFullYear(to + 1, 0, 1);
      for (let ms = new Date(0).setUTCFullYear(from, 0, 1); ms < end; ms += 86_400_000 + 1_234) {
        const iso = formatTimestamp(ms);
        assert.equal(parseTimestamp(iso), ms, iso);
      }
    }
  });

  it('keeps the leap years of the proleptic Gregorian calendar in years 0 to 400', () => {
    // Year 0 and 4 are leap years, 100 is not (divisible by 100, not by 400), 400 is.
    for (const year of ['0000', '0004', '0096', '0400']) {
      const ms = parseTimestamp(`${year}-02-29T12:00:00Z`);
      assert.equal(formatTimestamp(ms ?? Number.NaN), `${year}-02-29T12:00:00.000Z`, year);
      assert.equal(
        formatTimestamp(parseTimestamp(`${year}-03-01T00:00:00Z`) ?? Number.NaN),
        `${year}-03-01T00:00:00.000Z`,
      );
    }
    for (const year of ['0001', '0003', '0100', '0200', '0300']) {
      assert.equal(parseTimestamp(`${year}-02-29T00:00:00Z`), undefined, year);
    }
  });

  it('has four-digit years only: 10000 and beyond are no RFC 3339 timestamp', () => {
    for (const s of ['10000-01-01T00:00:00Z', '99999-01-01T00:00:00Z', '+10000-01-01T00:00:00Z']) {
      assert.equal(parseTimestamp(s), undefined, s);
    }
  });

  it('rejects impossible dates and times', () => {
    for (const s of [
      '2025-02-30T00:00:00Z',
      '2025-04-31T00:00:00Z',
      '2025-13-01T00:00:00Z',
      '2025-00-10T00:00:00Z',
      '2025-07-00T00:00:00Z',
      '2025-07-32T00:00:00Z',
      '2025-07-18T24:00:00Z',
      '2025-07-18T23:60:00Z',
      '2025-07-18T23:59:61Z',
      '2025-07-18T20:42:34+24:00',
      '2025-07-18T20:42:34+05:60',
    ]) {
      assert.equal(parseTimestamp(s), undefined, s);
    }
  });

  it('rejects garbage, empty text and near misses', () => {
    for (const s of [
      '',
      '   ',
      'yesterday',
      'null',
      '2025-07-18',
      '2025-7-18T20:42:34Z',
      '2025-07-18T20:42:34Z junk',
      '2025-07-18T20:42:34.Z',
      '2025-07-18T20:42:34+2',
      '2025/07/18 20:42:34',
      '18-07-2025T20:42:34Z',
      '1e9',
      '1752870154.',
      '-1752870154',
    ]) {
      assert.equal(parseTimestamp(s), undefined, JSON.stringify(s));
    }
  });
});

describe('parseTimestamp: Unix epochs', () => {
  it('reads 10-digit epoch seconds', () => {
    assert.equal(parseTimestamp(String(BASE / 1000)), BASE);
  });

  it('reads epoch seconds with a fraction, truncated to the millisecond', () => {
    assert.equal(parseTimestamp(`${BASE / 1000}.5`), BASE + 500);
    assert.equal(parseTimestamp(`${BASE / 1000}.25`), BASE + 250);
    assert.equal(parseTimestamp(`${BASE / 1000}.0089`), BASE + 8);
    assert.equal(parseTimestamp(`${BASE / 1000}.999999`), BASE + 999);
  });

  it('is exact for every millisecond, where float multiplication would truncate 1 ms low', () => {
    // 1084112727.116 * 1000 === 1084112727115.9999 in binary floating point.
    assert.equal(parseTimestamp('1084112727.116'), 1084112727116);
    assert.equal(parseTimestamp('4388487276.209'), 4388487276209);
    const seconds = [1084112727, 1752870154, 2172893836, 4321822752];
    for (const s of seconds) {
      for (let ms = 0; ms < 1000; ms++) {
        const text = `${s}.${String(ms).padStart(3, '0')}`;
        assert.equal(parseTimestamp(text), s * 1000 + ms, text);
      }
    }
  });

  it('reads 13-digit epoch milliseconds', () => {
    assert.equal(parseTimestamp(String(BASE + 123)), BASE + 123);
    assert.equal(parseTimestamp(` ${BASE} `), BASE);
  });
});

describe('formatTimestamp', () => {
  it('round-trips through parseTimestamp', () => {
    for (const ms of [0, BASE, BASE + 1, BASE + 999, Date.UTC(2286, 10, 20)]) {
      assert.equal(parseTimestamp(formatTimestamp(ms)), ms);
    }
    assert.equal(formatTimestamp(BASE + 7), '2025-07-18T20:42:34.007Z');
  });
});

describe('parseValue', () => {
  it('parses integers, decimals, exponents and signs', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['42', 42],
      ['-3', -3],
      ['+7', 7],
      ['3.25', 3.25],
      ['-0.5', -0.5],
      ['.5', 0.5],
      ['-.5', -0.5],
      ['5.', 5],
      ['1e3', 1000],
      ['1E3', 1000],
      ['1.5e-2', 0.015],
      ['-2.5e+3', -2500],
      ['81559', 81559],
      ['9223372036854775794', Number('9223372036854775794')],
      [' 12 ', 12],
    ];
    for (const [text, v] of cases) assert.equal(parseValue(text), v, JSON.stringify(text));
  });

  it('rejects everything that is not a finite decimal number', () => {
    for (const text of [
      '',
      ' ',
      'abc',
      'NaN',
      'nan',
      'Infinity',
      '-Infinity',
      '1,5',
      '0x10',
      '0b1',
      '1e400',
      '1.2.3',
      '--1',
      '+-1',
      'e5',
      '1e',
      '.',
      '12abc',
      '1 000',
    ]) {
      assert.equal(parseValue(text), undefined, JSON.stringify(text));
    }
  });
});

describe('isDcgmSentinel', () => {
  const sentinel = (text: string): boolean => {
    const v = parseValue(text);
    assert.notEqual(v, undefined, text);
    return isDcgmSentinel(v ?? 0);
  };

  it('recognises the INT64 blank family as parsed into a double', () => {
    for (const text of [
      '9223372036854775792', // DCGM_INT64_BLANK
      '9223372036854775793', // NOT_FOUND
      '9223372036854775794', // NOT_SUPPORTED
      '9223372036854775795', // NOT_PERMISSIONED
      '9223372036854775807', // INT64_MAX
    ]) {
      assert.equal(sentinel(text), true, text);
    }
  });

  it('recognises the FP64 blank family', () => {
    for (const text of [
      '140737488355328',
      '140737488355328.0',
      '140737488355329',
      '140737488355330',
      '140737488355331.0',
    ]) {
      assert.equal(sentinel(text), true, text);
    }
  });

  it('recognises the INT32 blank family', () => {
    for (let v = 2147483632; v <= 2147483636; v++) assert.equal(sentinel(String(v)), true);
  });

  it('does not flag real readings or the numbers next to the blanks', () => {
    for (const v of [
      0,
      100,
      81559,
      -1,
      1e12,
      2 ** 53,
      2 ** 62,
      -Number('9223372036854775794'),
      140737488355327,
      140737488355328.5,
      2147483631,
      2147483637,
      2147483647,
    ]) {
      assert.equal(isDcgmSentinel(v), false, String(v));
    }
  });
});
