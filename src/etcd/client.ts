import { readFileSync } from 'node:fs';
import { noop } from 'cockatiel';
import {
  Etcd3,
  ClientClosedError,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  type IOptions,
} from 'etcd3';
import { NexusError, describeError } from '../core/errors.js';

export interface EtcdConnectionOptions {
  readonly endpoints: readonly string[];
  readonly username?: string;
  readonly password?: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Deadline of every unary request (ms). */
  readonly timeoutMs: number;
}

/**
 * Creates an etcd client the way Nexus wants it: a deadline on every request, no silent retries by
 * the client (a timed-out Txn may have committed, so the caller re-reads before deciding), TLS and
 * RBAC credentials from configuration, and room for large responses.
 */
export function createEtcdClient(options: EtcdConnectionOptions): Etcd3 {
  const tls = (options.caFile ?? '') !== '' || (options.certFile ?? '') !== '';
  const hosts = options.endpoints.map((e) =>
    /^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `${tls ? 'https' : 'http'}://${e}`,
  );
  const config: IOptions = {
    hosts,
    dialTimeout: options.timeoutMs,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + options.timeoutMs },
    faultHandling: {
      global: noop,
    },
    grpcOptions: {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 1,
    },
  };
  if (tls) {
    const ca = options.caFile;
    config.credentials = {
      rootCertificate: ca !== undefined && ca !== '' ? readFileSync(ca) : Buffer.alloc(0),
      ...(options.keyFile !== undefined && options.keyFile !== ''
        ? { privateKey: readFileSync(options.keyFile) }
        : {}),
      ...(options.certFile !== undefined && options.certFile !== ''
        ? { certChain: readFileSync(options.certFile) }
        : {}),
    };
  }
  if (options.username !== undefined && options.username !== '') {
    config.auth = { username: options.username, password: options.password ?? '' };
  }
  return new Etcd3(config);
}

/** True when etcd said a lease does not exist (it expired or was revoked). */
export function isLeaseNotFound(err: unknown): boolean {
  return (
    err instanceof EtcdLeaseInvalidError ||
    (err instanceof Error && /requested lease not found/i.test(err.message))
  );
}

/**
 * Converts an etcd client error into a NexusError once, at the adapter boundary. A deadline
 * exceeded is marked ambiguous: the request may have been applied.
 */
export function toQueueError(err: unknown, operation: string): NexusError {
  if (err instanceof NexusError) return err;
  const message = `etcd ${operation} failed: ${describeError(err)}`;
  if (err instanceof ClientClosedError) {
    return new NexusError('QUEUE_CLOSED', message, { cause: err });
  }
  if (err instanceof GRPCResourceExhastedError || /database space exceeded/i.test(message)) {
    return new NexusError(
      'QUEUE_QUOTA_EXCEEDED',
      `${message} (etcd is over its space quota: compact, defragment and disarm the NOSPACE alarm, see docs/operations.md)`,
      {
        retryable: true,
        cause: err,
      },
    );
  }
  if (/request is too large|message larger than max/i.test(message)) {
    return new NexusError('QUEUE_MESSAGE_TOO_LARGE', message, { cause: err });
  }
  const ambiguous = err instanceof GRPCDeadlineExceededError || /deadline exceeded/i.test(message);
  return new NexusError('QUEUE_UNAVAILABLE', message, {
    retryable: true,
    cause: err,
    details: { ambiguous },
  });
}
