import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ROOT, run, spawnNexus } from '../helpers/child.js';
import { startEtcd, uniqueCluster } from '../helpers/etcd.js';
import { metricSum } from '../helpers/metrics.js';
import { scalar, until } from '../helpers/pipeline.js';
import { freePort } from '../helpers/ports.js';
import { sharedPostgres, uniqueDatabase } from '../helpers/postgres.js';
import { createEtcdClient } from '../../src/etcd/client.js';

/**
 * etcd's space quota under the distributed pipeline (issue 17): etcd with a small
 * --quota-backend-bytes, a real `nexus streamer` and `nexus collector`, PostgreSQL.
 *
 * 1. With no collector, the streamer (default MAX_QUEUE_DEPTH, 10,000 messages: far more than the
 *    quota holds) pauses on etcd's space (ETCD_QUOTA_BYTES): etcd stays below the quota, no alarm.
 * 2. Filler keys force the NOSPACE alarm anyway: the streamer and the collector say so once in
 *    their logs, in nexus_etcd_alarms and in /readyz (503 naming NOSPACE), and neither exits.
 * 3. The runbook of docs/operations.md, run as written with etcdctl (compact, defrag, disarm):
 *    every reading of the file is stored exactly once, the queue and the dead letters are empty.
 */
const QUOTA = 24 * 1024 * 1024;
const RECORDS = 90_000;

const pg = await sharedPostgres();
// The helper's auto-compaction keeps 10,000 revisions: none is compacted during the test, so what
// frees space is the runbook's compaction.
const etcd = await startEtcd({ quotaBytes: QUOTA });
const dir = mkdtempSync(join(tmpdir(), 'nexus-nospace-'));
after(async () => {
  await etcd.destroy();
  await pg.release();
  rmSync(dir, { recursive: true, force: true });
});

interface Proc {
  readonly child: ChildProcess;
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  readonly port: number;
  log(): string;
}

/** A nexus process; `portVar` names the port its /readyz answers on. */
async function start(
  args: string[],
  env: Record<string, string>,
  portVar: 'METRICS_PORT' | 'PORT' = 'METRICS_PORT',
): Promise<Proc> {
  const port = await freePort();
  const child = spawnNexus(args, { ...env, [portVar]: String(port) });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const done = run(child);
  return { child, done, port, log: () => out };
}

async function readyz(p: Proc): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${p.port}/readyz`);
  return { status: res.status, body: await res.text() };
}

async function metrics(p: Proc): Promise<string> {
  return (await fetch(`http://127.0.0.1:${p.port}/metrics`)).text();
}

/** nexus_etcd_alarms{alarm="NOSPACE"} in an exposition, or undefined without it. */
function nospaceGauge(exposition: string): number | undefined {
  const line = exposition
    .split('\n')
    .find((l) => l.startsWith('nexus_etcd_alarms{') && l.includes('alarm="NOSPACE"'));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The log lines (JSON) at warn or above whose message names `word`. */
function loud(p: Proc, word: string): string[] {
  return p
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string })
    .filter((l) => ['warn', 'error', 'fatal'].includes(l.level) && l.msg.includes(word))
    .map((l) => l.msg);
}

