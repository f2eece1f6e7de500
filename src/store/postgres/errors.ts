import { NexusError, describeError } from '../../core/errors.js';

const RETRYABLE_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/** Node.js's codes for a server certificate it refused (tls.connect). */
const TLS_REFUSED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  const code = err.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Converts a node-postgres (or PGlite) error into a NexusError once, at the adapter boundary:
 * - the data's fault (SQLSTATE classes 22 data exception and 23 integrity constraint violation):
 *   STORE_REJECTED, not retryable, with the database's message: the collector isolates the
 *   record and dead-letters it;
 * - everything else (connection failures, shutdowns, deadlocks, serialization failures, resource
 *   exhaustion, timeouts): STORE_UNAVAILABLE, retryable.
 */
export function toStoreError(err: unknown, operation: string): NexusError {
  if (err instanceof NexusError) return err;
  const code = sqlState(err);
  const message = describeError(err);
  if (code !== undefined && TLS_REFUSED.has(code)) {
    // The server is not the one DB_SSLROOTCERT and the host name vouch for (or they are wrong):
    // retried, as any outage, until it is fixed.
    return new NexusError(
      'STORE_UNAVAILABLE',
      `PostgreSQL ${operation} failed: the server's certificate was refused (${message}); check DB_SSLROOTCERT and the host name connected to (DB_SSLMODE=verify-full checks both)`,
      { cause: err, details: { tls: code, operation } },
    );
  }
  if (code !== undefined && /^(22|23)/.test(code)) {
    return new NexusError('STORE_REJECTED', message, {
      cause: err,
      details: { sqlstate: code, operation },
    });
  }
  const retryable =
    code === undefined ||
    RETRYABLE_NODE_CODES.has(code) ||
    /^(08|40|53|54|55|57|58|XX)/.test(code) ||
    /terminat|connect|timeout|closed|shutdown/i.test(message);
  return new NexusError('STORE_UNAVAILABLE', `PostgreSQL ${operation} failed: ${message}`, {
    retryable,
    cause: err,
    details: code === undefined ? { operation } : { sqlstate: code, operation },
  });
}
