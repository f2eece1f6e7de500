/**
 * A stand-in for NVIDIA's dcgm-exporter in tests: serves a fixture of test/fixtures/dcgm-exporter/
 * on `/metrics` exactly as the exporter does (text format 0.0.4), on a free loopback port. Each
 * scrape can see new values (`tick`), the way a live exporter's readings move, and the server
 * counts the scrapes it answered.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { ROOT } from './child.js';

export const FIXTURES = join(ROOT, 'test/fixtures/dcgm-exporter');

export interface FixtureExporter {
  /** `127.0.0.1:PORT`, as a scrape target is written. */
  readonly target: string;
  readonly url: string;
  /** Scrapes of /metrics answered so far. */
  readonly scrapes: number;
  /** The sample lines (readings) of one scrape. */
  readonly readingsPerScrape: number;
  /** Answer every scrape with this status from now on (200: serve again). */
  setStatus(status: number): void;
  close(): Promise<void>;
}

export interface FixtureExporterOptions {
  /** Fixture file name under test/fixtures/dcgm-exporter (default node-1.prom). */
  readonly file?: string;
  /** Values move on each scrape: every gauge by +1 per scrape, every counter by +1000. */
  readonly tick?: boolean;
  /** Require HTTP basic auth with this user and password. */
  readonly basicAuth?: { readonly user: string; readonly password: string };
}

const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)$/;

export async function startFixtureExporter(
  options: FixtureExporterOptions = {},
): Promise<FixtureExporter> {
  const text = readFileSync(join(FIXTURES, options.file ?? 'node-1.prom'), 'utf8');
  const lines = text.split('\n');
  const counters = new Set(
    lines.flatMap((l) => {
      const m = /^# TYPE (\S+) counter$/.exec(l);
      return m?.[1] === undefined ? [] : [m[1]];
    }),
  );
  const readingsPerScrape = lines.filter((l) => SAMPLE.test(l)).length;
  let scrapes = 0;
  let status = 200;
  const body = (n: number): string =>
    options.tick !== true
      ? text
      : lines
          .map((l) => {
            const m = SAMPLE.exec(l);
            if (m === null || l.startsWith('#')) return l;
            const step = counters.has(m[1] ?? '') ? 1000 : 1;
            return `${m[1] ?? ''}${m[2] ?? ''} ${Number(m[3]) + n * step}`;
          })
          .join('\n');
  const expected =
    options.basicAuth === undefined
      ? undefined
      : `Basic ${Buffer.from(`${options.basicAuth.user}:${options.basicAuth.password}`).toString('base64')}`;
  const server: Server = createServer((req, res) => {
    if ((req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    if (expected !== undefined && req.headers.authorization !== expected) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="dcgm-exporter"' }).end();
      return;
    }
    if (status !== 200) {
      res.writeHead(status).end();
      return;
    }
    const n = scrapes++;
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
    res.end(body(n));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    target: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}/metrics`,
    get scrapes() {
      return scrapes;
    },
    readingsPerScrape,
    setStatus(s: number) {
      status = s;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
