import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay, type BackoffPolicy } from '../../../src/core/backoff.js';

const fixed =
  (r: number): (() => number) =>
  () =>
    r;

/** The un-jittered delay of an attempt, as documented. */
function expOf(policy: BackoffPolicy, attempt: number): number {
  return Math.min(policy.capMs, policy.baseMs * 2 ** (attempt - 1));
}

describe('backoffDelay', () => {
  it('is exact with jitter 0: base, doubling, then capped', () => {
    const policy = { baseMs: 100, capMs: 1000, jitter: 0 };
    const delays = [1, 2, 3, 4, 5, 6, 50].map((a) => backoffDelay(policy, a, Math.random));
    assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('stays within [exp * (1 - jitter), exp] for any random value', () => {
    const randoms = [0, 0.1, 0.5, 0.9, 0.999999];
    for (const jitter of [0, 0.25, 0.5, 1]) {
      const policy = { baseMs: 1000, capMs: 300_000, jitter };
      for (let attempt = 1; attempt <= 20; attempt++) {
        const exp = expOf(policy, attempt);
        for (const r of randoms) {
          const d = backoffDelay(policy, attempt, fixed(r));
          assert.ok(
            d >= Math.floor(exp * (1 - jitter)) && d <= exp,
            `jitter ${jitter} attempt ${attempt} random ${r}: ${d} not in [${exp * (1 - jitter)}, ${exp}]`,
          );
        }
      }
    }
  });

  it('reaches both ends of the range', () => {
    const policy = { baseMs: 1000, capMs: 60_000, jitter: 0.5 };
    assert.equal(backoffDelay(policy, 3, fixed(0)), 2000);
    assert.equal(backoffDelay(policy, 3, fixed(0.999999)), 4000);
    assert.equal(backoffDelay({ ...policy, jitter: 1 }, 3, fixed(0)), 0);
  });

  it('defaults to equal jitter (0.5)', () => {
    const policy = { baseMs: 1000, capMs: 60_000 };
    assert.equal(backoffDelay(policy, 2, fixed(0)), 1000);
    assert.equal(backoffDelay(policy, 2, fixed(0.5)), 1500);
  });

  it('never exceeds the cap, even for huge attempt numbers', () => {
    const policy = { baseMs: 1000, capMs: 30_000, jitter: 0.5 };
    for (const attempt of [10, 53, 100, 1e6, Number.MAX_SAFE_INTEGER]) {
      const d = backoffDelay(policy, attempt, fixed(0.999999));
      assert.ok(Number.isFinite(d) && d <= 30_000 && d >= 15_000, `attempt ${attempt}: ${d}`);
    }
  });

  it('is monotone in the attempt when random is fixed', () => {
    for (const r of [0, 0.3, 0.7, 0.999]) {
      const policy = { baseMs: 50, capMs: 10_000, jitter: 0.5 };
      let prev = 0;
      for (let attempt = 1; attempt <= 30; attempt++) {
        const d = backoffDelay(policy, attempt, fixed(r));
        assert.ok(d >= prev, `random ${r}: attempt ${attempt} gave ${d} after ${prev}`);
        prev = d;
      }
      assert.ok(prev > 0);
    }
  });

  it('treats attempts below 1 as the first and floors fractions', () => {
    const policy = { baseMs: 100, capMs: 10_000, jitter: 0 };
    assert.equal(backoffDelay(policy, 0), 100);
    assert.equal(backoffDelay(policy, -5), 100);
    assert.equal(backoffDelay(policy, 2.9), 200);
  });

  it('clamps jitter into 0..1', () => {
    const base = { baseMs: 100, capMs: 10_000 };
    assert.equal(backoffDelay({ ...base, jitter: -1 }, 1, fixed(0)), 100);
    assert.equal(backoffDelay({ ...base, jitter: 5 }, 1, fixed(0)), 0);
  });

  it('uses Math.random by default and stays in bounds', () => {
    const policy = { baseMs: 1000, capMs: 300_000, jitter: 0.5 };
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      const d = backoffDelay(policy, 4);
      assert.ok(d >= 4000 && d <= 8000, String(d));
      seen.add(d);
    }
    assert.ok(seen.size > 10, 'delays are randomised');
  });
});