/** Runs a bash script with etcdctl pointed at this etcd (ETCDCTL_ENDPOINTS), failing on any error. */
function etcdctl(script: string): string {
  const env: NodeJS.ProcessEnv = { ...process.env, ETCDCTL_API: '3' };
  env.ETCDCTL_ENDPOINTS = `http://${etcd.endpoint}`;
  delete env.BASH_ENV;
  return execFileSync('bash', ['--norc', '--noprofile', '-eo', 'pipefail', '-c', script], {
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

/** The recovery script of docs/operations.md, "The NOSPACE alarm". */
function runbook(): string {
  const doc = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
  const section = doc.slice(doc.indexOf('### The NOSPACE alarm'));
  const start = section.indexOf('```bash\n') + '```bash\n'.length;
  return section.slice(start, section.indexOf('```', start));
}

describe('etcd NOSPACE under the distributed pipeline', () => {
  it('backpressure keeps etcd under its quota; an alarm stops writes loudly; the runbook resumes with nothing lost', async () => {
    const client = createEtcdClient({ endpoints: [etcd.endpoint], timeoutMs: 5000 });
    const cluster = uniqueCluster('nospace');
    const url = await pg.server.createDatabase(uniqueDatabase('nospace'));
    const csv = join(dir, 'fleet.csv');
    const env = {
      DATABASE_URL: url,
      ETCD_ENDPOINTS: etcd.endpoint,
      CLUSTER_ID: cluster,
      LOG_LEVEL: 'info',
      POLL_TIMEOUT: '500ms',
      ETCD_QUOTA_BYTES: String(QUOTA),
    };
    const gen = await run(
      spawnNexus(['generate', '--records', String(RECORDS), '--out', csv], env),
    );
    assert.equal(gen.code, 0, gen.stderr);
    const readings = readFileSync(csv, 'utf8').trimEnd().split('\n').length - 1;
    const migrate = await run(spawnNexus(['migrate'], env));
    assert.equal(migrate.code, 0, migrate.stderr);

    const status = async (): Promise<{ dbSize: number; alarms: number }> => {
      const s = await client.maintenance.status();
      const a = await client.maintenance.alarm({ action: 'Get', memberID: 0, alarm: 'None' });
      return { dbSize: Number(s.dbSize), alarms: a.alarms.length };
    };

    // 1. No collector: the streamer fills etcd up to 80% of ETCD_QUOTA_BYTES and waits.
    const streamer = await start(['streamer', '--csv', csv], {
      ...env,
      LOOP_MODE: 'false',
      STREAM_INTERVAL: '0',
      // Messages as JSON, about six times the bytes of compressed ones: the file fills the quota.
      QUEUE_COMPRESSION: 'none',
    });
    let collector: Proc | undefined;
    let gateway: Proc | undefined;
    try {
      assert.ok(
        await until(
          async () => streamer.log().includes('publishing paused until etcd has room'),
          60_000,
        ),
        `the streamer did not pause on etcd's space (exit ${String(streamer.child.exitCode)}): ${streamer.log().slice(-800)}`,
      );
      // It creeps up to the pause and stays there: etcd below its quota, no alarm.
      let published = -1;
      assert.ok(
        await until(
          async () => {
            const m = await metrics(streamer);
            const now = metricSum(m, 'nexus_streamer_records_published_total') ?? 0;
            const still = now === published && metricSum(m, 'nexus_streamer_backpressure') === 1;
            published = now;
            return still;
          },
          30_000,
          2000,
        ),
        `the streamer did not settle in its pause: ${streamer.log().slice(-3000)}`,
      );
      assert.ok(published > 0 && published < readings, `published ${published}`);
      const full = await status();
      assert.ok(full.dbSize < QUOTA, `etcd database ${full.dbSize} >= quota ${QUOTA}`);
      assert.equal(full.alarms, 0);
      assert.equal(streamer.child.exitCode, null, 'the streamer exited');
      assert.equal((await readyz(streamer)).status, 200, 'a streamer waiting for space is ready');

      // 2. A collector starts; then filler keys force the NOSPACE alarm anyway.
      collector = await start(['collector'], env);
      const c = collector;
      // A gateway too: its live feed writes to etcd (AUTH_MODE=none: only /readyz is asked).
      gateway = await start(['gateway'], { ...env, HOST: '127.0.0.1', AUTH_MODE: 'none' }, 'PORT');
      const g = gateway;
      assert.ok(
        await until(async () => (await readyz(c)).status === 200, 30_000),
        `collector not ready: ${c.log().slice(-500)}`,
      );
      assert.ok(
        await until(async () => (await readyz(g)).status === 200, 30_000),
        `gateway not ready: ${g.log().slice(-500)}`,
      );
      // It drains the queue; the streamer stays paused (nothing compacted yet: no room made).
      assert.ok(
        await until(async () => metricSum(await metrics(c), 'nexus_queue_messages') === 0, 60_000),
        'the collector did not drain the queue',
      );
      const still = await metrics(streamer);
      assert.equal(metricSum(still, 'nexus_streamer_records_published_total'), published);
      assert.equal(metricSum(still, 'nexus_streamer_backpressure'), 1);
      const filler = 'x'.repeat(256 * 1024);
      let raised = false;
      for (let i = 0; i < 200 && !raised; i++) {
        try {
          await client.put(`/filler/${i % 4}`).value(filler);
        } catch (err) {
          raised = String(err).includes('database space exceeded');
          if (!raised) throw err;
        }
      }
      assert.ok(raised, 'the filler did not raise NOSPACE');
      assert.equal((await status()).alarms, 1);
      for (const [name, p] of [
        ['streamer', streamer],
        ['collector', c],
      ] as const) {
        let last = { status: 0, body: '' };
        assert.ok(
          await until(async () => {
            last = await readyz(p);
            return last.status === 503 && last.body.includes('NOSPACE');
          }, 20_000),
          `${name} /readyz during the alarm: ${last.status} ${last.body.slice(0, 300)}`,
        );
        assert.ok(last.body.includes('docs/operations.md'), `${name}: no runbook in /readyz`);
        assert.equal(nospaceGauge(await metrics(p)), 1, `${name}: nexus_etcd_alarms`);
      }
      let gw = { status: 0, body: '' };
      assert.ok(
        await until(async () => {
          gw = await readyz(g);
          return gw.status === 503 && gw.body.includes('NOSPACE');
        }, 20_000),
        `gateway /readyz during the alarm: ${gw.status} ${gw.body.slice(0, 300)}`,
      );
      // The alarm lasts a while: nobody exits, nobody floods the log.
      await new Promise((r) => setTimeout(r, 5000));
      assert.equal(streamer.child.exitCode, null, 'the streamer exited during the alarm');
      assert.equal(c.child.exitCode, null, 'the collector exited during the alarm');
      for (const [name, p] of [
        ['streamer', streamer],
        ['collector', c],
      ] as const) {
        const lines = loud(p, 'NOSPACE');
        assert.ok(lines.length >= 1, `${name}: no log line names NOSPACE: ${p.log().slice(-1500)}`);
        assert.ok(
          lines.length <= 3,
          `${name}: ${lines.length} lines name NOSPACE: ${lines.join(' | ')}`,
        );
        assert.ok(
          lines.some((l) => l.includes('docs/operations.md')),
          `${name}: no runbook named: ${lines.join(' | ')}`,
        );
      }

      // 3. The runbook of docs/operations.md "The NOSPACE alarm", as written there, on this etcd.
      const out = etcdctl(runbook().replace(/^export ETCDCTL_ENDPOINTS=.*$/m, ''));
      assert.ok(out.includes('alarm:NOSPACE'), `the runbook's alarm list: ${out.slice(0, 300)}`);
      assert.ok(out.includes('Finished defragmenting'), `no defragmentation: ${out.slice(0, 600)}`);
      assert.equal(etcdctl('etcdctl alarm list').trim(), '');

      // Both carry on by themselves: every reading stored once, the queue and dead letters empty.
      assert.ok(
        await until(() => Promise.resolve(streamer.child.exitCode !== null), 60_000),
        `the streamer did not finish: ${streamer.log().slice(-2500)}`,
      );
      const summary = await streamer.done;
      assert.equal(summary.code, 0, summary.stderr);
      assert.ok(
        await until(
          async () => (await scalar(url, 'SELECT count(*) FROM samples')) === readings,
          60_000,
        ),
        `stored ${await scalar(url, 'SELECT count(*) FROM samples')} of ${readings}`,
      );
      assert.ok(
        await until(async () => metricSum(await metrics(c), 'nexus_queue_messages') === 0, 20_000),
        'the queue is not empty',
      );
      assert.equal(await scalar(url, 'SELECT count(*) FROM samples'), readings);
      assert.ok(
        await until(async () => (await readyz(c)).status === 200, 20_000),
        'collector not ready after the runbook',
      );
      assert.equal(nospaceGauge(await metrics(c)), 0);
      assert.equal(c.child.exitCode, null, 'the collector exited');
      assert.equal(g.child.exitCode, null, 'the gateway exited');
      assert.ok(
        await until(async () => (await readyz(g)).status === 200, 20_000),
        'gateway not ready after the runbook',
      );
      assert.ok(
        c.log().includes('disarmed; carrying on') &&
          streamer.log().includes('disarmed; carrying on'),
        'no log line says the alarm is gone',
      );
    } finally {
      for (const p of [streamer, collector, gateway]) {
        if (p !== undefined && p.child.exitCode === null) {
          p.child.kill('SIGTERM');
          await p.done;
        }
      }
      client.close();
    }
  });
});
