/**
 * Error classes with stable codes. Outside errors (etcd, PostgreSQL, the file system) are converted
 * once, at the adapter boundary, into a NexusError that says whether retrying can help.
 */

/** What an error concerns: where to look when it happens. */
export type ErrorConcern =
  /** A setting (environment variable or flag). */
  | 'config'
  /** An input file (the CSV). */
  | 'file'
  /** A queue message as its producer wrote it. */
  | 'message'
  /** A client's request to the gateway. */
  | 'request'
  /** The queue (etcd, or the in-process queue). */
  | 'queue'
  /** The store (PostgreSQL or PGlite). */
  | 'store'
  /** An address or port to listen on. */
  | 'network'
  /** This process's limits under load. */
  | 'capacity'
  /** This process itself: starting, stopping, or a bug. */
  | 'self';

export interface ErrorPolicy {
  /** The HTTP status a client gets for it (REST and GraphQL alike). */
  readonly status: number;
  /**
   * Whether the same operation may succeed if tried again later: the default of
   * `NexusError.retryable` (an adapter may say otherwise for one error, from what it knows).
   */
  readonly retryable: boolean;
  readonly concerns: ErrorConcern;
}

/**
 * Every error code, once: its HTTP status, whether a retry can help, and what it concerns. Codes
 * never met over HTTP have 500: if one ever reaches a client, it is a bug.
 */
export const ERROR_POLICY = {
  CONFIG_INVALID: { status: 400, retryable: false, concerns: 'config' },
  CSV_HEADER_INVALID: { status: 500, retryable: false, concerns: 'file' },
  CSV_FILE_UNREADABLE: { status: 500, retryable: false, concerns: 'file' },
  ENVELOPE_INVALID: { status: 500, retryable: false, concerns: 'message' },
  QUEUE_UNAVAILABLE: { status: 503, retryable: true, concerns: 'queue' },
  QUEUE_CONFLICT: { status: 500, retryable: false, concerns: 'queue' },
  QUEUE_NOT_HELD: { status: 500, retryable: false, concerns: 'queue' },
  QUEUE_MESSAGE_TOO_LARGE: { status: 500, retryable: false, concerns: 'queue' },
  /** etcd refused the request as it is (too many operations, a key twice): a retry would too. */
  QUEUE_REQUEST_REFUSED: { status: 500, retryable: false, concerns: 'queue' },
  QUEUE_CLOSED: { status: 503, retryable: false, concerns: 'queue' },
  QUEUE_QUOTA_EXCEEDED: { status: 500, retryable: true, concerns: 'queue' },
  STREAM_OWNED: { status: 500, retryable: false, concerns: 'queue' },
  /** etcd refused a request for this connection's user: its role does not allow it. */
  ETCD_ACCESS_DENIED: { status: 500, retryable: false, concerns: 'config' },
  STORE_UNAVAILABLE: { status: 503, retryable: true, concerns: 'store' },
  STORE_REJECTED: { status: 500, retryable: false, concerns: 'store' },
  NOT_FOUND: { status: 404, retryable: false, concerns: 'request' },
  BAD_REQUEST: { status: 400, retryable: false, concerns: 'request' },
  LIMIT_EXCEEDED: { status: 400, retryable: false, concerns: 'request' },
  UNAUTHORIZED: { status: 401, retryable: false, concerns: 'request' },
  FORBIDDEN: { status: 403, retryable: false, concerns: 'request' },
  AUTH_UNAVAILABLE: { status: 503, retryable: true, concerns: 'self' },
  RATE_LIMITED: { status: 429, retryable: true, concerns: 'capacity' },
  OVERLOADED: { status: 503, retryable: true, concerns: 'capacity' },
  LISTEN_FAILED: { status: 500, retryable: false, concerns: 'network' },
  PROBE_TIMEOUT: { status: 503, retryable: true, concerns: 'self' },
  NOT_READY: { status: 503, retryable: true, concerns: 'self' },
  SHUTTING_DOWN: { status: 503, retryable: true, concerns: 'self' },
  INTERNAL: { status: 500, retryable: false, concerns: 'self' },
} as const satisfies Record<string, ErrorPolicy>;

export type ErrorCode = keyof typeof ERROR_POLICY;

/** The policy of an error code. */
export function policyOf(code: ErrorCode): ErrorPolicy {
  return ERROR_POLICY[code];
}

export interface NexusErrorOptions {
  /** True when the same operation may succeed if tried again later (default: the code's policy). */
  readonly retryable?: boolean;
  readonly cause?: unknown;
  readonly details?: Readonly<Record<string, unknown>>;
}

export class NexusError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: NexusErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NexusError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_POLICY[code].retryable;
    this.details = options.details;
  }

  /** What this error concerns (ERROR_POLICY). */
  get concerns(): ErrorConcern {
    return ERROR_POLICY[this.code].concerns;
  }
}

export function isNexusError(err: unknown, code?: ErrorCode): err is NexusError {
  return err instanceof NexusError && (code === undefined || err.code === code);
}

/** What any thrown value concerns: a NexusError's concern, undefined for anything else. */
export function concernOf(err: unknown): ErrorConcern | undefined {
  return isNexusError(err) ? err.concerns : undefined;
}

/** A short, log-safe description of any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
