/**
 * The gateway's TLS settings as the CLI reads them before anything starts (src/cli/gateway-security.ts),
 * and what it says of the deprecated ENABLE_CORS. The spawned gateway serving HTTPS:
 * test/integration/gateway-security.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { corsDeprecation, loadGatewayTls } from '../../../src/cli/gateway-security.js';
import { loadConfig } from '../../../src/core/config.js';
import { isNexusError } from '../../../src/core/errors.js';
import { ROOT } from '../../helpers/child.js';

describe('gateway TLS settings', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-tls-'));
    // Two certificates of one CA: each key belongs to its own certificate only.
    for (const name of ['gateway', 'other'])
      execFileSync(join(ROOT, 'scripts', 'certs.sh'), [join(dir, 'certs'), name]);
    writeFileSync(join(dir, 'garbage.pem'), 'not a certificate\n');
    mkdirSync(join(dir, 'a-directory'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const tlsOf = (cert: string, key: string) =>
    loadGatewayTls(loadConfig({ TLS_CERT_FILE: cert, TLS_KEY_FILE: key }));
  const refused = (pattern: RegExp) => (err: unknown) =>
    isNexusError(err, 'CONFIG_INVALID') && pattern.test(err.message);

  it('serves plain HTTP when neither is set, and reads both when both are', () => {
    assert.equal(loadGatewayTls(loadConfig({})), undefined);
    const tls = tlsOf(join(dir, 'certs', 'gateway.crt'), join(dir, 'certs', 'gateway.key'));
    assert.match(tls?.cert.toString() ?? '', /BEGIN CERTIFICATE/);
    assert.match(tls?.key.toString() ?? '', /PRIVATE KEY/);
  });

  it('refuses one without the other, naming both settings', () => {
    assert.throws(
      () => tlsOf(join(dir, 'certs', 'gateway.crt'), ''),
      refused(/^TLS_CERT_FILE is set but TLS_KEY_FILE is not: HTTPS needs both/),
    );
    assert.throws(
      () => tlsOf('', join(dir, 'certs', 'gateway.key')),
      refused(/^TLS_KEY_FILE is set but TLS_CERT_FILE is not/),
    );
  });

  it('names the file it cannot read, and why', () => {
    const missing = join(dir, 'nope.crt');
    assert.throws(
      () => tlsOf(missing, join(dir, 'certs', 'gateway.key')),
      refused(new RegExp(`^TLS_CERT_FILE: cannot read ${missing}: no such file$`)),
    );
    assert.throws(
      () => tlsOf(join(dir, 'certs', 'gateway.crt'), join(dir, 'a-directory')),
      refused(/^TLS_KEY_FILE: cannot read .*a-directory: it is a directory$/),
    );
  });

  it('refuses a file that is not PEM, and a key of another certificate', () => {
    assert.throws(
      () => tlsOf(join(dir, 'garbage.pem'), join(dir, 'certs', 'gateway.key')),
      refused(/garbage\.pem .* cannot serve HTTPS: .*PEM files expected/),
    );
    assert.throws(
      () => tlsOf(join(dir, 'certs', 'gateway.crt'), join(dir, 'certs', 'other.key')),
      refused(
        /gateway\.crt and TLS_KEY_FILE .*other\.key cannot serve HTTPS: .*key values mismatch/,
      ),
    );
  });
});

describe('ENABLE_CORS (deprecated)', () => {
  it('says nothing unless it is set', () => {
    assert.equal(
      corsDeprecation(loadConfig({ CORS_ORIGINS: 'https://a.example' }), false),
      undefined,
    );
  });

  it('tells someone who set it what CORS does now', () => {
    assert.match(
      corsDeprecation(loadConfig({ ENABLE_CORS: 'true' }), true) ?? '',
      /no longer turns CORS on: .*CORS_ORIGINS=\* answers any origin/,
    );
    assert.match(
      corsDeprecation(
        loadConfig({ ENABLE_CORS: 'true', CORS_ORIGINS: 'https://a.example' }),
        true,
      ) ?? '',
      /CORS_ORIGINS alone turns CORS on; unset ENABLE_CORS/,
    );
    assert.match(
      corsDeprecation(loadConfig({ ENABLE_CORS: 'false' }), true) ?? '',
      /ENABLE_CORS=false still turns it off/,
    );
  });

  it('turns CORS off by default: no origin listed', () => {
    assert.deepEqual(loadConfig({}).corsOrigins, []);
  });
});
