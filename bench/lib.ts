import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../src/core/logger.js';
import type { TelemetryRecord } from '../src/core/record.js';
import { readDcgmCsv, readHeader } from '../src/streamer/csv/reader.js';
import { SqlStore } from '../src/store/sql-store.js';
import type { Database, WriteMethod } from '../src/store/types.js';
import type { PgServer } from '../test/helpers/postgres.js';

export const ROOT = join(import.meta.dirname, '..');
/** Generated files, etcd and PostgreSQL data of the benchmarks (ignored by git). */
export const BENCH_DIR = join(ROOT, '.data', 'bench');

/** The first `max` records of a DCGM CSV, as the streamer reads them. */
export async function loadRecords(file: string, max: number): Promise<TelemetryRecord[]> {
  const { header, end, line } = await readHeader(file);
  const out: TelemetryRecord[] = [];
  for await (const c of readDcgmCsv(header, { path: file, startOffset: end, startLine: line })) {
    for (const r of c.records) {
      if (out.length >= max) return out;
      out.push(r.record);
    }
  }
  return out;
}

/** A SqlStore on `db` with the benchmarks' settings: no retention, partitions made on demand. */
export function benchStore(
  db: Database,
  options: { writeMethod?: WriteMethod; partitionAheadMs?: number } = {},
): SqlStore {
  return new SqlStore({
    db,
    logger: silentLogger(),
    writeMethod: options.writeMethod ?? 'unnest',
    retentionDays: 0,
    rollupRetentionDays: 0,
    partitionAheadMs: options.partitionAheadMs ?? 0,
    compactDelayMs: 3_600_000,
  });
}

/** A new, empty database on `server`. */
export function freshDatabase(server: PgServer, prefix = 'b'): Promise<string> {
  return server.createDatabase(
    `${prefix}${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`,
  );
}

export interface Section {
  /** Stable name: a later run of only some benchmarks keeps the other sections. */
  readonly id: string;
  readonly title: string;
  /** Markdown: paragraphs and tables. */
  readonly body: string;
}

export function table(
  headers: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const fmt = (v: string | number): string => (typeof v === 'number' ? fmtNumber(v) : v);
  return [
    `| ${headers.join(' | ')} |`,
    `| ${headers.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(fmt).join(' | ')} |`),
  ].join('\n');
}

export function fmtNumber(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function version(cmd: string, args: string[]): string {
  try {
    return (
      execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .split('\n')[0]
        ?.trim() ?? '?'
    );
  } catch {
    return 'not installed';
  }
}

export function machine(): string {
  const cpu = cpus();
  return table(
    ['what', 'value'],
    [
      ['CPU', `${cpu[0]?.model ?? '?'} x ${cpu.length}`],
      ['memory', `${Math.round(totalmem() / 2 ** 30)} GiB`],
      ['Node.js', process.version],
      ['etcd', version('etcd', ['--version'])],
      ['Prometheus', version('prometheus', ['--version'])],
      ['date', new Date().toISOString()],
    ],
  );
}

export interface ChildResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallMs: number;
}

/** Runs the built nexus CLI in a child process and collects its output. */
export function nexus(args: readonly string[], env: Record<string, string>): Promise<ChildResult> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', PROGRESS: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('exit', (code) => resolve({ code, stdout, stderr, wallMs: Date.now() - t0 }));
  });
}

