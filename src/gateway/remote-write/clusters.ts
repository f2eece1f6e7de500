import { NexusError } from '../../core/errors.js';
import { RecordPublisher } from '../../queue/record-publisher.js';
import type { Queue } from '../../queue/types.js';

/** A cluster's queue as the CLI opens it, with how to let it go. */
export interface OpenedQueue {
  readonly queue: Queue;
  close(): Promise<void>;
}

export interface ClusterQueuesOptions {
  /** Opens the queue of a cluster (throws a NexusError if this process cannot serve that cluster). */
  readonly open: (cluster: string) => OpenedQueue;
  /** REMOTE_WRITE_MAX_CLUSTERS: queues opened at most. */
  readonly maxClusters: number;
  /** The producer named in every envelope. */
  readonly producer: string;
  readonly batchSize: number;
  readonly maxDepth: number;
}

/**
 * One RecordPublisher per cluster, its queue opened on first use, at most `maxClusters` of them
 * (a request naming one more is refused: the cluster label comes from the sender).
 */
export class ClusterQueues {
  private readonly opened = new Map<
    string,
    { publisher: RecordPublisher; close(): Promise<void> }
  >();

  constructor(private readonly o: ClusterQueuesOptions) {}

  /** The publishers of these clusters, opening those not open yet (all or none). */
  publishers(clusters: Iterable<string>): Map<string, RecordPublisher> {
    const wanted = [...new Set(clusters)];
    const fresh = wanted.filter((c) => !this.opened.has(c));
    if (this.opened.size + fresh.length > this.o.maxClusters) {
      throw new NexusError(
        'LIMIT_EXCEEDED',
        `remote_write: the request names cluster(s) ${fresh.map((c) => `"${c.slice(0, 64)}"`).join(', ')} beyond the ${this.o.maxClusters} this gateway publishes to (REMOTE_WRITE_MAX_CLUSTERS, counted: ${[...this.opened.keys()].join(', ')})`,
      );
    }
    for (const cluster of fresh) {
      const opened = this.o.open(cluster);
      this.opened.set(cluster, {
        publisher: new RecordPublisher({
          queue: opened.queue,
          producer: this.o.producer,
          batchSize: this.o.batchSize,
          maxDepth: this.o.maxDepth,
        }),
        close: () => opened.close(),
      });
    }
    return new Map(
      wanted.map((c) => [c, (this.opened.get(c) as { publisher: RecordPublisher }).publisher]),
    );
  }

  get size(): number {
    return this.opened.size;
  }

  async close(): Promise<void> {
    const all = [...this.opened.values()];
    this.opened.clear();
    await Promise.allSettled(all.map((q) => q.close()));
  }
}
