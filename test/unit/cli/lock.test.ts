import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { lockDirectory } from '../../../src/cli/lock.js';
import { isNexusError } from '../../../src/core/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-lock-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('lockDirectory (one nexus up per data directory)', () => {
  it('refuses a directory a live process holds, naming that process', async () => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const pid = other.pid ?? 0;
      writeFileSync(join(dir, 'held.lock'), `${pid}\n`);
      assert.throws(
        () => {
          lockDirectory(join(dir, 'held'), 'nexus up');
        },
        (err: unknown) =>
          isNexusError(err, 'CONFIG_INVALID') &&
          err.message.includes(`is in use by another nexus up (pid ${pid})`) &&
          err.message.includes(join(dir, 'held.lock')),
      );
      assert.equal(readFileSync(join(dir, 'held.lock'), 'utf8'), `${pid}\n`);
    } finally {
      other.kill('SIGKILL');
      await new Promise((r) => other.once('exit', r));
    }
  });

  it('takes over the lock of a process that is gone, and writes its own process id', () => {
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    writeFileSync(join(dir, 'stale.lock'), `${gone.stdout.toString()}\n`);
    lockDirectory(join(dir, 'stale'), 'nexus up');
    assert.equal(readFileSync(join(dir, 'stale.lock'), 'utf8'), `${process.pid}\n`);
  });
});
