/**
 * What the browser tests and scripts/screenshots.ts share: building the dashboard when its build is
 * missing or older than its sources, running `nexus up` in a child process on a free port with its
 * own data directory, and launching Debian's Chromium through playwright-core.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { ROOT } from './child.js';
import { freePort } from './ports.js';

export const CHROMIUM = '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = 0;
  for (const name of readdirSync(path)) t = Math.max(t, newestMtime(join(path, name)));
  return t;
}

/** Builds dist/dashboard/ unless its index.html is newer than every dashboard source. */
export function ensureDashboardBuilt(): void {
  const index = join(ROOT, 'dist', 'dashboard', 'index.html');
  const sources = Math.max(
    newestMtime(join(ROOT, 'dashboard')),
    newestMtime(join(ROOT, 'scripts', 'build-dashboard.mjs')),
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-dashboard.mjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

export interface NexusUp {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly child: ChildProcess;
  /** The last lines it logged, for failure messages. */
  logs(): string;
  /** SIGTERM (a clean shutdown), SIGKILL if it takes too long; removes its data directory. */
  stop(): Promise<void>;
}

/** The bundled real export, which startNexusUp streams unless `env` says otherwise. */
export const SAMPLE_CSV = 'samples/dcgm_metrics_20250718_134233.csv';
/** startNexusUp's `env` for the simulated fleet (nexus up with no CSV named, as `make run`). */
export const SIMULATED_FLEET: Readonly<Record<string, string>> = { CSV_FILE: '' };

/**
 * Starts `nexus up` (streamer, collector, gateway, PGlite) and waits for "Nexus is up"; `env` adds
 * settings (ENABLE_WEBSOCKET=false, ...). It streams the bundled sample (CSV_FILE=SAMPLE_CSV),
 * or with SIMULATED_FLEET the simulated fleet `nexus up` streams by default.
 */
export async function startNexusUp(
  timeoutMs = 90_000,
  env: Readonly<Record<string, string>> = {},
): Promise<NexusUp> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'nexus-e2e-'));
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'up'], {
    cwd: ROOT,
    env: {
      ...process.env,
      NEXUS_DATA_DIR: dataDir,
      PORT: String(port),
      LOG_LEVEL: 'info',
      CSV_FILE: SAMPLE_CSV,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (d: Buffer): void => {
    log = (log + d.toString()).slice(-20_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`nexus up did not say "Nexus is up" in ${timeoutMs} ms:\n${log}`));
      }, timeoutMs);
      const onData = (): void => {
        if (log.includes('Nexus is up')) {
          clearTimeout(timer);
          child.stdout.off('data', onData);
          child.stderr.off('data', onData);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`nexus up exited (${code ?? signal ?? '?'}) before it was up:\n${log}`));
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, child, logs: () => log, stop };
}

/**
 * Launches Debian's Chromium headless (with `args` added); fails, saying how to install it, when
 * it is missing.
 */
export async function launchChromium(args: readonly string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the browser tests need Debian's Chromium. Run \`make setup-dev\` (or \`scripts/setup.sh --all\`, which installs the chromium package).`,
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...args] });
}
