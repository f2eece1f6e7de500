import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

/** One member of a test cluster: its own ports, data directory and process. */
export interface EtcdMember {
  readonly name: string;
  /** host:port of its client URL (what ETCD_ENDPOINTS lists). */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** The pid of the running process, if any. */
  readonly pid: number | undefined;
  /** Resolves when the current process exits (signal or code), for a test to see it happen. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client endpoint, comma-separated (ETCD_ENDPOINTS). */
  readonly endpoints: string;
  /** The index of the member every reachable member names as leader (waits for one). */
  leader(timeoutMs?: number): Promise<number>;
  /** SIGKILL to member i, by its pid; resolves once the process is gone (data kept). */
  kill(i: number): Promise<void>;
  /** SIGSTOP to member i: hung, its connections stay open. */
  pause(i: number): void;
  /** SIGCONT to member i. */
  resume(i: number): void;
  /** Starts member i again on its data directory and ports; resolves once it is healthy. */
  restart(i: number): Promise<void>;
  /**
   * Waits until member i has applied every entry the leader held when called (a restarted member
   * catching up on what it missed); resolves with the milliseconds it took.
   */
  caughtUp(i: number, timeoutMs?: number): Promise<number>;
  /** Kills every member and deletes the data. */
  destroy(): Promise<void>;
}

interface Status {
  readonly memberId: string;
  readonly leader: string;
  /** The last raft entry it holds, and the last it has applied. */
  readonly raftIndex: number;
  readonly applied: number;
}

/** A member's status through etcd's JSON gateway (maintenance Status), or undefined if it does not answer. */
async function status(endpoint: string, timeoutMs = 1500): Promise<Status | undefined> {
  try {
    const res = await fetch(`http://${endpoint}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await res.json()) as {
      header?: { member_id?: string };
      leader?: string;
      raftIndex?: string;
      raftAppliedIndex?: string;
    };
    const memberId = body.header?.member_id;
    const leader = body.leader;
    if (memberId === undefined || leader === undefined || leader === '0') return undefined;
    const raftIndex = Number(body.raftIndex ?? 0);
    return { memberId, leader, raftIndex, applied: Number(body.raftAppliedIndex ?? raftIndex) };
  } catch {
    return undefined;
  }
}

async function healthy(endpoint: string, timeoutMs: number, stderr: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://${endpoint}/health`, {
        signal: AbortSignal.timeout(2000),
      });
      const body = (await res.json()) as { health?: string };
      if (body.health === 'true') return;
      last = JSON.stringify(body);
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `etcd at ${endpoint} not healthy after ${timeoutMs} ms: ${last}; stderr: ${stderr()}`,
  );
}

