/**
 * `make run-nexus-pipeline`: the distributed pipeline on this machine. Starts etcd and PostgreSQL
 * in the data directory (unless ETCD_ENDPOINTS / DB_HOST / DATABASE_URL point elsewhere), applies
 * the migrations, then runs a collector, a gateway and a streamer as separate processes. Ctrl-C
 * stops everything it started, in order: streamer, collector, gateway, then the databases.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const DATA = process.env.NEXUS_DATA_DIR ?? '.data';
const env: NodeJS.ProcessEnv = { ...process.env };
const started: string[] = [];

function step(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { cwd: ROOT, stdio: 'inherit', env });
}

if (process.env.ETCD_ENDPOINTS === undefined) {
  step('scripts/local-etcd.sh', ['start', DATA, '2379', '2380']);
  env.ETCD_ENDPOINTS = '127.0.0.1:2379';
  started.push('etcd');
}
if (process.env.DATABASE_URL === undefined && process.env.DB_HOST === undefined) {
  step('scripts/local-postgres.sh', ['start', DATA, '5433']);
  env.DB_HOST = '127.0.0.1';
  started.push('postgres');
}

const nexus = join(ROOT, 'dist', 'cli', 'main.js');
step(process.execPath, [nexus, 'migrate']);

const children: { name: string; proc: ChildProcess }[] = [];
function run(name: string, args: string[], extra: NodeJS.ProcessEnv = {}): void {
  const proc = spawn(process.execPath, [nexus, ...args], {
    cwd: ROOT,
    stdio: 'inherit',
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
  `pipeline: collector, gateway (http://localhost:${env.PORT ?? '8080'}) and streamer running; Ctrl-C stops everything\n`,
);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) process.exit(130);
  stopping = true;
  process.stderr.write('\npipeline: stopping\n');
  for (const name of ['streamer', 'collector', 'gateway']) {
    const c = children.find((x) => x.name === name);
    if (c === undefined || c.proc.exitCode !== null || c.proc.signalCode !== null) continue;
    const gone = new Promise((r) => c.proc.once('exit', r));
    c.proc.kill('SIGTERM');
    await gone;
  }
  if (started.includes('postgres')) step('scripts/local-postgres.sh', ['stop', DATA, '5433']);
  if (started.includes('etcd')) step('scripts/local-etcd.sh', ['stop', DATA, '2379', '2380']);
  process.exit(0);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
// If this script dies some other way, take the children with it.
process.on('exit', () => {
  for (const c of children)
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
});
