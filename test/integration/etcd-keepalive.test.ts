/**
 * The etcd client's keepalive pings against a real etcd, which refuses pings on a connection with
 * no call in progress (it sends GOAWAY after two, and grpc-js wrote "rejected by server because of
 * excess pings" on stderr): a client left idle sends none, and one holding a watch open pings
 * without being refused. Both for 50 s: five pings at the client's interval of 10 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createEtcdClient } from '../../src/etcd/client.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';

/**
 * etcd (grpc-go) counts a ping on a connection with no call as a strike unless none came in the 2
 * hours before, and sends GOAWAY at the third strike: the fourth ping, 40 s in at one every 10 s.
 */
const IDLE_MS = 50_000;
// One server each: grpc-js shares a connection between clients of the same address and options,
// and the watch's stream would make the idle client's pings legitimate.
let idleServer: EtcdServer;
let watchServer: EtcdServer;

before(async () => {
  [idleServer, watchServer] = await Promise.all([startEtcd(), startEtcd()]);
});
after(() => Promise.all([idleServer.destroy(), watchServer.destroy()]));

/** What grpc-js writes through console.error while `fn` runs. */
async function grpcErrors(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]): void => {
    lines.push(args.map(String).join(' '));
  };
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return lines;
}

describe('etcd client keepalive', { timeout: 120_000 }, () => {
  it('an idle client and one holding a watch are not refused for excess pings', async () => {
    const idle = createEtcdClient({ endpoints: [idleServer.endpoint], timeoutMs: 5000 });
    const watching = createEtcdClient({ endpoints: [watchServer.endpoint], timeoutMs: 5000 });
    try {
      const lines = await grpcErrors(async () => {
        await idle.put('nexus-test/idle').value('1');
        const watcher = await watching.watch().key('nexus-test/watched').create();
        const seen: string[] = [];
        watcher.on('put', (kv) => seen.push(kv.value.toString()));
        await new Promise((r) => setTimeout(r, IDLE_MS));
        // Both still work: the idle one's next call, and the watch.
        assert.equal(await idle.get('nexus-test/idle').string(), '1');
        await watching.put('nexus-test/watched').value('2');
        for (const deadline = Date.now() + 5000; seen.length === 0 && Date.now() < deadline;)
          await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(seen, ['2']);
        await watcher.cancel();
      });
      assert.deepEqual(
        lines.filter((l) => /excess pings|too_many_pings|GOAWAY/i.test(l)),
        [],
      );
    } finally {
      idle.close();
      watching.close();
    }
  });
});
