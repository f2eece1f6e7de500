import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { rootCertificates } from 'node:tls';
import { noop } from 'cockatiel';
import {
  Etcd3,
  ClientClosedError,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCResourceExhastedError,
  type IOptions,
} from 'etcd3';
import { NexusError, describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { MEMBER_GATE, MemberGroup, type MemberProbe } from './member-gate.js';

export interface EtcdConnectionOptions {
  readonly endpoints: readonly string[];
  readonly username?: string;
  readonly password?: string;
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** Deadline of every unary request (ms). */
  readonly timeoutMs: number;
  /** Where a member leaving or rejoining the client's rotation is said (several members only). */
  readonly logger?: Logger | undefined;
}

/** Who each client is to etcd, for the errors that name it (see `identityOf`). */
const identities = new WeakMap<Etcd3, string>();

/** The setting's file, read; a file that cannot be read is a setting error naming it. */
function readSettingFile(setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new NexusError(
      'CONFIG_INVALID',
      `${setting}: cannot read ${file}: ${describeError(err)}`,
      {
        cause: err,
      },
    );
  }
}

function given(v: string | undefined): v is string {
  return v !== undefined && v !== '';
}

/** The common name of a PEM certificate, if it has one. */
function commonName(pem: Buffer): string | undefined {
  try {
    const subject = new X509Certificate(pem).subject;
    return /^CN=(.*)$/m.exec(subject)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Who a connection is to etcd once authentication is on: the ETCD_USERNAME it signs in with, or
 * else the common name of its client certificate (etcd's --client-cert-auth takes the user from
 * it), or nobody.
 */
function identityOf(options: EtcdConnectionOptions, cert: Buffer | undefined): string {
  if (given(options.username)) return `user "${options.username}" (ETCD_USERNAME)`;
  if (cert !== undefined) {
    const cn = commonName(cert);
    return cn === undefined
      ? `the client certificate ${options.certFile ?? ''} (no common name: no etcd user)`
      : `user "${cn}" (the CN of ${options.certFile ?? 'the client certificate'})`;
  }
  return 'no user (no client certificate, no ETCD_USERNAME)';
}

/** How long a member out of the rotation has to answer a probe. */
const PROBE_TIMEOUT_MS = 1000;

/**
 * The probe of a member out of the rotation (src/etcd/member-gate.ts): whether it answers an HTTP
 * request on its client URL at all (`/version`, over TLS with the client's credentials when the
 * URL is https). Any answer will do, even an error status: a member that was killed refuses, one
 * that hangs says nothing before the timeout.
 */
function answers(tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }): MemberProbe {
  return (url) =>
    new Promise((resolve) => {
      const target = new URL('/version', url);
      const get = target.protocol === 'https:' ? httpsGet : httpGet;
      const req = get(target, { timeout: PROBE_TIMEOUT_MS, agent: false, ...tls }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
      req.on('error', () => resolve(false));
    });
}

/**
 * Creates an etcd client the way Nexus wants it: a deadline on every request, no silent retries by
 * the client (a timed-out Txn may have committed, so the caller re-reads before deciding), TLS and
 * RBAC credentials from configuration, and room for large responses.
 *
 * TLS is on when an endpoint says https:// or a CA, certificate or key file is given (endpoints
 * without a scheme then get https://); without ETCD_CA_FILE the system's CAs verify the server. A
 * client certificate needs its key and the other way round; with etcd's --client-cert-auth, its
 * CN is the etcd user. ETCD_USERNAME/ETCD_PASSWORD sign in with a password instead (over TLS too).
 */
export function createEtcdClient(options: EtcdConnectionOptions): Etcd3 {
  if (given(options.certFile) !== given(options.keyFile)) {
    throw new NexusError(
      'CONFIG_INVALID',
      given(options.certFile)
        ? `ETCD_CERT_FILE is set but ETCD_KEY_FILE is not: a client certificate needs its key`
        : `ETCD_KEY_FILE is set but ETCD_CERT_FILE is not: a client key needs its certificate`,
    );
  }
  const files = given(options.caFile) || given(options.certFile);
  const tls = files || options.endpoints.some((e) => /^https:\/\//i.test(e));
  const plain = options.endpoints.find((e) => /^http:\/\//i.test(e));
  if (tls && plain !== undefined) {
    throw new NexusError(
      'CONFIG_INVALID',
      `ETCD_ENDPOINTS: ${plain} is plain http://, but TLS is on (an https:// endpoint, or ETCD_CA_FILE/ETCD_CERT_FILE): use https://`,
    );
  }
  const hosts = options.endpoints.map((e) =>
    /^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `${tls ? 'https' : 'http'}://${e}`,
  );
  let cert: Buffer | undefined;
  let credentials: IOptions['credentials'];
  if (files) {
    cert = given(options.certFile)
      ? readSettingFile('ETCD_CERT_FILE', options.certFile)
      : undefined;
    credentials = {
      rootCertificate: given(options.caFile)
        ? readSettingFile('ETCD_CA_FILE', options.caFile)
        : Buffer.from(rootCertificates.join('\n')),
      ...(given(options.keyFile)
        ? { privateKey: readSettingFile('ETCD_KEY_FILE', options.keyFile) }
        : {}),
      ...(cert === undefined ? {} : { certChain: cert }),
    };
  }
  // Which members get requests (src/etcd/member-gate.ts), probed with the client's own TLS
  // credentials; with one member there is no choice.
  const members =
    hosts.length > 1
      ? new MemberGroup(
          hosts.length,
          answers(
            credentials === undefined
              ? {}
              : {
                  ca: credentials.rootCertificate,
                  ...(credentials.certChain === undefined ? {} : { cert: credentials.certChain }),
                  ...(credentials.privateKey === undefined ? {} : { key: credentials.privateKey }),
                },
          ),
          MEMBER_GATE,
          options.logger,
        )
      : undefined;
  const config: IOptions = {
    hosts,
    dialTimeout: options.timeoutMs,
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + options.timeoutMs },
    faultHandling: {
      global: noop,
      host: members === undefined ? () => noop : (url) => members.gate(url),
    },
    grpcOptions: {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // Keepalive pings find a dead connection under a long call (a watch, a lease's
      // keepalives) within 15 s. Only then: etcd's server takes a ping on a connection with no
      // call in progress as abuse (PermitWithoutStream is off), and at the third it sends GOAWAY;
      // grpc-js then wrote "rejected by server because of excess pings" on stderr from every
      // client left idle for half a minute. An idle connection's next call finds it dead anyway.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5000,
      'grpc.keepalive_permit_without_calls': 0,
    },
    ...(credentials === undefined ? {} : { credentials }),
    ...(given(options.username)
      ? { auth: { username: options.username, password: options.password ?? '' } }
      : {}),
  };
  const client = members === undefined ? new Etcd3(config) : new GatedEtcd3(config, members);
  identities.set(client, identityOf(options, cert));
  return client;
}

/** A client of several members: closing it also stops probing the members it took out. */
class GatedEtcd3 extends Etcd3 {
  constructor(
    config: IOptions,
    private readonly members: MemberGroup,
  ) {
    super(config);
  }

  override close(): void {
    this.members.close();
    super.close();
  }
}

/** True when etcd said a lease does not exist (it expired or was revoked). */
export function isLeaseNotFound(err: unknown): boolean {
  return (
    err instanceof EtcdLeaseInvalidError ||
    (err instanceof Error && /requested lease not found/i.test(err.message))
  );
}

/** What an etcd error is about, to name in the error: the client (its user) and the keys. */
export interface EtcdErrorContext {
  readonly client?: Etcd3;
  /** The keys (or prefixes) the request touched. */
  readonly keys?: readonly string[];
}

/** Where keys are: each key's parent ("/a/b/" for "/a/b/c"), once each. */
function placesOf(keys: readonly string[]): string[] {
  return [...new Set(keys.map((k) => k.slice(0, k.lastIndexOf('/') + 1) || k))];
}

/** Places for a message: at most 4 named. */
function listPlaces(places: readonly string[]): string {
  const shown = places.slice(0, 4).join(', ');
  return places.length > 4 ? `${shown} and ${places.length - 4} more` : shown;
}

/** The TLS error in a gRPC "No connection established" message, without gRPC's wrapping. */
function tlsReason(text: string): string {
  return text
    .replace(/^.*Last error: (Error: )?/s, '')
    .replace(/\s*(\([^)]*\))?\.?\s*Resolution note:.*$/s, '')
    .slice(0, 200);
}

/**
 * etcd refusing this connection's user (permission denied, no user, a wrong password, a client
 * certificate it does not accept) or a server certificate this client does not trust, as a
 * configuration error that names the user and where: retrying cannot help until the role, the
 * credentials or the certificates change.
 */
function accessDenied(
  err: unknown,
  operation: string,
  context: EtcdErrorContext,
): NexusError | undefined {
  const text = describeError(err);
  const who =
    (context.client === undefined ? undefined : identities.get(context.client)) ??
    'this connection';
  const places = placesOf(context.keys ?? []);
  const where = places.length === 0 ? '' : ` under ${listPlaces(places)}`;
  let message: string | undefined;
  if (err instanceof EtcdPermissionDeniedError || /etcdserver: permission denied/i.test(text)) {
    message =
      `etcd refused ${operation}${where} for ${who}: permission denied ` +
      '(its role does not allow it; the roles: nexus etcd-roles, docs/operations.md "Secure etcd")';
  } else if (/etcdserver: user name is empty/i.test(text)) {
    message =
      `etcd refused ${operation}${where}: it requires a user, and this connection has none ` +
      '(set ETCD_CERT_FILE and ETCD_KEY_FILE to a client certificate whose CN is the etcd user, or ETCD_USERNAME and ETCD_PASSWORD)';
  } else if (/alert (bad certificate|certificate required|unknown ca)/i.test(text)) {
    message =
      `etcd refused the TLS connection for ${operation}: it wants a client certificate signed by the CA it trusts ` +
      '(check ETCD_CERT_FILE and ETCD_KEY_FILE)';
  } else if (
    /unable to verify the first certificate|self[- ]signed certificate|unable to get local issuer certificate|does not match certificate's altnames|ERR_TLS_CERT_ALTNAME_INVALID/i.test(
      text,
    )
  ) {
    message =
      `etcd's server certificate is not trusted (${operation}): check ETCD_CA_FILE and that the ` +
      `ETCD_ENDPOINTS name is in the certificate (${tlsReason(text)})`;
  } else if (
    err instanceof EtcdAuthenticationFailedError ||
    /invalid user ID or password/i.test(text)
  ) {
    message = `etcd refused the password of ${who}: authentication failed (check ETCD_USERNAME and ETCD_PASSWORD)`;
  }
  return message === undefined
    ? undefined
    : new NexusError('ETCD_ACCESS_DENIED', message, {
        cause: err,
        details: { operation, places },
      });
}

/**
 * Converts an etcd client error into a NexusError once, at the adapter boundary. A deadline
 * exceeded is marked ambiguous: the request may have been applied. A refusal of this connection's
 * user is ETCD_ACCESS_DENIED, a configuration error (not retried).
 */
export function toQueueError(
  err: unknown,
  operation: string,
  context: EtcdErrorContext = {},
): NexusError {
  if (err instanceof NexusError) return err;
  const denied = accessDenied(err, operation, context);
  if (denied !== undefined) return denied;
  const message = `etcd ${operation} failed: ${describeError(err)}`;
  if (err instanceof ClientClosedError) {
    return new NexusError('QUEUE_CLOSED', message, { cause: err });
  }
  // gRPC says RESOURCE_EXHAUSTED for a request larger than it takes too: not etcd's quota.
  if (/request is too large|message larger than max/i.test(message)) {
    return new NexusError('QUEUE_MESSAGE_TOO_LARGE', message, { cause: err });
  }
  // A request etcd cannot take as it is, whenever it is sent (more operations in a transaction
  // than its --max-txn-ops, a key twice in one, an empty key): no wait changes the answer.
  if (err instanceof GRPCInvalidArgumentError) {
    return new NexusError(
      'QUEUE_REQUEST_REFUSED',
      `${message} (etcd refuses this request as it is: a retry would be refused too)`,
      { cause: err },
    );
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
  const ambiguous = err instanceof GRPCDeadlineExceededError || /deadline exceeded/i.test(message);
  return new NexusError('QUEUE_UNAVAILABLE', message, {
    retryable: true,
    cause: err,
    details: { ambiguous },
  });
}
