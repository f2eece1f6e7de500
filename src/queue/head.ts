import type { Envelope } from './envelope.js';
import type { HeadMessage } from './types.js';

/** A message's envelope described without its records (QueueStats.head). */
export function headMessage(name: string, e: Envelope): HeadMessage {
  return {
    name,
    id: e.id,
    producer: e.producer,
    createdAt: e.createdAt,
    attempt: e.attempt,
    ...(e.lastError === undefined ? {} : { lastError: e.lastError }),
    ...(e.source === undefined ? {} : { source: e.source }),
    records: e.records.length,
  };
}
