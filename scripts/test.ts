/**
 * The test harness behind `make test`: starts the services the tests need (etcd, and PostgreSQL
 * once the store exists) on free loopback ports in throwaway directories, runs the test files with
 * node:test (through tsx, under c8 for coverage), stops the services, and exits with the tests'
 * status.
 *
 *   tsx scripts/test.ts [unit|integration|e2e|all] [--no-coverage] [files...]
 *
 * Two test files run at once (TEST_CONCURRENCY, default 2): most files spend much of their time
 * waiting on the processes, services and timers they start, so two at a time keep both cores of
 * the CI machine busy (all files: 1,700 s one at a time, about 1,000 s two at a time). Each file
 * is its own process, its own databases, etcd prefixes and ports (test/helpers), so files do not
 * see each other; what a test asserts must hold beside another file's load (a test judging speed
 * belongs in `make bench`). TEST_CONCURRENCY=1 runs them one after another. A file whose claim is
 * about how its own processes behave under its own load (the gateway answering /healthz within a
 * second while it is flooded) says `@test-alone` in a comment, with why: such files run after the
 * others, one at a time, with the machine to themselves.
 *
 * e2e (test/e2e): the dashboard in Debian's Chromium against `nexus up`, which each test starts
 * itself (embedded queue and PGlite): they need no etcd or PostgreSQL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { startEtcd, type EtcdServer } from '../test/helpers/etcd.js';
import { startPostgres, type PgServer } from '../test/helpers/postgres.js';
import { pristineDumpFile } from '../test/helpers/pglite.js';

const ROOT = join(import.meta.dirname, '..');
const args = process.argv.slice(2);
const suite = ['unit', 'integration', 'e2e', 'all'].includes(args[0] ?? '')
  ? (args.shift() ?? 'all')
  : 'all';
const coverage = !args.includes('--no-coverage');
const explicit = args.filter((a) => !a.startsWith('--'));
const concurrency = Number(process.env.TEST_CONCURRENCY ?? '2');
if (!Number.isInteger(concurrency) || concurrency < 1) {
  process.stderr.write(
    `TEST_CONCURRENCY must be a whole number of test files at once, 1 or more (got "${process.env.TEST_CONCURRENCY ?? ''}")\n`,
  );
  process.exit(2);
}

function testFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.test.ts')) out.push(relative(ROOT, p));
    }
  };
  walk(join(ROOT, dir));
  return out;
}

const files =
  explicit.length > 0
    ? explicit
    : [
        ...(suite === 'unit' || suite === 'all' ? testFiles('test/unit') : []),
        ...(suite === 'integration' || suite === 'all' ? testFiles('test/integration') : []),
        ...(suite === 'e2e' || suite === 'all' ? testFiles('test/e2e') : []),
      ];
const needServices = files.some((f) => f.includes('integration'));
// Tests that start `nexus up` from the sources (no build, so no template of the build's).
const startNexusUp = files.some((f) => f.includes('integration') || f.includes('e2e'));

let etcd: EtcdServer | undefined;
let pg: PgServer | undefined;
// What the test files make once per run and share (test/helpers/pglite.ts: PGlite data directories).
const cache = mkdtempSync(join(tmpdir(), 'nexus-test-cache-'));
const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test', NEXUS_TEST_CACHE: cache };
if (startNexusUp) {
  // Every `nexus up` they start on a fresh data directory starts from one pristine PGlite data
  // directory (PGLITE_TEMPLATE) instead of running initdb (2-4 s of a core) each time.
  process.env.NEXUS_TEST_CACHE = cache;
  env.PGLITE_TEMPLATE = await pristineDumpFile();
}
if (needServices) {
  [etcd, pg] = await Promise.all([startEtcd(), startPostgres()]);
  env.NEXUS_TEST_ETCD = etcd.endpoint;
  env.NEXUS_TEST_PG = pg.url;
  process.stdout.write(
    `test harness: etcd on ${etcd.endpoint} (data in ${etcd.dataDir}), PostgreSQL on ${pg.port} (data in ${pg.dir})\n`,
  );
}

/** Files that must have the machine to themselves (a comment saying `@test-alone`, and why). */
const ALONE = '@test-alone';
const alone = files.filter((f) => readFileSync(join(ROOT, f), 'utf8').includes(ALONE));
const phases = [
  { files: files.filter((f) => !alone.includes(f)), concurrency, why: '' },
  { files: alone, concurrency: 1, why: ` (${ALONE}: ${alone.join(', ')})` },
].filter((p) => p.files.length > 0);

// Coverage: every phase's processes write V8 coverage to one directory (what c8 does when it wraps
// a command), read by one `c8 report` at the end.
const coverageDir = join(ROOT, 'coverage', 'tmp');
if (coverage) rmSync(coverageDir, { recursive: true, force: true });

let child: ChildProcess | undefined;
const forward = (signal: NodeJS.Signals): void => {
  child?.kill(signal);
};
process.on('SIGINT', forward);
process.on('SIGTERM', forward);

/** Runs a command to its end with the harness's output; its exit status. */
function runCommand(command: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise<number>((resolve) => {
    child = spawn(command[0] ?? process.execPath, command.slice(1), {
      cwd: ROOT,
      env: { ...env, ...extraEnv },
      stdio: 'inherit',
    });
    child.on('exit', (c, signal) => resolve(c ?? (signal === null ? 1 : 128)));
  });
}

const started = Date.now();
let code = 0;
for (const phase of phases) {
  if (phases.length > 1)
    process.stdout.write(
      `test harness: ${phase.files.length} files, ${phase.concurrency} at a time${phase.why}\n`,
    );
  const status = await runCommand(
    [
      process.execPath,
      '--import',
      'tsx',
      '--test',
      '--test-timeout=600000',
      '--test-force-exit',
      `--test-concurrency=${phase.concurrency}`,
      '--test-reporter=spec',
      ...phase.files,
    ],
    coverage ? { NODE_V8_COVERAGE: coverageDir } : {},
  );
  if (code === 0) code = status;
}
if (coverage)
  await runCommand([
    join(ROOT, 'node_modules/.bin/c8'),
    'report',
    `--temp-directory=${coverageDir}`,
    '--reporter=text-summary',
    '--reporter=lcov',
    '--include=src/**',
  ]);

await Promise.all([etcd?.destroy(), pg?.destroy()]);
rmSync(cache, { recursive: true, force: true });
process.stdout.write(
  `test harness: ${files.length} files (${concurrency} at a time, ${alone.length} alone), exit ${code}, ${Math.round((Date.now() - started) / 1000)} s\n`,
);
process.exit(code);
