/**
 * `make build-nexus` (and so `make run`) builds only what changed: checked with `make -n` (print,
 * do not run) on a copy of the Makefile in a scratch tree whose files have chosen times.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT } from '../helpers/child.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-make-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const INPUTS = [
  'src/cli/main.ts',
  'src/store/sql/001_schema.sql',
  'dashboard/src/main.ts',
  'dashboard/index.html',
  'tsconfig.json',
  'tsconfig.build.json',
  'package-lock.json',
  'scripts/copy-assets.mjs',
  'scripts/build-dashboard.mjs',
  'scripts/build-pglite-template.mjs',
  'scripts/setup.sh',
];
const OUTPUTS = [
  'dist/.tsc.stamp',
  'dist/dashboard/index.html',
  'dist/store/pglite/template.tar.gz.version',
];

/** Writes an empty file with the given time; its directories, made or changed, get that time too. */
function file(path: string, at: number): void {
  const p = join(dir, path);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, '');
  for (let d = p; d.length > dir.length; d = dirname(d)) utimesSync(d, at, at);
}

/** What `make build-nexus` would run, one command a line. */
function plan(): string {
  return execFileSync('make', ['-n', '--no-print-directory', 'build-nexus'], {
    cwd: dir,
    encoding: 'utf8',
  });
}

describe('make build-nexus', () => {
  copyFileSync(join(ROOT, 'Makefile'), join(dir, 'Makefile'));
  const old = Date.now() / 1000 - 3600;
  for (const p of INPUTS) file(p, old);
  for (const p of OUTPUTS) file(p, old + 60);

  it('does not build again when nothing changed', () => {
    const steps = plan();
    assert.doesNotMatch(steps, /tsc|npm run|build-dashboard|build-pglite-template/, steps);
  });

  it('compiles again when a source file changed, and builds the dashboard when one of its files did', () => {
    file('src/cli/main.ts', old + 120);
    let steps = plan();
    assert.match(steps, /tsc -p tsconfig\.build\.json --incremental/);
    assert.doesNotMatch(steps, /build-dashboard/);
    file('dist/.tsc.stamp', old + 180);
    file('dashboard/src/main.ts', old + 240);
    steps = plan();
    assert.doesNotMatch(steps, /tsc/);
    assert.match(steps, /build-dashboard\.mjs/);
  });

  it('compiles again when a source file is added', () => {
    file('dist/dashboard/index.html', old + 300);
    file('dist/.tsc.stamp', old + 300);
    assert.doesNotMatch(plan(), /tsc/);
    file('src/cli/new-command.ts', old + 360);
    assert.match(plan(), /tsc/);
  });
});
