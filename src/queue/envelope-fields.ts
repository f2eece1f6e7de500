import { Type } from '@sinclair/typebox';

/**
 * Fields shared by both wire forms of an envelope (expanded, version 1, and compact, version 2):
 * docs/queue.md, "The envelope". The header fields of the envelope:
 */
export const ENVELOPE_HEADER = {
  /** Batch id, unique per producer; also the sequence part of the message key. */
  id: Type.String({ pattern: '^[A-Za-z0-9.-]{1,64}$' }),
  producer: Type.String({ minLength: 1 }),
  cluster: Type.String({ minLength: 1 }),
  /** Epoch ms of the first publish. */
  createdAt: Type.Integer(),
  /** Failed deliveries so far. */
  attempt: Type.Integer({ minimum: 0 }),
  /** W3C trace context of the publish span. */
  trace: Type.Optional(
    Type.Object({ traceparent: Type.String(), tracestate: Type.Optional(Type.String()) }),
  ),
  /** Where the records came from: file and line range, for correlation. */
  source: Type.Optional(
    Type.Object({
      file: Type.String(),
      firstLine: Type.Integer(),
      lastLine: Type.Integer(),
    }),
  ),
  /** Why the last delivery failed. */
  lastError: Type.Optional(Type.String()),
};

/** Where a reading comes from: a record's identity fields (version 1), a series (version 2). */
export const GPU_IDENTITY = {
  hostname: Type.String({ minLength: 1 }),
  gpu: Type.Integer({ minimum: 0 }),
  device: Type.Optional(Type.String()),
  uuid: Type.Optional(Type.String()),
  model: Type.Optional(Type.String()),
  container: Type.Optional(Type.String()),
  pod: Type.Optional(Type.String()),
  namespace: Type.Optional(Type.String()),
};
