import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface EtcdServer {
  readonly endpoint: string;
  readonly dataDir: string;
  /** Stops etcd gracefully (SIGTERM), keeping its data. */
  stop(): Promise<void>;
  /** Kills etcd at once (SIGKILL), keeping its data. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

function base(): string {
  return existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
}

async function healthy(endpoint: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${endpoint}/health`);
      const body = (await res.json()) as { health?: string };
      if (body.health === 'true') return;
      last = JSON.stringify(body);
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd at ${endpoint} not healthy after ${timeoutMs} ms: ${last}`);
}

/**
 * Starts a throwaway single-member etcd on free loopback ports, with its data in a fresh directory
 * (in /dev/shm when there is one). The binary comes from Debian's etcd-server (installed by
 * `make setup-dev`).
 */
export async function startEtcd(
  options: { quotaBytes?: number; baseDir?: string } = {},
): Promise<EtcdServer> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = mkdtempSync(join(options.baseDir ?? base(), 'nexus-etcd-'));
  const endpoint = `127.0.0.1:${clientPort}`;
  let proc: ChildProcess | undefined;
  const args = [
    '--name',
    'test',
    '--data-dir',
    join(dataDir, 'data'),
    '--listen-client-urls',
    `http://${endpoint}`,
    '--advertise-client-urls',
    `http://${endpoint}`,
    '--listen-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-cluster',
    `test=http://127.0.0.1:${peerPort}`,
    '--auto-compaction-mode',
    'revision',
    '--auto-compaction-retention',
    '10000',
    '--log-level',
    'error',
    ...(options.quotaBytes === undefined
      ? []
      : ['--quota-backend-bytes', String(options.quotaBytes)]),
  ];
  const start = async (): Promise<void> => {
    const bin = process.env.ETCD_BIN ?? 'etcd';
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const exited = new Promise<never>((_, reject) => {
      child.once('error', (err) =>
        reject(new Error(`cannot start etcd (${bin}): ${err.message}; run make setup-dev`)),
      );
      child.once('exit', (code) => reject(new Error(`etcd exited with ${code}: ${stderr}`)));
    });
    exited.catch(() => undefined);
    proc = child;
    await Promise.race([healthy(endpoint, 20_000), exited]);
  };
  const stopWith = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (p === undefined || p.exitCode !== null) return;
    const done = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill(signal);
    await done;
  };
  await start();
  return {
    endpoint,
    dataDir,
    stop: () => stopWith('SIGTERM'),
    kill: () => stopWith('SIGKILL'),
    start,
    destroy: async () => {
      await stopWith('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

let shared: Promise<{ endpoint: string; release: () => Promise<void> }> | undefined;

/**
 * The etcd the test run shares (NEXUS_TEST_ETCD, started by scripts/test.ts), or one of this test
 * file's own. Tests isolate themselves with unique cluster ids.
 */
export function sharedEtcd(): Promise<{ endpoint: string; release: () => Promise<void> }> {
  shared ??= (async () => {
    const fromEnv = process.env.NEXUS_TEST_ETCD;
    if (fromEnv !== undefined && fromEnv !== '')
      return { endpoint: fromEnv, release: () => Promise.resolve() };
    const server = await startEtcd();
    return { endpoint: server.endpoint, release: () => server.destroy() };
  })();
  return shared;
}

let counter = 0;
/** A cluster id no other test uses. */
export function uniqueCluster(prefix = 't'): string {
  counter++;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
