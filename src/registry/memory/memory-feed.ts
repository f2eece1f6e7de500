import { EventEmitter } from 'node:events';
import type { TelemetryRecord } from '../../core/record.js';
import { feedRecord, type FeedBatch, type LiveFeed } from '../feed.js';

/** The commit feed of the embedded mode, in process. */
export class MemoryFeed implements LiveFeed {
  private readonly events = new EventEmitter();

  constructor() {
    this.events.setMaxListeners(0);
  }

  async publish(clusterId: string, records: readonly TelemetryRecord[]): Promise<void> {
    if (records.length === 0) return;
    // What the etcd feed delivers after its round trip through the wire form, without it.
    const batch: FeedBatch = {
      cluster_id: clusterId,
      committed_at: Date.now(),
      records: records.map(feedRecord),
    };
    this.events.emit(`feed:${clusterId}`, batch);
    this.events.emit('feed:*', batch);
  }

  async subscribe(
    clusterId: string,
    onBatch: (batch: FeedBatch) => void,
  ): Promise<() => Promise<void>> {
    const name = `feed:${clusterId}`;
    this.events.on(name, onBatch);
    return async () => {
      this.events.off(name, onBatch);
    };
  }

  async announceListener(): Promise<void> {
    // In one process every publish is delivered; nothing to announce.
  }

  status(): string | undefined {
    return undefined;
  }

  async close(): Promise<void> {
    this.events.removeAllListeners();
  }
}
