import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  rmSync,
  readFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

export interface PgServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  readonly url: string;
  readonly dir: string;
  /** Stops PostgreSQL (fast shutdown), keeping its data. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
  /** A fresh, empty database on this server. */
  createDatabase(name: string): Promise<string>;
}

const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

function asPostgres(cmd: string, args: readonly string[]): string[] {
  // PostgreSQL refuses to run as root: run its binaries as the postgres user then.
  return userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--', cmd, ...args] : [cmd, ...args];
}

function run(cmd: string, args: readonly string[]): string {
  const [c, ...rest] = asPostgres(cmd, args);
  return execFileSync(c ?? cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/**
 * `pg_ctl start` on a data directory, waiting until it accepts connections; its log in
 * `dir`/log, whose end a failure quotes. The child's stdio is ignored: the server pg_ctl leaves
 * running must not hold our pipes open.
 */
function pgCtlStart(data: string, dir: string, settings: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const log = join(dir, 'log');
    const [c, ...rest] = asPostgres(join(BIN, 'pg_ctl'), [
      '-D',
      data,
      '-o',
      settings,
      '-l',
      log,
      '-w',
      '-t',
      '60',
      'start',
    ]);
    const child = spawn(c ?? 'pg_ctl', rest, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `pg_ctl start failed (${code}): ${existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : ''}`,
          ),
        );
    });
  });
}

export interface PgServerOptions {
  durable?: boolean;
  baseDir?: string;
  /**
   * TLS: the server's certificate and key (PEM), copied into the server's directory for the
   * postgres user (PostgreSQL refuses a key others can read); `caFile` checks client certificates.
   */
  tls?: { certFile: string; keyFile: string; caFile?: string };
  /** pg_hba.conf, line by line, instead of initdb's (scram-sha-256 for everyone). */
  hba?: readonly string[];
  /** Addresses to listen on (default 127.0.0.1). */
  listen?: readonly string[];
}

/**
 * Starts a throwaway PostgreSQL 15 on a free loopback port, with its data in a fresh directory
 * (in /dev/shm when there is one), owned by the postgres user when running as root.
 */
