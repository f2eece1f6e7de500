import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BrokenCircuitError } from 'cockatiel';
import { createLogger } from '../../../src/core/logger.js';
import {
  MemberGroup,
  isMemberFailure,
  isUnreachable,
  type MemberGate,
  type MemberGateOptions,
} from '../../../src/etcd/member-gate.js';

const refused = new Error(
  '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2379.',
);
const neverConnected = new Error(
  '4 DEADLINE_EXCEEDED: Deadline exceeded after 5.001s,name resolution: 0.001s,Waiting for LB pick',
);
/** A hung member on an open connection, or a healthy follower whose leader just died. */
const noAnswer = new Error(
  '4 DEADLINE_EXCEEDED: Deadline exceeded after 5.000s,remote_addr=127.0.0.1:36093',
);
const tooLarge = new Error('etcdserver: request is too large');

const FAST: MemberGateOptions = { failures: 2, firstProbeMs: 10, maxProbeMs: 40, maxOutMs: 60_000 };

/** The gates of a group of `members` (URLs m0, m1, ...) and the probes sent, by URL and time. */
function group(
  members = 3,
  answers: (url: string, n: number) => boolean = () => false,
  o: MemberGateOptions = FAST,
): {
  gate: (i: number) => MemberGate;
  gates: MemberGate[];
  probes: { url: string; at: number }[];
  close: () => void;
  /** What the group logged, level and message. */
  logged: { level: string; msg: string }[];
} {
  const probes: { url: string; at: number }[] = [];
  const logged: { level: string; msg: string }[] = [];
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => logged.push(JSON.parse(line) as (typeof logged)[0]) },
  });
  const g = new MemberGroup(
    members,
    (url) => {
      probes.push({ url, at: Date.now() });
      return Promise.resolve(answers(url, probes.filter((p) => p.url === url).length));
    },
    o,
    logger,
  );
  const gates = Array.from({ length: members }, (_, i) => g.gate(`m${i}`));
  const gate = (i: number): MemberGate => {
    const found = gates[i];
    if (found === undefined) throw new Error(`no member ${i}`);
    return found;
  };
  return { gate, gates, probes, close: () => g.close(), logged };
}

const fail = (err: Error) => (): Promise<never> => Promise.reject(err);
const ok = (): Promise<string> => Promise.resolve('ok');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fails `n` requests through the gate with `err`. */
async function failures(g: MemberGate, err: Error, n = 2): Promise<void> {
  for (let i = 0; i < n; i++) await assert.rejects(g.execute(fail(err)), { message: err.message });
}

/** Whether the gate turns a request away without running it. */
async function turnedAway(g: MemberGate): Promise<boolean> {
  let ran = false;
  try {
    await g.execute(() => {
      ran = true;
      return 'ok';
    });
  } catch (err) {
    if (err instanceof BrokenCircuitError) return !ran;
    throw err;
  }
  return false;
}

