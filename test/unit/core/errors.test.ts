import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exitStatusOf } from '../../../src/cli/exit.js';
import { ERROR_POLICY, NexusError, concernOf, type ErrorCode } from '../../../src/core/errors.js';
import { probeWithTimeout } from '../../../src/core/probe.js';
import { statusOf } from '../../../src/gateway/errors.js';

const codes = Object.keys(ERROR_POLICY) as ErrorCode[];

describe('the error table (src/core/errors.ts)', () => {
  it('gives REST and GraphQL the HTTP status of every code: 4xx for the client, 503 while something is unavailable, 500 otherwise', () => {
    const expected: Partial<Record<ErrorCode, number>> = {
      BAD_REQUEST: 400,
      LIMIT_EXCEEDED: 400,
      NOT_FOUND: 404,
      CONFIG_INVALID: 400,
      RATE_LIMITED: 429,
      UNAUTHORIZED: 401,
      FORBIDDEN: 403,
      AUTH_UNAVAILABLE: 503,
      OVERLOADED: 503,
      STORE_UNAVAILABLE: 503,
      QUEUE_UNAVAILABLE: 503,
      QUEUE_CLOSED: 503,
      SHUTTING_DOWN: 503,
      NOT_READY: 503,
      PROBE_TIMEOUT: 503,
    };
    for (const code of codes) assert.equal(statusOf(code), expected[code] ?? 500, code);
  });

  it('an error is retryable as its code says, unless its adapter knows better', () => {
    assert.equal(new NexusError('QUEUE_UNAVAILABLE', 'etcd down').retryable, true);
    assert.equal(new NexusError('STORE_REJECTED', 'bad value').retryable, false);
    assert.equal(
      new NexusError('STORE_UNAVAILABLE', 'auth', { retryable: false }).retryable,
      false,
    );
    for (const code of codes)
      assert.equal(new NexusError(code, 'x').retryable, ERROR_POLICY[code].retryable, code);
  });

  it('says what an error concerns, and the CLI exits 2 for a setting or an input file only', () => {
    assert.equal(concernOf(new NexusError('STORE_UNAVAILABLE', 'down')), 'store');
    assert.equal(concernOf(new NexusError('QUEUE_CLOSED', 'closed')), 'queue');
    assert.equal(concernOf(new Error('plain')), undefined);
    const two = codes.filter((code) => exitStatusOf(new NexusError(code, 'x')) === 2).sort();
    assert.deepEqual(two, [
      'CONFIG_INVALID',
      'CSV_FILE_UNREADABLE',
      'CSV_HEADER_INVALID',
      'ETCD_ACCESS_DENIED',
    ]);
    assert.equal(exitStatusOf(new Error('plain')), 1);
    assert.equal(exitStatusOf('a string'), 1);
  });
});

describe('probeWithTimeout (src/core/probe.ts)', () => {
  it('passes an answer through, and a failure', async () => {
    assert.equal(await probeWithTimeout(() => Promise.resolve(42), 1000), 42);
    await assert.rejects(
      probeWithTimeout(() => Promise.reject(new Error('refused')), 1000),
      /refused/,
    );
  });

  it('fails with PROBE_TIMEOUT when no answer comes in time', async () => {
    const t0 = Date.now();
    await assert.rejects(
      probeWithTimeout(() => new Promise(() => undefined), 50),
      (err: unknown) =>
        err instanceof NexusError &&
        err.code === 'PROBE_TIMEOUT' &&
        err.message === 'no answer within 50 ms',
    );
    assert.ok(Date.now() - t0 >= 45);
  });
});