export async function startPostgres(options: PgServerOptions = {}): Promise<PgServer> {
  if (!existsSync(join(BIN, 'initdb'))) {
    throw new Error(`PostgreSQL 15 binaries not found in ${BIN}: run make setup-dev`);
  }
  const base = options.baseDir ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
  const dir = mkdtempSync(join(base, 'nexus-pg-'));
  // Files the server reads are the postgres user's when running as root.
  const owner =
    userInfo().uid === 0
      ? {
          uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
          gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
        }
      : undefined;
  if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
  const port = await freePort();
  const data = join(dir, 'data');
  const user = 'nexus';
  const password = 'nexus-test-password';
  const pwfile = join(dir, 'pw');
  run('sh', ['-c', `printf '%s' '${password}' > ${pwfile}`]);
  run(join(BIN, 'initdb'), [
    '-D',
    data,
    '-U',
    user,
    '--pwfile',
    pwfile,
    '-A',
    'scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C',
    '--no-sync',
  ]);
  const tls: string[] = [];
  if (options.tls !== undefined) {
    const { certFile, keyFile, caFile } = options.tls;
    for (const [from, name] of [
      [certFile, 'server.crt'],
      [keyFile, 'server.key'],
      ...(caFile === undefined ? [] : [[caFile, 'ca.crt']]),
    ] as const) {
      copyFileSync(from, join(dir, name));
      chmodSync(join(dir, name), 0o600);
      if (owner !== undefined) chownSync(join(dir, name), owner.uid, owner.gid);
    }
    tls.push(
      '-c ssl=on',
      `-c ssl_cert_file=${join(dir, 'server.crt')}`,
      `-c ssl_key_file=${join(dir, 'server.key')}`,
      ...(caFile === undefined ? [] : [`-c ssl_ca_file=${join(dir, 'ca.crt')}`]),
    );
  }
  if (options.hba !== undefined) {
    run('sh', ['-c', 'printf "%s\\n" "$@" > "$0"', join(data, 'pg_hba.conf'), ...options.hba]);
  }
  const settings = [
    `-p ${port}`,
    `-k ${dir}`,
    `-c listen_addresses='${(options.listen ?? ['127.0.0.1']).join(',')}'`,
    '-c max_connections=200',
    ...tls,
    ...(options.durable === true
      ? []
      : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']),
  ].join(' ');
  const start = (): Promise<void> => pgCtlStart(data, dir, settings);
  const stop = async (): Promise<void> => {
    try {
      run(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
    } catch {
      // already stopped
    }
    await Promise.resolve();
  };
  await start();
  const database = 'telemetry';
  const url = (db: string): string => `postgres://${user}:${password}@127.0.0.1:${port}/${db}`;
  const psql = (db: string, sql: string): void => {
    execFileSync(join(BIN, 'psql'), ['-q', '-v', 'ON_ERROR_STOP=1', '-d', url(db), '-c', sql], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  };
  psql('postgres', `CREATE DATABASE ${database}`);
  return {
    host: '127.0.0.1',
    port,
    user,
    password,
    database,
    url: url(database),
    dir,
    stop,
    start,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    createDatabase: (name: string) => {
      psql('postgres', `CREATE DATABASE "${name}"`);
      return Promise.resolve(url(name));
    },
  };
}

/**
 * A hot standby of `primary` (streaming replication, read-only), on a free loopback port with its
 * data in a fresh directory: `pg_basebackup -R` from the primary (whose pg_hba.conf, as initdb
 * writes it, lets its superuser replicate over loopback), then started as PostgreSQL starts one.
 * Its `url` names the same database and user as the primary's.
 */
export async function startStandby(primary: PgServer): Promise<PgServer> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'nexus-pg-standby-'));
  if (userInfo().uid === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  run('env', [
    `PGPASSWORD=${primary.password}`,
    join(BIN, 'pg_basebackup'),
    '-h',
    primary.host,
    '-p',
    String(primary.port),
    '-U',
    primary.user,
    '-D',
    data,
    '-R',
    '-X',
    'stream',
    '--no-sync',
    '--checkpoint=fast',
  ]);
  const port = await freePort();
  const settings = [
    `-p ${port}`,
    `-k ${dir}`,
    "-c listen_addresses='127.0.0.1'",
    '-c max_connections=200',
    '-c hot_standby=on',
    '-c fsync=off',
  ].join(' ');
  const start = (): Promise<void> => pgCtlStart(data, dir, settings);
  const stop = (): Promise<void> => {
    try {
      run(join(BIN, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
    } catch {
      // already stopped
    }
    return Promise.resolve();
  };
  await start();
  const url = (db: string): string =>
    `postgres://${primary.user}:${primary.password}@127.0.0.1:${port}/${db}`;
  return {
    host: '127.0.0.1',
    port,
    user: primary.user,
    password: primary.password,
    database: primary.database,
    url: url(primary.database),
    dir,
    stop,
    start,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    createDatabase: () =>
      Promise.reject(new Error('a standby is read-only: create databases on the primary')),
  };
}

let shared: Promise<{ server: PgServerRef; release: () => Promise<void> }> | undefined;

export interface PgServerRef {
  readonly url: string;
  createDatabase(name: string): Promise<string>;
}

/**
 * The PostgreSQL the test run shares (NEXUS_TEST_PG, a URL to a database that can create others,
 * started by scripts/test.ts), or one of this test file's own. Tests isolate themselves with a
 * database each.
 */
export function sharedPostgres(): Promise<{ server: PgServerRef; release: () => Promise<void> }> {
  shared ??= (async () => {
    const fromEnv = process.env.NEXUS_TEST_PG;
    if (fromEnv !== undefined && fromEnv !== '') {
      const admin = new URL(fromEnv);
      return {
        server: {
          url: fromEnv,
          createDatabase: (name: string) => {
            execFileSync(
              join(BIN, 'psql'),
              ['-q', '-v', 'ON_ERROR_STOP=1', '-d', fromEnv, '-c', `CREATE DATABASE "${name}"`],
              {
                stdio: ['ignore', 'ignore', 'pipe'],
              },
            );
            const u = new URL(admin.href);
            u.pathname = `/${name}`;
            return Promise.resolve(u.href);
          },
        },
        release: () => Promise.resolve(),
      };
    }
    const server = await startPostgres();
    return { server, release: () => server.destroy() };
  })();
  return shared;
}

let dbCounter = 0;
export function uniqueDatabase(prefix = 't'): string {
  dbCounter++;
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${dbCounter}`.toLowerCase();
}
