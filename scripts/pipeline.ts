/**
 * `make run-nexus-pipeline`: the distributed pipeline on this machine. Starts etcd and PostgreSQL
 * in the data directory (unless ETCD_ENDPOINTS / DB_HOST / DATABASE_URL point elsewhere), applies
 * the migrations, then runs a collector, a gateway and a streamer as separate processes. Ctrl-C
 * stops everything it started, in order: streamer, collector, gateway, then the databases it started
 * (one already serving on the port, as after make setup-etcd or setup-postgres, is used and left
 * running).
 *
 * The same settings as the Makefile's setup-etcd and setup-postgres: DATA_DIR (or NEXUS_DATA_DIR,
 * default .data), ETCD_PORT (2379), ETCD_PEER (2380), PG_PORT (5433); the children are given the
 * matching ETCD_ENDPOINTS, DB_HOST, DB_PORT and DB_PASSWORD_FILE.
 *
 * Signals: Ctrl-C in a terminal sends SIGINT to every process of the foreground group. The
 * children run in process groups of their own, so that only this script gets it; it then sends
 * each child exactly one SIGTERM, in order, and each stops gracefully (the streamer prints its
 * summary). A second Ctrl-C sends the children still running their second signal: they exit at
 * once, saying what they did not finish.
 *
 * The gateway asks for a token (AUTH_MODE=token, unless set otherwise): the script makes a read
 * token named `pipeline` after the migrations (revoking the previous run's) and prints it.
 *
 * PIPELINE_FROM_SOURCE=1 runs the children from src/ through tsx instead of the build in dist/
 * (the tests do, so that they never run a stale build).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const setting = (name: string, fallback: string): string => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
};
const DATA = setting('DATA_DIR', setting('NEXUS_DATA_DIR', '.data'));
const ETCD_PORT = setting('ETCD_PORT', '2379');
const ETCD_PEER = setting('ETCD_PEER', '2380');
const PG_PORT = setting('PG_PORT', '5433');
const env: NodeJS.ProcessEnv = { ...process.env, NEXUS_DATA_DIR: DATA };
const started: string[] = [];

/** Runs a step to its end; false (having said so) when it fails. */
function step(what: string, cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], env });
    return true;
  } catch {
    process.stderr.write(`pipeline: ${what} failed (see above)\n`);
    return false;
  }
}

function stopDatabases(): void {
  if (started.includes('postgres'))
    step('stopping PostgreSQL', 'scripts/local-postgres.sh', ['stop', DATA, PG_PORT]);
  if (started.includes('etcd'))
    step('stopping etcd', 'scripts/local-etcd.sh', ['stop-plain', DATA, ETCD_PORT, ETCD_PEER]);
}

function giveUp(hint: string): never {
  process.stderr.write(`pipeline: ${hint}\n`);
  stopDatabases();
  process.exit(1);
}

