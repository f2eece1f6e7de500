import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ResourceStack } from '../../../src/cli/stack.js';
import { isNexusError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';

describe('ResourceStack (src/cli/stack.ts)', () => {
  it('closes in reverse order, once: every call gets the same promise', async () => {
    const stack = new ResourceStack(silentLogger());
    const closed: string[] = [];
    for (const name of ['etcd', 'queue', 'store', 'collector']) {
      stack.push(`closing ${name}`, async () => {
        await new Promise((r) => setTimeout(r, 5));
        closed.push(name);
      });
    }
    const first = stack.close();
    const second = stack.close();
    assert.equal(first, second);
    await Promise.all([first, second, stack.close()]);
    assert.deepEqual(closed, ['collector', 'store', 'queue', 'etcd']);
    assert.equal(stack.closed, true);
  });

  it('names each step to the shutdown progress, even when given while closing', async () => {
    const stack = new ResourceStack(silentLogger());
    let release: () => void = () => undefined;
    stack.push('closing the store', () => undefined);
    stack.push('storing what the queue holds', () => new Promise<void>((r) => (release = r)));
    const closing = stack.close();
    const steps: string[] = [];
    // A signal that comes while the command already closes the stack hears the current step.
    const again = stack.close({ step: (what) => steps.push(what) });
    release();
    await Promise.all([closing, again]);
    assert.deepEqual(steps, ['storing what the queue holds', 'closing the store']);
  });

  it('a close that fails does not keep the others open: the first failure is thrown at the end', async () => {
    const stack = new ResourceStack(silentLogger());
    const closed: string[] = [];
    stack.push('a', () => closed.push('a'));
    stack.push('b', () => Promise.reject(new Error('b failed')));
    stack.push('c', () => {
      throw new Error('c failed');
    });
    stack.push('d', () => closed.push('d'));
    await assert.rejects(stack.close(), /c failed/);
    assert.deepEqual(closed, ['d', 'a']);
  });

  it('refuses what is opened once it closes', async () => {
    const stack = new ResourceStack(silentLogger());
    await stack.close();
    assert.throws(
      () => stack.push('closing late', () => undefined),
      (err: unknown) => isNexusError(err, 'SHUTTING_DOWN'),
    );
  });
});
