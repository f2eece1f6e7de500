import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Envelope } from '../../../src/queue/envelope.js';
import {
  decodeHostname,
  encodeHostname,
  formatMessageName,
  messageNameOf,
  padTimestamp,
  parseMessageName,
  type MessageName,
} from '../../../src/queue/names.js';

const HOSTNAMES = [
  'mtv5-dgx1-hgpu-031',
  'node_with_underscores',
  'rack/7/node',
  '100%busy',
  '%41 is not A',
  '%2F%5F%25',
  '__',
  '_/%',
  'nœud-日本-😀',
  'a.b.c:9400',
];

describe('hostname encoding', () => {
  it('round-trips awkward hostnames', () => {
    for (const h of HOSTNAMES) assert.equal(decodeHostname(encodeHostname(h)), h, h);
  });

  it('leaves no _, / or stray % in the encoded form', () => {
    for (const h of HOSTNAMES) {
      const e = encodeHostname(h);
      assert.equal(/[_/]/.test(e), false, e);
      assert.equal(/%(?![0-9A-F]{2})/.test(e), false, e);
    }
    assert.equal(encodeHostname('a_b/c%d'), 'a%5Fb%2Fc%25d');
    assert.equal(encodeHostname('plain-host.1'), 'plain-host.1');
  });
});

describe('message names', () => {
  const name = (hostname: string, timestamp = 1_752_871_354_000): MessageName => ({
    timestamp,
    hostname,
    gpu: 'gpu-3',
    sequence: 'b-42.7',
  });

  it('round-trips through formatMessageName and parseMessageName', () => {
    for (const h of HOSTNAMES) {
      const n = name(h);
      assert.deepEqual(parseMessageName(formatMessageName(n)), n, h);
    }
  });

  it('always splits into exactly four parts on _', () => {
    for (const h of HOSTNAMES) {
      const parts = formatMessageName(name(h)).split('_');
      assert.equal(parts.length, 4, h);
      assert.equal(parts[1], encodeHostname(h));
    }
  });

  it('formats the documented layout', () => {
    assert.equal(
      formatMessageName({ timestamp: 5, hostname: 'h_1', gpu: 'gpu-0', sequence: 's1' }),
      '0000000000005_h%5F1_gpu-0_s1',
    );
  });

  it('pads timestamps to 13 digits for the whole 1970..2286 range', () => {
    assert.equal(padTimestamp(0), '0000000000000');
    assert.equal(padTimestamp(1_752_871_354_123), '1752871354123');
    const last = Date.UTC(2286, 10, 20, 17, 46, 39, 999);
    assert.equal(padTimestamp(last), '9999999999999');
    assert.equal(padTimestamp(1.9), '0000000000001');
  });

  it('orders names lexically as their timestamps order numerically', () => {
    const last = Date.UTC(2286, 10, 20, 17, 46, 39, 999);
    const stamps = [0, 1, 9, 10, 999, 1000, 86_400_000, 999_999_999_999, 1e12, last];
    let seed = 7;
    for (let i = 0; i < 500; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      stamps.push(Math.floor((seed / 2 ** 31) * last));
    }
    const names = stamps.map((t) => formatMessageName(name('h', t)));
    const lexical = [...names].sort();
    const numeric = [...stamps].sort((a, b) => a - b).map((t) => formatMessageName(name('h', t)));
    assert.deepEqual(lexical, numeric);
    for (const n of names) assert.equal(n.split('_')[0]?.length, 13);
  });

  it('rejects malformed names', () => {
    for (const bad of [
      '',
      'garbage',
      '1752871354000_host_gpu-0',
      '1752871354000_host_gpu-0_seq_extra',
      '175287135400_host_gpu-0_seq',
      'abcdefghijklm_host_gpu-0_seq',
      '-752871354000_host_gpu-0_seq',
      '1752871354000__gpu-0_seq',
      '1752871354000_host__seq',
      '1752871354000_host_gpu-0_',
      '_host_gpu-0_seq',
    ]) {
      assert.equal(parseMessageName(bad), undefined, bad);
    }
  });

  it('names a message after its first record and its id', () => {
    const envelope: Envelope = {
      v: 1,
      id: 'batch-9',
      producer: 'p',
      cluster: 'c',
      createdAt: 0,
      attempt: 0,
      records: [
        {
          timestamp: 1_752_871_354_000,
          metric: 'm',
          gpu: 5,
          hostname: 'h_x',
          value: 1,
          labels: {},
        },
        { timestamp: 1, metric: 'm', gpu: 0, hostname: 'other', value: 2, labels: {} },
      ],
    };
    assert.equal(messageNameOf(envelope), '1752871354000_h%5Fx_gpu-5_batch-9');
    assert.throws(
      () => messageNameOf({ ...envelope, records: [] }),
      (err: unknown) => err instanceof Error && /at least one record/.test(err.message),
    );
  });
});
