import { execFileSync, spawn } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..');

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