/** The last JSON log line whose msg starts with `prefix`. */
export function logLine(stdout: string, prefix: string): Record<string, unknown> {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.includes(`"msg":"${prefix}`));
  if (line === undefined) throw new Error(`no "${prefix}" line in output:\n${stdout.slice(-2000)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

export function log(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

/** The value at percentile `p` (0-100) of an ascending array (NaN when empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Peak resident set size of a running process, in MB (VmHWM in /proc/<pid>/status: the kernel's
 * high-water mark since the process started). NaN once it has exited or where /proc is missing.
 */
export function peakRssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? Number.NaN : Math.round(Number(kb) / 1024);
  } catch {
    return Number.NaN;
  }
}

/**
 * The pid of the process whose command line contains `fragment` (e.g. the data directory of an
 * etcd or PostgreSQL a helper started without giving its pid), or undefined.
 */
export function pidOf(fragment: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(fragment)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const CLOCK_TICKS =
  Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * The fields of /proc/<pid>/stat after the command (which may hold spaces, in parentheses): index
 * 0 is field 3 (state), index 1 field 4 (parent pid). Throws when the process is gone.
 */
function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * CPU seconds (user + system) of a process from /proc/<pid>/stat, with those of its children it
 * has waited for when `reaped` (PostgreSQL's postmaster: the backends that have exited), or NaN
 * when it is gone.
 */
export function cpuSeconds(pid: number | undefined, reaped = false): number {
  if (pid === undefined) return Number.NaN;
  try {
    const f = statFields(pid);
    const ticks = (i: number): number => Number(f[i - 3]);
    return (ticks(14) + ticks(15) + (reaped ? ticks(16) + ticks(17) : 0)) / CLOCK_TICKS;
  } catch {
    return Number.NaN;
  }
}

/** The pids whose parent is `parent`. */
export function childPids(parent: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(entry)[1]) === parent) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/**
 * CPU seconds of a whole PostgreSQL server: its postmaster, the backends and workers it has
 * reaped, and those still running. Differences of two readings are the server's CPU between
 * them (a backend alive at the first and gone by the second counts whole: a slight overcount).
 */
export function postgresCpuSeconds(dataDir: string): number {
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let total = cpuSeconds(pid, true);
  for (const child of childPids(pid)) {
    const s = cpuSeconds(child);
    if (Number.isFinite(s)) total += s;
  }
  return total;
}

/** Resolves once the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
  graceMs = 30_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

/** A nexus CLI process whose stdout JSON log lines are handed to `onLine` as they come. */
export function spawnNexus(
  args: readonly string[],
  env: Record<string, string>,
  onLine?: (line: string) => void,
): ChildProcess {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', PROGRESS: 'off', ...env },
    stdio: ['ignore', onLine === undefined ? 'ignore' : 'pipe', 'inherit'],
  });
  if (onLine !== undefined) {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop() ?? '';
      for (const l of parts) onLine(l);
    });
  }
  return child;
}

export function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

export interface LoadRun {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** Errors, timeouts and answers other than 2xx. */
  readonly errors: number;
  /** Of those: 5xx answers. */
  readonly status5xx: number;
  /** Of those: requests that timed out (`timeoutSeconds`). */
  readonly timeouts: number;
}

/**
 * A run of a fixed number of requests, through autocannon's API in a child process. The CLI ends
 * such a run at its next one-second tick, so its `duration` is the run's time rounded up to whole
 * seconds (a 2.1 s run is 3.03 s: a third fewer requests/s, and figures a faster server could not
 * move until it crossed a whole second). This prints autocannon's result with `duration` from the
 * run's start to its last answer.
 */
const AMOUNT_RUN = `
const autocannon = require('autocannon');
const [url, connections, amount, timeout, headers] = process.argv.slice(1);
let start = Date.now();
let last = start;
const run = autocannon(
  { url, connections: Number(connections), amount: Number(amount), timeout: Number(timeout), headers: JSON.parse(headers) },
  (err, r) => {
    if (err) throw err;
    process.stdout.write(JSON.stringify({ ...r, duration: (last - start) / 1000 }));
  },
);
run.on('start', () => { start = Date.now(); last = start; });
run.on('response', () => { last = Date.now(); });
run.on('reqError', () => { last = Date.now(); });
`;

/**
 * autocannon in its own process against `url`, for `seconds` or until `amount` answers (the run
 * then waits for the slowest): 2xx answers per second of the run, and latency percentiles (ms).
 */
export async function autocannonLoad(
  url: string,
  o: {
    connections: number;
    seconds?: number;
    amount?: number;
    timeoutSeconds?: number;
    /** Headers every request carries (e.g. authorization). */
    headers?: Readonly<Record<string, string>>;
  },
): Promise<LoadRun> {
  const timeout = String(o.timeoutSeconds ?? 10);
  const [command, args] =
    o.amount === undefined
      ? [
          join(ROOT, 'node_modules', '.bin', 'autocannon'),
          [
            '-c',
            String(o.connections),
            '-d',
            String(o.seconds ?? 5),
            '-t',
            timeout,
            ...Object.entries(o.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}=${v}`]),
            '-j',
            url,
          ],
        ]
      : [
          process.execPath,
          [
            '-e',
            AMOUNT_RUN,
            url,
            String(o.connections),
            String(o.amount),
            timeout,
            JSON.stringify(o.headers ?? {}),
          ],
        ];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    child.stdout.on('data', (d: Buffer) => (s += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(s) : reject(new Error(`autocannon exited ${code}`)),
    );
  });
  const r = JSON.parse(out) as {
    duration: number;
    '2xx': number;
    latency: { p50: number; p99: number };
    errors: number;
    timeouts?: number;
    non2xx: number;
    '5xx'?: number;
  };
  return {
    rps: r.duration > 0 ? r['2xx'] / r.duration : Number.NaN,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors + r.non2xx,
    status5xx: r['5xx'] ?? 0,
    timeouts: r.timeouts ?? 0,
  };
}
