import { NexusError } from '../core/errors.js';
import { decodeKeySegment, encodeKeySegment } from '../core/key-segment.js';
import type { Envelope } from './envelope.js';

/**
 * Message names: `{timestamp}_{hostname}_{gpu}_{sequence}`.
 *
 * - timestamp: epoch milliseconds of the batch's first record, zero-padded to 13 digits, so that
 *   lexical key order is time order;
 * - hostname: percent-encoded so that it holds no `_`, `/` or `%` (`%5F`, `%2F`, `%25`): splitting
 *   a name on `_` always yields exactly four parts;
 * - gpu: `gpu-{index}`;
 * - sequence: the batch id, `[A-Za-z0-9.-]+`.
 */
export interface MessageName {
  readonly timestamp: number;
  readonly hostname: string;
  readonly gpu: string;
  readonly sequence: string;
}

export const encodeHostname = encodeKeySegment;
export const decodeHostname = decodeKeySegment;

export function padTimestamp(ms: number): string {
  return String(Math.max(0, Math.trunc(ms))).padStart(13, '0');
}

export function formatMessageName(name: MessageName): string {
  return `${padTimestamp(name.timestamp)}_${encodeHostname(name.hostname)}_${name.gpu}_${name.sequence}`;
}

export function messageNameOf(envelope: Envelope): string {
  const first = envelope.records[0];
  if (first === undefined)
    throw new NexusError('ENVELOPE_INVALID', 'a message needs at least one record');
  return formatMessageName({
    timestamp: first.timestamp,
    hostname: first.hostname,
    gpu: `gpu-${first.gpu}`,
    sequence: envelope.id,
  });
}

export function parseMessageName(name: string): MessageName | undefined {
  const parts = name.split('_');
  if (parts.length !== 4) return undefined;
  const [ts, host, gpu, sequence] = parts as [string, string, string, string];
  if (!/^\d{13,}$/.test(ts) || host === '' || gpu === '' || sequence === '') return undefined;
  return { timestamp: Number(ts), hostname: decodeHostname(host), gpu, sequence };
}
