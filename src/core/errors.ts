/**
 * Error classes with stable codes. Outside errors (etcd, PostgreSQL, the file system) are converted
 * once, at the adapter boundary, into a NexusError that says whether retrying can help.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CSV_HEADER_INVALID'
  | 'CSV_FILE_UNREADABLE'
  | 'ENVELOPE_INVALID'
  | 'QUEUE_UNAVAILABLE'
  | 'QUEUE_CONFLICT'
  | 'QUEUE_NOT_HELD'
  | 'QUEUE_MESSAGE_TOO_LARGE'
  | 'QUEUE_CLOSED'
  | 'QUEUE_QUOTA_EXCEEDED'
  | 'STREAM_OWNED'
  | 'STORE_UNAVAILABLE'
  | 'STORE_REJECTED'
  | 'NOT_FOUND'
  | 'BAD_REQUEST'
  | 'LIMIT_EXCEEDED'
  | 'RATE_LIMITED'
  | 'OVERLOADED'
  | 'SHUTTING_DOWN'
  | 'INTERNAL';

export interface NexusErrorOptions {
  /** True when the same operation may succeed if tried again later. */
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
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

export function isNexusError(err: unknown, code?: ErrorCode): err is NexusError {
  return err instanceof NexusError && (code === undefined || err.code === code);
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
