/**
 * One GET of a target's /metrics: a deadline, TLS (a CA bundle; verification off only when asked),
 * basic auth, gzip, and a bound on the body (compressed and as text).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';

export interface FetchOptions {
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** PEM CA bundle for https targets (default: Node's roots). */
  readonly ca?: string;
  readonly insecureSkipVerify?: boolean;
  readonly basicAuth?: { readonly username: string; readonly password: string };
}

/** Why a scrape failed, in a few words (a log line, a reason). */
export class ScrapeError extends Error {
  constructor(
    readonly reason: 'timeout' | 'http-status' | 'too-large' | 'connection' | 'bad-encoding',
    message: string,
  ) {
    super(message);
  }
}

const ACCEPT = 'text/plain;version=0.0.4;q=1,*/*;q=0.1';

export function fetchMetrics(url: string, o: FetchOptions): Promise<string> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  const headers: Record<string, string> = {
    accept: ACCEPT,
    'accept-encoding': 'gzip',
    'user-agent': 'nexus-scrape',
    'x-prometheus-scrape-timeout-seconds': (o.timeoutMs / 1000).toFixed(3),
  };
  if (o.basicAuth !== undefined) {
    const { username, password } = o.basicAuth;
    headers.authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    const done = (err: Error | undefined, body?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err === undefined) resolve(body ?? '');
      else reject(err);
    };
    const options = {
      method: 'GET',
      headers,
      ...(https
        ? {
            ...(o.ca === undefined ? {} : { ca: o.ca }),
            rejectUnauthorized: o.insecureSkipVerify !== true,
          }
        : {}),
    };
    const req = (https ? httpsRequest : httpRequest)(u, options, (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        res.resume();
        done(new ScrapeError('http-status', `HTTP ${String(res.statusCode)}`));
        return;
      }
      const declared = Number(res.headers['content-length'] ?? Number.NaN);
      if (declared > o.maxBytes) {
        res.destroy();
        done(tooLarge(o.maxBytes));
        return;
      }
      const gzip = /\bgzip\b/i.test(res.headers['content-encoding'] ?? '');
      const stream: Readable = gzip ? res.pipe(createGunzip()) : res;
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        if (size > o.maxBytes) {
          res.destroy();
          stream.destroy();
          done(tooLarge(o.maxBytes));
          return;
        }
        chunks.push(c);
      });
      stream.on('end', () => done(undefined, Buffer.concat(chunks).toString('utf8')));
      stream.on('error', (err) =>
        done(
          gzip
            ? new ScrapeError('bad-encoding', `gzip body: ${err.message}`)
            : new ScrapeError('connection', err.message),
        ),
      );
      res.on('error', (err) => done(new ScrapeError('connection', err.message)));
    });
    const timer = setTimeout(() => {
      done(new ScrapeError('timeout', `no complete answer within ${o.timeoutMs} ms`));
      req.destroy();
    }, o.timeoutMs);
    req.on('error', (err) => done(new ScrapeError('connection', err.message)));
    req.end();
  });
}

function tooLarge(max: number): ScrapeError {
  return new ScrapeError('too-large', `body larger than SCRAPE_MAX_BYTES (${max} bytes)`);
}