/** Whether a local database script says its server already serves (started before this run). */
function serving(script: string, args: string[]): boolean {
  try {
    execFileSync(script, ['running', ...args], { cwd: ROOT, stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

if ((process.env.ETCD_ENDPOINTS ?? '') === '') {
  // One already serving (make setup-etcd) is used and left running at the end: only what this
  // run started is stopped.
  if (serving('scripts/local-etcd.sh', [DATA, ETCD_PORT, ETCD_PEER])) {
    process.stdout.write(`pipeline: etcd already serving on 127.0.0.1:${ETCD_PORT}: using it\n`);
  } else {
    if (!step('starting etcd', 'scripts/local-etcd.sh', ['start', DATA, ETCD_PORT, ETCD_PEER]))
      giveUp(`choose other ports with ETCD_PORT and ETCD_PEER (now ${ETCD_PORT} and ${ETCD_PEER})`);
    started.push('etcd');
  }
  env.ETCD_ENDPOINTS = `127.0.0.1:${ETCD_PORT}`;
}
if ((process.env.DATABASE_URL ?? '') === '' && (process.env.DB_HOST ?? '') === '') {
  const already = serving('scripts/local-postgres.sh', [DATA, PG_PORT]);
  if (already) {
    process.stdout.write(
      `pipeline: PostgreSQL already serving on 127.0.0.1:${PG_PORT}: using it\n`,
    );
  } else if (!step('starting PostgreSQL', 'scripts/local-postgres.sh', ['start', DATA, PG_PORT])) {
    giveUp(`choose another port with PG_PORT (now ${PG_PORT})`);
  }
  env.DB_HOST = '127.0.0.1';
  env.DB_PORT = PG_PORT;
  // Its password is random, made at its first start (scripts/local-postgres.sh).
  if ((env.DB_PASSWORD ?? '') === '' && (env.DB_PASSWORD_FILE ?? '') === '')
    env.DB_PASSWORD_FILE = resolve(ROOT, DATA, 'postgres', 'password');
  if (!already) started.push('postgres');
}

const nexus =
  process.env.PIPELINE_FROM_SOURCE === '1'
    ? ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts')]
    : [join(ROOT, 'dist', 'cli', 'main.js')];
if (!step('applying the migrations', process.execPath, [...nexus, 'migrate']))
  giveUp('the database is not usable: nothing else was started');

/** A read token for the API (the last line `nexus token create` prints), unless AUTH_MODE says no. */
function readToken(): string | undefined {
  if (setting('AUTH_MODE', 'token') !== 'token') return undefined;
  const nexusToken = (args: string[]): string =>
    execFileSync(process.execPath, [...nexus, 'token', ...args], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
  try {
    nexusToken(['revoke', 'pipeline']);
  } catch {
    // None yet.
  }
  try {
    return nexusToken(['create', '--scope', 'read', '--name', 'pipeline'])
      .trimEnd()
      .split('\n')
      .at(-1);
  } catch (err) {
    process.stderr.write(
      `pipeline: could not make a token: ${String((err as { stderr?: unknown }).stderr ?? err)}\n`,
    );
    return undefined;
  }
}
const token = readToken();

let stopping = false;
const children: { name: string; proc: ChildProcess }[] = [];
const running = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

function run(name: string, args: string[], extra: NodeJS.ProcessEnv = {}): void {
  const proc = spawn(process.execPath, [...nexus, ...args], {
    cwd: ROOT,
    // A process group of its own: the terminal's Ctrl-C reaches this script only (see above).
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...env, ...extra },
  });
  proc.on('exit', (code, signal) => {
    if (!stopping)
      process.stderr.write(
        `pipeline: ${name} exited (${signal ?? code}); Ctrl-C to stop the rest\n`,
      );
  });
  children.push({ name, proc });
}

run('collector', ['collector'], { METRICS_PORT: env.COLLECTOR_METRICS_PORT ?? '9464' });
run('gateway', ['gateway']);
run('streamer', ['streamer'], { METRICS_PORT: env.STREAMER_METRICS_PORT ?? '9465' });
process.stderr.write(
  `pipeline: collector, gateway (http://localhost:${env.PORT ?? '8080'}) and streamer running; Ctrl-C stops everything\n` +
    (token === undefined
      ? ''
      : `pipeline: the API's read token (Authorization: Bearer <token>; the dashboard asks for it): ${token}\n`),
);

let forced = false;
async function stop(): Promise<void> {
  if (stopping) {
    // A second Ctrl-C: every child still running gets its second signal and exits at once.
    forced = true;
    process.stderr.write('pipeline: second signal: the children exit now\n');
    for (const c of children) if (running(c.proc)) c.proc.kill('SIGTERM');
    return;
  }
  stopping = true;
  process.stderr.write('\npipeline: stopping (Ctrl-C again to force)\n');
  let clean = true;
  for (const name of ['streamer', 'collector', 'gateway']) {
    const c = children.find((x) => x.name === name);
    if (c === undefined) continue;
    if (running(c.proc)) {
      const gone = new Promise<void>((r) => c.proc.once('exit', () => r()));
      c.proc.kill('SIGTERM');
      await gone;
    }
    if (c.proc.exitCode !== 0) {
      clean = false;
      process.stderr.write(`pipeline: ${name} exited (${c.proc.signalCode ?? c.proc.exitCode})\n`);
    }
  }
  stopDatabases();
  process.stderr.write('pipeline: stopped\n');
  process.exit(forced ? 130 : clean ? 0 : 1);
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(signal, () => void stop());
// If this script dies some other way, take the children with it (they are not in its group).
process.on('exit', () => {
  for (const c of children) if (running(c.proc)) c.proc.kill('SIGKILL');
});