describe('MemberGate: which requests each etcd member gets', () => {
  it('tells a member that did not answer from an answer of the request’s own', () => {
    for (const e of [refused, neverConnected, new Error('14 UNAVAILABLE: Connection dropped')])
      assert.equal(isUnreachable(e) && isMemberFailure(e), true, e.message);
    assert.equal(isUnreachable(noAnswer), false);
    assert.equal(isMemberFailure(noAnswer), true);
    assert.equal(isMemberFailure(tooLarge), false);
    assert.equal(isMemberFailure('not an error'), false);
  });

  it('takes a member out after two failures in a row, not one; an answer between them starts again', async () => {
    const { gate } = group();
    const [a, b] = [gate(0), gate(1)];
    await failures(a, refused, 1);
    assert.equal(a.isOut, false);
    await assert.rejects(a.execute(fail(tooLarge)), /too large/);
    await failures(a, refused, 1);
    assert.equal(a.isOut, false);
    await failures(a, noAnswer, 1);
    assert.equal(a.isOut, true);
    assert.equal(await turnedAway(a), true);
    assert.equal(await turnedAway(b), false);
  });

  it('never takes out a majority: a leader died, and the followers’ deadlines leave them in', async () => {
    const { gate } = group(3);
    const [dead, f1, f2] = [gate(0), gate(1), gate(2)];
    await failures(dead, refused);
    assert.equal(dead.isOut, true);
    await failures(f1, noAnswer, 10);
    await failures(f2, noAnswer, 10);
    assert.equal(f1.isOut, false);
    assert.equal(f2.isOut, false);
    assert.equal(await f1.execute(ok), 'ok');
  });

  it('with 5 members, two may be out at once, not three', async () => {
    const { gates } = group(5);
    for (const g of gates.slice(0, 3)) await failures(g, noAnswer);
    assert.deepEqual(
      gates.map((g) => g.isOut),
      [true, true, false, false, false],
    );
  });

  it('sends a member that is out no request at all: a probe brings it back when it answers', async () => {
    // The member answers its third probe.
    const { gate, probes } = group(3, (_url, n) => n >= 3);
    const [m, other] = [gate(0), gate(1)];
    await failures(m, noAnswer);
    let ran = 0;
    while (m.isOut) {
      assert.equal(await turnedAway(m), true);
      ran++;
      await sleep(2);
    }
    assert.ok(ran > 3);
    assert.deepEqual(
      probes.map((p) => p.url),
      ['m0', 'm0', 'm0'],
    );
    assert.equal(await m.execute(ok), 'ok');
    // Its place is free again: another member may go out now.
    await failures(other, refused);
    assert.equal(other.isOut, true);
  });

  it('a member whose probe answered no longer counts as out: a follower hanging meanwhile goes out instead; its own trial failing then leaves it in', async () => {
    // m0 was killed and restarted: its probes answer. m2 hangs just after.
    const { gate, logged } = group(3, (url) => url === 'm0');
    const [restarted, hung] = [gate(0), gate(2)];
    await failures(restarted, refused);
    assert.equal(restarted.isOut, true);
    // Before its probe answers, m0 holds the one place: m2 stays in, and says so once.
    await failures(hung, noAnswer, 3);
    assert.equal(hung.isOut, false);
    const kept = logged.filter((l) =>
      l.msg.startsWith('etcd member m2 failed 2 requests in a row'),
    );
    assert.equal(kept.length, 1, JSON.stringify(logged));
    while (restarted.isOut) await sleep(2);
    // Its probe answered: a trial is due, and m2 may go out now (it failed again).
    await failures(hung, noAnswer, 1);
    assert.equal(hung.isOut, true);
    assert.equal(await turnedAway(hung), true);
    // m0's trial fails (its gRPC channel was stale): m2 holds the place, so m0 stays in.
    await failures(restarted, refused, 1);
    assert.equal(restarted.isOut, false);
    assert.equal(await restarted.execute(ok), 'ok');
    assert.ok(
      logged.some((l) => l.msg.startsWith('etcd member m0 failed the request that tried it again')),
      JSON.stringify(logged),
    );
  });

  it('says when a member leaves the rotation and when it is back, and why', async () => {
    const { gate, logged } = group(3, (_url, n) => n >= 2);
    const m = gate(1);
    await failures(m, refused);
    while (m.isOut) await sleep(2);
    assert.equal(await m.execute(ok), 'ok');
    assert.deepEqual(
      logged.map((l) => [l.level, l.msg.replace(/[\d.]+ s /, 'N s ')]),
      [
        [
          'warn',
          `etcd member m1 out of the rotation after 2 failed requests in a row (${refused.message}); probing it`,
        ],
        [
          'info',
          'etcd member m1 back in the rotation after N s (a probe answered, then a request went through)',
        ],
      ],
    );
  });

  it('probes after 1, 2 and 4 steps, then every 4 at most (the cap)', async () => {
    const { gate, probes } = group(3, (_url, n) => n >= 5);
    const m = gate(0);
    const from = Date.now();
    await failures(m, refused);
    while (m.isOut) await sleep(2);
    const gaps = probes.map((p, i) => p.at - (i === 0 ? from : (probes[i - 1]?.at ?? 0)));
    // 10, 20, 40, 40, 40 ms, and whatever a busy machine adds to a timer.
    for (const [i, want] of [10, 20, 40, 40, 40].entries()) {
      const gap = gaps[i] ?? -1;
      assert.ok(gap >= want - 2 && gap < want + 250, `gap ${i}: ${gap} ms, want ${want}`);
    }
  });

  it('stops probing once the client is closed (a closed client sends nothing)', async () => {
    // Five members: two may be out at once.
    const { gate, probes, close } = group(5, () => false);
    const m = gate(0);
    await failures(m, refused);
    while (probes.length < 2) await sleep(2);
    close();
    const sent = probes.length;
    // Probes were due every 10-40 ms: none goes out in 150 ms.
    await sleep(150);
    assert.equal(probes.length, sent);
    // And a member failing after the close is not probed either.
    await failures(gate(1), refused);
    await sleep(50);
    assert.equal(probes.length, sent);
  });

  it('brings a member back after maxOutMs even if no probe answers (its requests decide then)', async () => {
    const { gate } = group(3, () => false, { ...FAST, maxOutMs: 50 });
    const m = gate(0);
    await failures(m, refused);
    const from = Date.now();
    while (m.isOut) await sleep(2);
    assert.ok(Date.now() - from >= 50);
    await failures(m, refused);
    assert.equal(m.isOut, true);
  });

  it('a stream opens on a member that is in and says nothing; none opens on one that is out', async () => {
    const { gate } = group();
    const m = gate(0);
    const stream = { on: () => stream };
    assert.equal(await m.execute(() => stream), stream);
    await failures(m, noAnswer, 1);
    // Opened, the stream did not count as an answer between the two failures.
    assert.equal(await m.execute(() => stream), stream);
    await failures(m, noAnswer, 1);
    assert.equal(m.isOut, true);
    assert.equal(await turnedAway(m), true);
  });

  it('a stream’s failure reported after the fact counts if the member failed; a cancellation says nothing', async () => {
    const { gate } = group();
    const m = gate(0);
    // The etcd client reports a stream's error through the policy with a function that throws.
    const report = (err: Error) => (): never => {
      throw err;
    };
    await assert.rejects(m.execute(report(new Error('14 UNAVAILABLE: Connection dropped'))));
    await assert.rejects(m.execute(report(new Error('1 CANCELLED: Cancelled on client'))));
    await failures(m, new Error('14 UNAVAILABLE: Channel closed before call started'), 1);
    await assert.rejects(m.execute(report(new Error('14 UNAVAILABLE: Connection dropped'))));
    assert.equal(m.isOut, true);
  });
});
