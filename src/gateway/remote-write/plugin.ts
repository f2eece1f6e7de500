import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { recordFromSeries } from '../../core/dcgm-series.js';
import { isNexusError, NexusError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { NexusMetrics } from '../../core/metrics.js';
import type { TelemetryRecord } from '../../core/record.js';
import { traceContextOf, tracer, type Span } from '../../core/tracing.js';
import { statusOf } from '../errors.js';
import { ErrorRef } from '../schemas/common.js';
import type { ClusterQueues } from './clusters.js';
import { decodeWriteRequest } from './decoder.js';

export interface RemoteWriteOptions {
  readonly queues: ClusterQueues;
  /** The gateway's CLUSTER_ID: readings without a cluster label go there. */
  readonly defaultCluster: string;
  /** REMOTE_WRITE_MAX_BYTES: largest decompressed body. */
  readonly maxBytes: number;
  /** REMOTE_WRITE_ACCEPT: '' (DCGM series only), 'all', or a regular expression of metric names. */
  readonly accept: string;
  readonly logger: Logger;
  readonly metrics?: NexusMetrics;
}

/** What a cluster label may be: it names etcd keys (`…/{cluster}/…`). */
const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Which non-DCGM metric names REMOTE_WRITE_ACCEPT takes in (undefined: none). */
export function acceptFilter(accept: string): ((name: string) => boolean) | undefined {
  const a = accept.trim();
  if (a === '') return undefined;
  if (a === 'all') return () => true;
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${a})$`);
  } catch (err) {
    throw new NexusError(
      'CONFIG_INVALID',
      `REMOTE_WRITE_ACCEPT: "${a}" is not a regular expression (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  return (name) => re.test(name);
}

/** The rejection reasons of recordFromSeries, in a few words for a metric label. */
function reasonClass(reason: string): 'value' | 'timestamp' | 'labels' {
  if (reason.includes('is not a reading')) return 'value';
  if (reason.includes('timestamp')) return 'timestamp';
  return 'labels';
}

export interface Outcome {
  received: number;
  stored: number;
  ignored: number;
  stale: number;
  sentinel: number;
  rejected: number;
}

/** The records of a decoded request by cluster, and what became of each sample. */
export function recordsOf(
  series: ReturnType<typeof decodeWriteRequest>,
  o: {
    readonly defaultCluster: string;
    readonly accepts: ((name: string) => boolean) | undefined;
    readonly now?: number;
  },
): {
  byCluster: Map<string, TelemetryRecord[]>;
  outcome: Outcome;
  rejected: Map<string, { count: number; example: string }>;
} {
  const byCluster = new Map<string, TelemetryRecord[]>();
  const outcome: Outcome = {
    received: 0,
    stored: 0,
    ignored: 0,
    stale: 0,
    sentinel: 0,
    rejected: 0,
  };
  const rejected = new Map<string, { count: number; example: string }>();
  const reject = (reason: string, n = 1): void => {
    outcome.rejected += n;
    const k = reasonClass(reason);
    const r = rejected.get(k);
    if (r === undefined) rejected.set(k, { count: n, example: reason });
    else r.count += n;
  };
  for (const s of series) {
    outcome.received += s.samples.length;
    const name = s.labels.__name__ ?? '';
    const acceptAll = o.accepts?.(name) === true;
    for (const sample of s.samples) {
      if (sample.stale) {
        outcome.stale++;
        continue;
      }
      const r = recordFromSeries(
        { name, labels: s.labels, value: sample.value, timestamp: sample.timestamp },
        { acceptAll, ...(o.now === undefined ? {} : { now: o.now }) },
      );
      switch (r.kind) {
        case 'not-dcgm':
          outcome.ignored++;
          break;
        case 'sentinel':
          outcome.sentinel++;
          break;
        case 'reject':
          reject(r.reason);
          break;
        case 'record': {
          const cluster = r.cluster ?? o.defaultCluster;
          if (!CLUSTER_NAME.test(cluster)) {
            reject(
              `${name}: bad cluster label "${cluster.slice(0, 64)}" (1-64 of letters, digits, ".", "_", "-")`,
            );
            break;
          }
          const list = byCluster.get(cluster);
          if (list === undefined) byCluster.set(cluster, [r.record]);
          else list.push(r.record);
          break;
        }
      }
    }
  }
  return { byCluster, outcome, rejected };
}

const RemoteWriteBody = {
  type: 'string',
  format: 'binary',
  description:
    'A snappy-compressed (block format) protobuf prometheus.WriteRequest, as Prometheus remote_write 1.0 sends it',
} as const;

/**
 * POST /api/v1/write: Prometheus remote_write 1.0 into the queue. 204 once every reading of the
 * request is in its cluster's queue; 400 for a malformed body (Prometheus drops the request);
 * 503 with Retry-After when a queue is at MAX_QUEUE_DEPTH (checked before anything is published)
 * or unavailable (Prometheus retries a 5xx; it drops a 429 unless retry_on_http_429). Needs the
 * write scope.
 */
export async function remoteWriteRoutes(
  app: FastifyInstance,
  o: RemoteWriteOptions,
): Promise<void> {
  const accepts = acceptFilter(o.accept);
  const m = o.metrics;
  const log = o.logger.child({ component: 'remote-write' });
  /** One warning per reason class a minute at most: a sender's steady mistake is not a flood. */
  const warnedAt = new Map<string, number>();
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    ['application/x-protobuf', 'application/octet-stream'],
    { parseAs: 'buffer' },
    (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) => {
      done(null, body);
    },
  );
  app.addHook('onResponse', (_req, reply, done) => {
    m?.remoteWriteRequests.inc({ code: String(reply.statusCode) });
    done();
  });
  app.addHook('onClose', async () => {
    await o.queues.close();
  });
  app.post(
    '/api/v1/write',
    {
      config: { access: 'write' },
      // The body is binary: its schema is for the OpenAPI document; the decoder checks it.
      validatorCompiler: () => () => true,
      schema: {
        tags: ['ingest'],
        summary: 'Prometheus remote_write 1.0 receiver (write scope; ENABLE_REMOTE_WRITE)',
        description:
          "Headers as Prometheus sends them: Content-Encoding: snappy, Content-Type: application/x-protobuf, X-Prometheus-Remote-Write-Version: 0.1.0. DCGM series are published to the queue of their cluster (the cluster label, else the gateway's CLUSTER_ID); other series are ignored and counted unless REMOTE_WRITE_ACCEPT says otherwise. See docs/ingest.md.",
        consumes: ['application/x-protobuf'],
        body: RemoteWriteBody,
        response: {
          204: { type: 'null', description: 'Every reading of the request is in the queue' },
          400: ErrorRef,
          401: ErrorRef,
          403: ErrorRef,
          413: ErrorRef,
          503: ErrorRef,
        },
      },
    },
    async (req: FastifyRequest, reply: FastifyReply) => {
      const encoding = req.headers['content-encoding'];
      if (encoding !== undefined && encoding.trim().toLowerCase() !== 'snappy') {
        throw new NexusError(
          'BAD_REQUEST',
          `remote_write: Content-Encoding "${encoding.slice(0, 40)}" is not snappy (remote_write 1.0)`,
        );
      }
      const body = req.body;
      if (!Buffer.isBuffer(body)) {
        throw new NexusError(
          'BAD_REQUEST',
          'remote_write: send Content-Type: application/x-protobuf with a snappy-compressed WriteRequest',
        );
      }
      const series = decodeWriteRequest(body, o.maxBytes);
      const { byCluster, outcome, rejected } = recordsOf(series, {
        defaultCluster: o.defaultCluster,
        accepts,
      });
      const count = (key: keyof Outcome, n: number): void => {
        if (n > 0) m?.remoteWriteSamples.inc({ outcome: key }, n);
      };
      if (byCluster.size > 0) {
        const publishers = o.queues.publishers(byCluster.keys());
        // Nothing is published unless every queue has room: a refused request is retried whole.
        for (const [cluster, publisher] of publishers) {
          if (!(await publisher.room())) {
            throw new NexusError(
              'OVERLOADED',
              `remote_write: the queue of cluster "${cluster}" is at MAX_QUEUE_DEPTH (${await publisher.queueDepth()} messages): retry later (the collectors are behind)`,
            );
          }
        }
        try {
          await Promise.all(
            [...publishers].map(([cluster, publisher]) => {
              const records = byCluster.get(cluster) ?? [];
              // A span per cluster's publish; its context travels in the envelopes, so the
              // collector's spans join the trace (as the streamer's publish spans do).
              return tracer().startActiveSpan(
                'nexus.remote_write.publish',
                {
                  kind: SpanKind.PRODUCER,
                  attributes: {
                    'messaging.system': 'nexus-queue',
                    'nexus.cluster': cluster,
                    'nexus.batch.records': records.length,
                    'http.request.id': req.id,
                  },
                },
                async (span: Span) => {
                  try {
                    const messages = await publisher.publish(
                      records,
                      { file: `remote_write ${req.id}`, firstLine: 1, lastLine: records.length },
                      traceContextOf(span),
                    );
                    span.setAttribute('nexus.messages', messages);
                  } catch (err) {
                    span.recordException(err instanceof Error ? err : new Error(String(err)));
                    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
                    throw err;
                  } finally {
                    span.end();
                  }
                },
              );
            }),
          );
        } catch (err) {
          // etcd refused the gateway's user (its role was applied without ENABLE_REMOTE_WRITE):
          // a configuration error, answered 503 so that Prometheus keeps the batch until fixed.
          if (isNexusError(err, 'ETCD_ACCESS_DENIED')) {
            log.error(
              { err: err.message },
              'remote_write: etcd refused the publish; run nexus etcd-roles --apply with ENABLE_REMOTE_WRITE=true',
            );
            throw new NexusError(
              'QUEUE_UNAVAILABLE',
              `remote_write: etcd refused the gateway's publish (${err.message}): its etcd role needs nexus etcd-roles --apply with ENABLE_REMOTE_WRITE=true`,
              { cause: err },
            );
          }
          // A queue that cannot take the request now (etcd out of space, a timeout): Prometheus
          // retries a 503, and what landed before is stored once (the store's natural key).
          if (isNexusError(err) && err.retryable && statusOf(err.code) === 500) {
            throw new NexusError('QUEUE_UNAVAILABLE', `remote_write: ${err.message}`, {
              cause: err,
            });
          }
          throw err;
        }
        for (const list of byCluster.values()) outcome.stored += list.length;
      }
      // Counted once the request is answered 204: a refused one (503) comes again, whole.
      count('received', outcome.received);
      count('stored', outcome.stored);
      count('ignored', outcome.ignored);
      count('stale', outcome.stale);
      count('sentinel', outcome.sentinel);
      count('rejected', outcome.rejected);
      const now = Date.now();
      for (const [reason, r] of rejected) {
        m?.remoteWriteRejected.inc({ reason }, r.count);
        if (now - (warnedAt.get(reason) ?? 0) >= 60_000) {
          warnedAt.set(reason, now);
          log.warn(
            { reason, samples: r.count, example: r.example },
            `remote_write: ${r.count} sample(s) not stored (${reason}), e.g. ${r.example}`,
          );
        }
      }
      req.log.debug({ ...outcome }, 'remote_write stored');
      return reply.code(204).send();
    },
  );
}
