import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { firstLine, run, spawnTs } from '../../helpers/child.js';

/** The JSON log lines a child wrote. */
function logLines(stdout: string): { msg: string; unfinished?: string }[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; unfinished?: string });
}

describe('two-phase shutdown (src/cli/signals.ts)', () => {
  it('a second signal exits at once with 130, through the exit path: the log says what was not finished', async () => {
    const child = spawnTs('test/helpers/shutdown-child.ts', ['60000']);
    const done = run(child);
    assert.equal(await firstLine(child), 'ready');
    child.kill('SIGINT');
    // The graceful stop has begun (its first line is out) before the second signal.
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer): void => {
        if (d.toString().includes('shutting down gracefully')) {
          child.stdout?.off('data', onData);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
    });
    child.kill('SIGINT');
    const exit = await done;
    assert.equal(exit.code, 130);
    const last = logLines(exit.stdout).at(-1);
    assert.equal(last?.unfinished, 'writing the last batch');
    assert.equal(last.msg, 'second signal: exiting now; not finished: writing the last batch');
  });

  it('a graceful stop that takes too long exits with 1, saying what it did not finish', async () => {
    const child = spawnTs('test/helpers/shutdown-child.ts', ['300']);
    const done = run(child);
    assert.equal(await firstLine(child), 'ready');
    child.kill('SIGTERM');
    const exit = await done;
    assert.equal(exit.code, 1);
    const last = logLines(exit.stdout).at(-1);
    assert.equal(
      last?.msg,
      'graceful shutdown took too long: exiting now; not finished: writing the last batch',
    );
  });

  it('a graceful stop that finished while a handle still holds the process exits with its status, naming what was open', async () => {
    const child = spawnTs('test/helpers/shutdown-child.ts', ['60000', 'linger', '300']);
    const done = run(child);
    assert.equal(await firstLine(child), 'ready');
    const sent = Date.now();
    child.kill('SIGTERM');
    const exit = await done;
    // A clean stop: 0, not the forced exit's 1, and long before forceAfterMs.
    assert.equal(exit.code, 0, exit.stdout + exit.stderr);
    assert.ok(Date.now() - sent < 30_000);
    const last = logLines(exit.stdout).at(-1) as { msg: string; open?: string } | undefined;
    assert.equal(last?.msg, 'stopped, but still running 300 ms later: exiting now');
    assert.match(last.open ?? '', /Timeout/);
  });

  it('a command that finished its work on its own while a handle still holds the process exits with its status, naming what was open', async () => {
    // (`nexus streamer` at the end of its file: a Job or a script waits for it to end.)
    const child = spawnTs('test/helpers/shutdown-child.ts', ['done', '300']);
    const started = Date.now();
    const exit = await run(child);
    assert.equal(exit.code, 3, exit.stdout + exit.stderr);
    assert.ok(Date.now() - started < 30_000);
    const last = logLines(exit.stdout).at(-1) as { msg: string; open?: string } | undefined;
    assert.equal(last?.msg, 'stopped, but still running 300 ms later: exiting now');
    assert.match(last.open ?? '', /Timeout/);
  });
});