interface MemberState {
  name: string;
  endpoint: string;
  peerUrl: string;
  dataDir: string;
  proc: ChildProcess | undefined;
  stderr: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts a throwaway 3-member etcd cluster (Debian's etcd-server) on free loopback ports, each
 * member with its own data directory (in /dev/shm when there is one). Members are stopped by their
 * own pid, also when the test process exits without cleaning up.
 */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  const root = mkdtempSync(join(base, 'nexus-etcd-cluster-'));
  const token = `nexus-ha-${process.pid}-${Date.now().toString(36)}`;
  const states: MemberState[] = [];
  for (let i = 0; i < size; i++) {
    const [client, peer] = [await freePort(), await freePort()];
    states.push({
      name: `m${i}`,
      endpoint: `127.0.0.1:${client}`,
      peerUrl: `http://127.0.0.1:${peer}`,
      dataDir: join(root, `m${i}`),
      proc: undefined,
      stderr: '',
      exited: new Promise(() => undefined),
    });
  }
  const initialCluster = states.map((s) => `${s.name}=${s.peerUrl}`).join(',');
  const killAll = (): void => {
    for (const s of states) {
      if (s.proc?.pid !== undefined && s.proc.exitCode === null && s.proc.signalCode === null) {
        try {
          process.kill(s.proc.pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    }
  };
  process.once('exit', killAll);

  const spawnMember = (s: MemberState): void => {
    const args = [
      '--name',
      s.name,
      '--data-dir',
      s.dataDir,
      '--listen-client-urls',
      `http://${s.endpoint}`,
      '--advertise-client-urls',
      `http://${s.endpoint}`,
      '--listen-peer-urls',
      s.peerUrl,
      '--initial-advertise-peer-urls',
      s.peerUrl,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-token',
      token,
      '--initial-cluster-state',
      'new',
      '--auto-compaction-mode',
      'revision',
      '--auto-compaction-retention',
      '10000',
      '--log-level',
      'error',
    ];
    const child = spawn(process.env.ETCD_BIN ?? 'etcd', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    s.stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      s.stderr = (s.stderr + d.toString()).slice(-4000);
    });
    s.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }));
      child.once('error', () => resolve({ code: null, signal: null }));
    });
    s.proc = child;
  };

  const waitHealthy = (s: MemberState): Promise<void> =>
    Promise.race([
      healthy(s.endpoint, 30_000, () => s.stderr),
      s.exited.then(({ code, signal }) => {
        throw new Error(`etcd ${s.name} exited (${code ?? signal}): ${s.stderr}`);
      }),
    ]);

  const member = (i: number): MemberState => {
    const s = states[i];
    if (s === undefined) throw new Error(`no member ${i}`);
    return s;
  };

  for (const s of states) spawnMember(s);
  try {
    await Promise.all(states.map(waitHealthy));
  } catch (err) {
    killAll();
    rmSync(root, { recursive: true, force: true });
    throw err;
  }

  return {
    members: states.map((s) => ({
      get name() {
        return s.name;
      },
      get endpoint() {
        return s.endpoint;
      },
      get peerUrl() {
        return s.peerUrl;
      },
      get dataDir() {
        return s.dataDir;
      },
      get pid() {
        return s.proc?.pid;
      },
      get exited() {
        return s.exited;
      },
    })),
    endpoints: states.map((s) => s.endpoint).join(','),
    leader: async (timeoutMs = 15_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const seen = await Promise.all(states.map((s) => status(s.endpoint)));
        const answered = seen.filter((x): x is Status => x !== undefined);
        const leaders = new Set(answered.map((x) => x.leader));
        const [id] = [...leaders];
        if (answered.length > 0 && leaders.size === 1 && id !== undefined) {
          const index = seen.findIndex((x) => x?.memberId === id);
          if (index >= 0) return index;
        }
        if (Date.now() > deadline) {
          throw new Error(`no agreed leader after ${timeoutMs} ms: ${JSON.stringify(seen)}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    kill: async (i) => {
      const s = member(i);
      const pid = s.proc?.pid;
      if (pid === undefined || s.proc?.exitCode !== null || s.proc.signalCode !== null) return;
      process.kill(pid, 'SIGKILL');
      await s.exited;
    },
    pause: (i) => {
      const pid = member(i).proc?.pid;
      if (pid !== undefined) process.kill(pid, 'SIGSTOP');
    },
    resume: (i) => {
      const pid = member(i).proc?.pid;
      if (pid !== undefined) process.kill(pid, 'SIGCONT');
    },
    restart: async (i) => {
      const s = member(i);
      if (s.proc !== undefined && s.proc.exitCode === null && s.proc.signalCode === null) {
        throw new Error(`etcd ${s.name} is still running (pid ${s.proc.pid ?? '?'})`);
      }
      spawnMember(s);
      await waitHealthy(s);
    },
    caughtUp: async (i, timeoutMs = 60_000) => {
      const started = Date.now();
      const deadline = started + timeoutMs;
      let target: number | undefined;
      let last: Status | undefined;
      for (;;) {
        if (target === undefined) {
          const seen = await Promise.all(states.map((s) => status(s.endpoint)));
          const lead = seen.find((x) => x !== undefined && x.memberId === x.leader);
          target = lead?.raftIndex;
        }
        last = await status(member(i).endpoint);
        if (target !== undefined && last !== undefined && last.applied >= target) {
          return Date.now() - started;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `etcd ${member(i).name} had not caught up after ${timeoutMs} ms: applied ${last?.applied ?? '?'} of ${target ?? '? (no leader)'}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    destroy: async () => {
      killAll();
      await Promise.all(states.filter((s) => s.proc !== undefined).map((s) => s.exited));
      process.off('exit', killAll);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
