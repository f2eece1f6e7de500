/**
 * The etcd of `make setup-etcd-secure` (scripts/local-etcd-secure.sh) for a test file: its own free
 * ports and throwaway DATA_DIR, the settings file of each user, and `make TARGET` with the same
 * variables. Not started here: the test runs `make('setup-etcd-secure')` (it may be what it tests).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './child.js';
import { freePort } from './ports.js';

export interface Output {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end (its environment: ours without any etcdctl or etcd credentials). */
export function exec(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): Promise<Output> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^ETCDCTL_|^ETCD_/.test(k)),
  );
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd: ROOT, env: { ...base, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export interface SecureEtcd {
  readonly dataDir: string;
  /** DATA_DIR/etcd-secure: the users' settings files, etcd's pid file. */
  readonly secureDir: string;
  /** The CA and every certificate. */
  readonly certs: string;
  readonly port: number;
  /** `make TARGET` with this etcd's ports and data directory (setup-dev not redone). */
  readonly make: (target: string) => Promise<Output>;
  /** A user's settings file (DATA_DIR/etcd-secure/<user>.env) as variables. */
  readonly settings: (user: string) => Record<string, string>;
  /** Kills etcd by its pid (if running) and deletes the data directory. */
  readonly destroy: () => void;
}

export async function secureEtcd(prefix: string): Promise<SecureEtcd> {
  const dataDir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const secureDir = join(dataDir, 'etcd-secure');
  const [port, peer] = [await freePort(), await freePort()];
  // A test that failed before `make stop-etcd` ran leaves etcd running (in a session of its own):
  // stop it by its pid, also when the process exits without running `after` (a timeout).
  const kill = (): void => {
    const pidFile = join(secureDir, 'etcd.pid');
    if (!existsSync(pidFile)) return;
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {
      // gone already
    }
  };
  process.once('exit', kill);
  return {
    dataDir,
    secureDir,
    certs: join(secureDir, 'certs'),
    port,
    make: (target) =>
      exec('make', [
        '--no-print-directory',
        '-o',
        'setup-dev',
        target,
        `DATA_DIR=${dataDir}`,
        `ETCD_PORT=${port}`,
        `ETCD_PEER=${peer}`,
      ]),
    settings: (user) => {
      const out: Record<string, string> = {};
      for (const line of readFileSync(join(secureDir, `${user}.env`), 'utf8').split('\n')) {
        const m = /^([A-Z_]+)=(.*)$/.exec(line);
        if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
      }
      return out;
    },
    destroy: () => {
      kill();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
