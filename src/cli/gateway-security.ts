import type { Command } from 'commander';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { Config } from '../core/config.js';
import { NexusError, describeError } from '../core/errors.js';
import { corsOrigins } from '../gateway/cors-origins.js';
import type { Root } from './backends.js';
import { isGiven } from './settings.js';

/** The gateway's certificate chain and key (PEM), read from TLS_CERT_FILE and TLS_KEY_FILE. */
export interface GatewayTls {
  readonly cert: Buffer;
  readonly key: Buffer;
}

function readPem(setting: 'TLS_CERT_FILE' | 'TLS_KEY_FILE', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied (the key must be readable by the user nexus runs as)'
          : code === 'EISDIR'
            ? 'it is a directory'
            : describeError(err);
    throw new NexusError('CONFIG_INVALID', `${setting}: cannot read ${path}: ${why}`, {
      cause: err,
    });
  }
}

/**
 * TLS_CERT_FILE and TLS_KEY_FILE read and checked before anything starts (both or neither; files
 * that can be read; a certificate and its key that make a TLS context), or undefined for plain
 * HTTP. Every problem is a CONFIG_INVALID naming the setting and the file.
 */
export function loadGatewayTls(config: Config): GatewayTls | undefined {
  const certFile = config.tlsCertFile;
  const keyFile = config.tlsKeyFile;
  if (certFile === '' && keyFile === '') return undefined;
  if (certFile === '' || keyFile === '') {
    const [given, missing] =
      certFile === '' ? ['TLS_KEY_FILE', 'TLS_CERT_FILE'] : ['TLS_CERT_FILE', 'TLS_KEY_FILE'];
    throw new NexusError(
      'CONFIG_INVALID',
      `${given} is set but ${missing} is not: HTTPS needs both the certificate and its key (or neither, for plain HTTP)`,
    );
  }
  const tls = { cert: readPem('TLS_CERT_FILE', certFile), key: readPem('TLS_KEY_FILE', keyFile) };
  try {
    createSecureContext(tls);
    new X509Certificate(tls.cert);
  } catch (err) {
    throw new NexusError(
      'CONFIG_INVALID',
      `TLS_CERT_FILE ${certFile} and TLS_KEY_FILE ${keyFile} cannot serve HTTPS: ${describeError(err)} (PEM files expected: the certificate, its chain, and the private key of that certificate)`,
      { cause: err },
    );
  }
  return tls;
}

/**
 * What the gateway's security settings need before it starts (`nexus gateway`, `nexus up`): its
 * TLS certificate and CORS_ORIGINS checked (an error stops the command with status 2), a warning
 * for a certificate out of its validity, and one for the deprecated ENABLE_CORS.
 */
export function gatewaySecurity(cmd: Command, root: Root): GatewayTls | undefined {
  const { config, logger } = root;
  corsOrigins(config.corsOrigins);
  const tls = loadGatewayTls(config);
  if (tls !== undefined) {
    const cert = new X509Certificate(tls.cert);
    const now = Date.now();
    if (Date.parse(cert.validTo) < now || Date.parse(cert.validFrom) > now) {
      logger.warn(
        { valid_from: cert.validFrom, valid_to: cert.validTo, file: config.tlsCertFile },
        `TLS_CERT_FILE: the certificate is not valid now (valid from ${cert.validFrom} to ${cert.validTo}): clients will refuse it`,
      );
    }
  }
  const note = corsDeprecation(config, isGiven(cmd, 'enableCors'));
  if (note !== undefined) logger.warn(note);
  return tls;
}

/** What to tell someone who still sets ENABLE_CORS (the seed's setting), or undefined. */
export function corsDeprecation(config: Config, enableCorsGiven: boolean): string | undefined {
  if (!enableCorsGiven) return undefined;
  if (!config.enableCors) {
    return 'ENABLE_CORS is deprecated: CORS is off unless CORS_ORIGINS lists origins; ENABLE_CORS=false still turns it off, but unset it and leave CORS_ORIGINS empty instead';
  }
  return config.corsOrigins.length === 0
    ? 'ENABLE_CORS is deprecated and no longer turns CORS on: CORS answers only the origins CORS_ORIGINS lists (none now: no CORS); CORS_ORIGINS=* answers any origin, as ENABLE_CORS=true did'
    : 'ENABLE_CORS is deprecated: CORS_ORIGINS alone turns CORS on; unset ENABLE_CORS';
}
