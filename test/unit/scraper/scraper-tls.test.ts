import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { fetchMetrics } from '../../../src/scraper/http.js';

/**
 * The scrape request against real servers on loopback: an https exporter whose certificate a
 * throwaway CA signed (openssl), checked unless verification is explicitly switched off; a gzip
 * body, bounded after it is undone.
 */
const dir = mkdtempSync(join(tmpdir(), 'nexus-scrape-tls-'));
const servers: Server[] = [];
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  rmSync(dir, { recursive: true, force: true });
});

const BODY = 'DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="h"} 41\n';
const urls = { https: '', gzip: '' };
let ca = '';

const openssl = (args: string[]): void => {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
};

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.address();
  return typeof addr === 'object' && addr !== null ? addr.port : 0;
}

before(async () => {
  const subj = (cn: string): string[] => ['-subj', `/CN=${cn}`];
  openssl([
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    ...subj('nexus-test-ca'),
  ]);
  openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'srv.key',
    '-out',
    'srv.csr',
    ...subj('127.0.0.1'),
  ]);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl([
    'x509',
    '-req',
    '-in',
    'srv.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'srv.pem',
    '-days',
    '1',
    '-extfile',
    'san.ext',
  ]);
  ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
  const https = createHttpsServer(
    { key: readFileSync(join(dir, 'srv.key')), cert: readFileSync(join(dir, 'srv.pem')) },
    (_req, res) => res.writeHead(200).end(BODY),
  );
  urls.https = `https://127.0.0.1:${await listen(https)}/metrics`;
  const gzip = createHttpServer((req, res) => {
    const accepts = /gzip/.test(req.headers['accept-encoding'] ?? '');
    res.writeHead(200, accepts ? { 'content-encoding': 'gzip' } : {});
    res.end(accepts ? gzipSync(BODY.repeat(100)) : BODY.repeat(100));
  });
  urls.gzip = `http://127.0.0.1:${await listen(gzip)}/metrics`;
});

describe('the scrape request', () => {
  const base = { timeoutMs: 5000, maxBytes: 1024 * 1024 };

  it('checks an https target against SCRAPE_CA_FILE', async () => {
    assert.equal(await fetchMetrics(urls.https, { ...base, ca }), BODY);
  });

  it('refuses an https target whose certificate no known CA signed', async () => {
    await assert.rejects(
      fetchMetrics(urls.https, base),
      /self-signed|unable to verify|certificate/i,
    );
  });

  it('skips the check only when told to', async () => {
    assert.equal(await fetchMetrics(urls.https, { ...base, insecureSkipVerify: true }), BODY);
  });

  it('asks for gzip, undoes it, and bounds the body as text', async () => {
    assert.equal(await fetchMetrics(urls.gzip, base), BODY.repeat(100));
    await assert.rejects(
      fetchMetrics(urls.gzip, { ...base, maxBytes: 1024 }),
      /larger than SCRAPE_MAX_BYTES \(1024 bytes\)/,
    );
  });
});
