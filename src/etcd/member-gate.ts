import {
  BrokenCircuitError,
  EventEmitter,
  type IDefaultPolicyContext,
  type IFailureEvent,
  type IPolicy,
  type ISuccessEvent,
} from 'cockatiel';
import { describeError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/**
 * A member this client cannot reach: the connection was refused or dropped, or never came up
 * before the deadline.
 */
export function isUnreachable(err: unknown): boolean {
  return (
    err instanceof Error &&
    /No connection established|Connection dropped|Waiting for LB pick|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH/.test(
      err.message,
    )
  );
}

/**
 * A request a member did not answer: unreachable, or no answer before the deadline. A hung member
 * gives deadlines on its open connections; so does a healthy follower holding requests it had
 * forwarded to a leader that just died, which is why the members taken out are a minority at most.
 */
export function isMemberFailure(err: unknown): err is Error {
  return (
    isUnreachable(err) ||
    (err instanceof Error && /DEADLINE_EXCEEDED|Deadline exceeded/.test(err.message))
  );
}

/** Whether a member answers at all (its URL, as the client was given it); never rejects. */
export type MemberProbe = (url: string) => Promise<boolean>;

export interface MemberGateOptions {
  /** Failures in a row (`isMemberFailure`) that take a member out of the rotation. */
  readonly failures: number;
  /** A member out is probed after this long, then after twice as long... */
  readonly firstProbeMs: number;
  /** ...up to this between probes. */
  readonly maxProbeMs: number;
  /**
   * A member out this long comes back even if its probes have not answered (a listener that does
   * not serve the probe must not keep a healthy member out for good); its requests then decide.
   */
  readonly maxOutMs: number;
}

export const MEMBER_GATE: MemberGateOptions = {
  failures: 2,
  firstProbeMs: 1000,
  maxProbeMs: 5000,
  maxOutMs: 30_000,
};

/**
 * The members of one client, as their gates see them: at most a minority of them out at once (1 of
 * 3, 2 of 5). A majority is needed for any write, so when more seem to fail it is the cluster (an
 * election, no quorum), not the members: none is taken out then, and requests keep going to all.
 */
export class MemberGroup {
  private out = 0;
  /** Probes waiting for their time (none are sent once the client is closed). */
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    private readonly members: number,
    private readonly probe: MemberProbe,
    private readonly o: MemberGateOptions = MEMBER_GATE,
    /** Where a member leaving and rejoining the rotation is said (operators see which, and why). */
    readonly logger?: Logger,
  ) {}

  /** The gate of the member at `url`. */
  gate(url: string): MemberGate {
    return new MemberGate(url, this.o, this, this.probe);
  }

  /** How many members are out now. */
  get outNow(): number {
    return this.out;
  }

  /** Takes one member out, if a minority stays out; false if not. */
  takeOut(): boolean {
    if (this.out + 1 > Math.floor((this.members - 1) / 2)) return false;
    this.out++;
    return true;
  }

  bringBack(): void {
    this.out = Math.max(0, this.out - 1);
  }

  /** Runs `fn` in `ms` unless the group is closed by then. */
  later(ms: number, fn: () => void): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  /** The client is closed: no member is probed any more. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

/**
 * Which requests one etcd member gets (the etcd client's per-host policy, replacing its circuit
 * breaker). Requests pass while the member answers. After `failures` in a row that it did not
 * answer (`isMemberFailure`), it is out, if its group lets it (a minority out at most): every
 * request is turned away at once, so the client sends it to another member, and streams (watches,
 * lease keepalives) are opened elsewhere too. It comes back when a probe, sent out of band after 1
 * s, 2 s, 4 s and then every 5 s, gets an answer from it, and then one request has gone through it
 * (its gRPC connection may be stale), or after `maxOutMs` whatever the probes say. A member that
 * still hangs is never sent a request.
 *
 * The etcd client's own breaker differs in the two ways that stopped or slowed ingest with two
 * healthy members (docs/operations.md, "An etcd member fails"): it takes out any member, so the
 * deadlines of requests that healthy followers had forwarded to a leader that died took all three
 * members out at once (every request then failed unsent for 5 s while the components' backoff
 * grew); and it tries a member again with a real request, which on a member still hung waits for
 * `ETCD_TIMEOUT` while every other request to that member waits behind it.
 */
export class MemberGate implements IPolicy {
  declare readonly _altReturn: never;
  private readonly successes = new EventEmitter<ISuccessEvent>();
  private readonly failuresSeen = new EventEmitter<IFailureEvent>();
  readonly onSuccess = this.successes.addListener;
  readonly onFailure = this.failuresSeen.addListener;
  private inARow = 0;
  /**
   * Out of the rotation: since when, whether a probe answered (one request may then try), and
   * whether the group counts it as out. Once a probe answered it no longer does: it takes requests
   * again (a trial), so another member failing meanwhile (a follower hanging just after this one
   * restarted) may go out instead of holding every request it gets for `ETCD_TIMEOUT`.
   */
  private out: { since: number; trial: 'no' | 'due' | 'running'; counted: boolean } | undefined;

  constructor(
    private readonly url: string,
    private readonly o: MemberGateOptions,
    private readonly group: MemberGroup,
    private readonly probe: MemberProbe,
  ) {}

  /** Whether requests are turned away (the member is out, and no trial is due). */
  get isOut(): boolean {
    return this.out !== undefined && this.out.trial !== 'due';
  }

  async execute<T>(fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T): Promise<T> {
    const out = this.out;
    let trial = false;
    if (out !== undefined) {
      if (out.trial !== 'due') throw new BrokenCircuitError();
      out.trial = 'running';
      trial = true;
    }
    const started = Date.now();
    let result: PromiseLike<T> | T;
    try {
      result = fn({ signal: new AbortController().signal });
    } catch (err) {
      // A stream's failure, reported after the fact (the etcd client's markFailed): a member that
      // failed counts; anything else says nothing of the member.
      if (isMemberFailure(err)) this.failed(err, started, trial);
      else if (trial && out !== undefined) out.trial = 'due';
      throw err;
    }
    // A stream just opened (a watch, a lease's keepalives): it says nothing yet of the member. One
    // opened as the trial of a member that is out is cancelled, and opened again on another.
    if (!isThenable(result)) {
      if (!trial || out === undefined) return result;
      out.trial = 'due';
      cancelStream(result);
      throw new BrokenCircuitError();
    }
    try {
      const value = await result;
      this.answered();
      this.successes.emit({ duration: Date.now() - started });
      return value;
    } catch (err) {
      if (isMemberFailure(err)) this.failed(err, started, trial);
      // It answered, with an error of the request's own; unless the client cancelled the request
      // itself (it closes a member's channels after an error), which says nothing.
      else if (!isCancelledHere(err)) this.answered();
      else if (trial && out !== undefined) out.trial = 'due';
      throw err;
    }
  }

  private answered(how = 'a probe answered, then a request went through'): void {
    this.inARow = 0;
    const out = this.out;
    if (out === undefined) return;
    this.out = undefined;
    if (out.counted) this.group.bringBack();
    this.group.logger?.info(
      { member: this.url, out_ms: Date.now() - out.since },
      `etcd member ${this.url} back in the rotation after ${((Date.now() - out.since) / 1000).toFixed(1)} s (${how})`,
    );
  }

  private failed(err: Error, started: number, trial: boolean): void {
    this.inARow++;
    this.failuresSeen.emit({
      duration: Date.now() - started,
      handled: true,
      reason: { error: err },
    });
    if (trial && this.out !== undefined) {
      // Its probe answered, its trial did not: out again, probed from the start, if the group lets
      // it (another member may have gone out meanwhile); if not, it is in the rotation.
      if (this.group.takeOut()) {
        this.out.trial = 'no';
        this.out.counted = true;
        this.probeAfter(this.o.firstProbeMs);
        return;
      }
      this.out = undefined;
      this.keptIn(err, 'the request that tried it again');
      return;
    }
    if (this.out !== undefined || this.inARow < this.o.failures) return;
    if (!this.group.takeOut()) {
      // Said once a run of failures: a majority would be out (an election, no quorum, or another
      // member out already), so requests keep coming to it.
      if (this.inARow === this.o.failures) this.keptIn(err, `${this.inARow} requests in a row`);
      return;
    }
    this.out = { since: Date.now(), trial: 'no', counted: true };
    const why = describeError(err);
    this.group.logger?.warn(
      { member: this.url, err: why },
      `etcd member ${this.url} out of the rotation after ${this.inARow} failed requests in a row (${why}); probing it`,
    );
    this.probeAfter(this.o.firstProbeMs);
  }

  /** Says that this member failed `what` but stays in: its group has a minority out already. */
  private keptIn(err: Error, what: string): void {
    const out = this.group.outNow;
    this.group.logger?.warn(
      { member: this.url, err: describeError(err), out },
      `etcd member ${this.url} failed ${what}, but stays in the rotation: ${out} member(s) out already, and a majority must stay in`,
    );
  }

  private probeAfter(ms: number): void {
    this.group.later(ms, () => {
      void this.probe(this.url).then((answered) => {
        const out = this.out;
        if (out === undefined || out.trial !== 'no') return;
        // It answers: the next request tries it (its gRPC channel may still be stale).
        if (answered) {
          out.trial = 'due';
          out.counted = false;
          this.group.bringBack();
        } else if (Date.now() - out.since >= this.o.maxOutMs)
          this.answered(`out for ${this.o.maxOutMs / 1000} s, whatever its probes say`);
        else this.probeAfter(Math.min(this.o.maxProbeMs, 2 * ms));
      });
    });
  }
}

/** Cancels a gRPC stream (its `cancel()`), if that is what `x` is. */
function cancelStream(x: unknown): void {
  const cancel = (x as { cancel?: unknown } | null)?.cancel;
  if (typeof cancel === 'function') (cancel as () => void).call(x);
}

/** A request this client cancelled or whose channel it closed before it started. */
function isCancelledHere(err: unknown): boolean {
  return err instanceof Error && /CANCELLED|Cancelled on client|Channel closed/i.test(err.message);
}

function isThenable<T>(x: PromiseLike<T> | T): x is PromiseLike<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}
