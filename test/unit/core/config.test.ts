import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SETTINGS, loadConfig, redactConfig, type Config } from '../../../src/core/config.js';
import { NexusError } from '../../../src/core/errors.js';

/** Asserts that loading fails with CONFIG_INVALID and that the message matches every pattern. */
function assertInvalid(
  env: Record<string, string>,
  patterns: readonly RegExp[],
  flags: Partial<Record<keyof Config, string>> = {},
): void {
  assert.throws(
    () => loadConfig(env, flags),
    (err: unknown) => {
      assert.ok(err instanceof NexusError, String(err));
      assert.equal(err.code, 'CONFIG_INVALID');
      for (const p of patterns) assert.match(err.message, p);
      return true;
    },
  );
}

describe('loadConfig', () => {
  it('uses the documented defaults with an empty environment', () => {
    const c = loadConfig({});
    assert.equal(c.clusterId, 'local-cluster');
    assert.equal(c.batchSize, 100);
    assert.equal(c.streamInterval, 3000);
    assert.equal(c.loopMode, true);
    assert.equal(c.pollTimeout, 5000);
    assert.deepEqual(c.etcdEndpoints, ['localhost:2379']);
    assert.equal(c.etcdTimeout, 5000);
    assert.equal(c.maxAttempts, 5);
    assert.equal(c.retryBase, 1000);
    assert.equal(c.retryCap, 300_000);
    assert.equal(c.messageTtl, 7 * 86_400_000);
    assert.equal(c.leaseTtl, 10_000);
    assert.equal(c.enableWatchApi, true);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.queueBackend, 'etcd');
    assert.equal(c.queuePrefix, '/telemetry/queue');
    assert.equal(c.timestampMode, 'auto');
    assert.equal(c.metricsPort, 0);
    assert.equal(c.etcdPassword, '');
    assert.equal(c.csvFile, 'samples/dcgm_metrics_20250718_134233.csv');
  });

  it('has a value for every setting and is frozen', () => {
    const c = loadConfig({});
    assert.deepEqual(Object.keys(c).sort(), Object.keys(SETTINGS).sort());
    assert.ok(Object.isFrozen(c));
  });

  it('takes values from the environment', () => {
    const c = loadConfig({
      CLUSTER_ID: 'prod-east',
      BATCH_SIZE: '250',
      STREAM_INTERVAL: '250ms',
      LOOP_MODE: 'false',
      POLL_TIMEOUT: '1m',
      ETCD_ENDPOINTS: ' etcd-1:2379, https://etcd-2:2379 ,,',
      LOG_LEVEL: 'debug',
      QUEUE_BACKEND: 'memory',
      MAX_QUEUE_DEPTH: '123456789',
    });
    assert.equal(c.clusterId, 'prod-east');
    assert.equal(c.batchSize, 250);
    assert.equal(c.streamInterval, 250);
    assert.equal(c.loopMode, false);
    assert.equal(c.pollTimeout, 60_000);
    assert.deepEqual(c.etcdEndpoints, ['etcd-1:2379', 'https://etcd-2:2379']);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.queueBackend, 'memory');
    assert.equal(c.maxQueueDepth, 123456789);
  });

  it('ignores unrelated environment variables', () => {
    assert.equal(loadConfig({ batchSize: '7', BATCH: '7', PATH: '/bin' }).batchSize, 100);
  });

  it('lets flags win over the environment', () => {
    const c = loadConfig(
      { BATCH_SIZE: '250', CLUSTER_ID: 'from-env', LOOP_MODE: 'false' },
      { batchSize: '7', clusterId: 'from-flag' },
    );
    assert.equal(c.batchSize, 7);
    assert.equal(c.clusterId, 'from-flag');
    assert.equal(c.loopMode, false);
  });

  it('lets a valid flag replace an invalid environment value', () => {
    assert.equal(loadConfig({ BATCH_SIZE: 'lots' }, { batchSize: '9' }).batchSize, 9);
  });

  it('treats an empty environment variable as unset', () => {
    const c = loadConfig({ CLUSTER_ID: '', BATCH_SIZE: '', STREAM_INTERVAL: '', LOOP_MODE: '' });
    assert.equal(c.clusterId, 'local-cluster');
    assert.equal(c.batchSize, 100);
    assert.equal(c.streamInterval, 3000);
    assert.equal(c.loopMode, true);
  });

  it('reads booleans in their usual spellings', () => {
    for (const t of ['1', 'true', 'TRUE', 'yes', 'on', ' On ']) {
      assert.equal(loadConfig({ LOOP_MODE: t }).loopMode, true, t);
    }
    for (const f of ['0', 'false', 'False', 'no', 'off']) {
      assert.equal(loadConfig({ LOOP_MODE: f }).loopMode, false, f);
    }
  });

  it('rejects an invalid integer, naming the variable', () => {
    for (const v of ['abc', '1.5', '1e3', '10 0', '0x10']) {
      assertInvalid({ BATCH_SIZE: v }, [/BATCH_SIZE/, /is not an integer/]);
    }
  });

  it('rejects an invalid boolean, naming the variable', () => {
    assertInvalid({ LOOP_MODE: 'maybe' }, [/LOOP_MODE: "maybe" is not a boolean/]);
  });

  it('rejects an invalid duration, naming the variable', () => {
    assertInvalid({ STREAM_INTERVAL: 'fast' }, [/STREAM_INTERVAL: "fast" is not a duration/]);
    assertInvalid({ POLL_TIMEOUT: '-5s' }, [/POLL_TIMEOUT/]);
  });

  it('rejects a value outside an enum, listing the choices', () => {
    assertInvalid({ LOG_LEVEL: 'loud' }, [/LOG_LEVEL: "loud" is not one of trace, debug, info/]);
    assertInvalid({ QUEUE_BACKEND: 'ETCD' }, [/QUEUE_BACKEND/, /etcd, memory/]);
  });

  it('reads decimal numbers (prices, percentages) and refuses anything else, naming the variable', () => {
    const c = loadConfig({ ENERGY_PRICE_PER_KWH: '0.15', IDLE_UTIL: '2.5', GPU_HOUR_PRICE: '3' });
    assert.equal(c.energyPricePerKwh, 0.15);
    assert.equal(c.idleUtil, 2.5);
    assert.equal(c.gpuHourPrice, 3);
    assertInvalid({ ENERGY_PRICE_PER_KWH: '0,15' }, [/ENERGY_PRICE_PER_KWH/, /not a number/]);
    assertInvalid({ ENERGY_PRICE_PER_KWH: '1e3' }, [/ENERGY_PRICE_PER_KWH/, /not a number/]);
    assertInvalid({ GPU_HOUR_PRICE: '-1' }, [/GPU_HOUR_PRICE/, /below the minimum 0/]);
    assertInvalid({ IDLE_UTIL: '100.5' }, [/IDLE_UTIL/, /above the maximum 100/]);
  });

  it('enforces minimum and maximum', () => {
    assertInvalid({ BATCH_SIZE: '0' }, [/BATCH_SIZE: 0 is below the minimum 1/]);
    assertInvalid({ BATCH_SIZE: '-3' }, [/BATCH_SIZE: -3 is below the minimum 1/]);
    assertInvalid({ BATCH_SIZE: '10001' }, [/BATCH_SIZE: 10001 is above the maximum 10000/]);
    assertInvalid({ METRICS_PORT: '65536' }, [/METRICS_PORT: 65536 is above the maximum 65535/]);
    assertInvalid({ PUBLISH_CONCURRENCY: '65' }, [/PUBLISH_CONCURRENCY/]);
    assert.equal(loadConfig({ BATCH_SIZE: '1' }).batchSize, 1);
    assert.equal(loadConfig({ BATCH_SIZE: '10000' }).batchSize, 10000);
    assert.equal(loadConfig({ METRICS_PORT: '65535' }).metricsPort, 65535);
  });

  it('names the variable even when the bad value came from a flag', () => {
    assertInvalid({}, [/BATCH_SIZE: "x" is not an integer/], { batchSize: 'x' });
  });

  it('reports every invalid setting at once', () => {
    assertInvalid({ BATCH_SIZE: 'x', LOOP_MODE: 'maybe', LOG_LEVEL: 'loud' }, [
      /^invalid configuration: /,
      /BATCH_SIZE/,
      /LOOP_MODE/,
      /LOG_LEVEL/,
    ]);
  });
});

describe('redactConfig', () => {
  it('masks ETCD_PASSWORD and other secrets, keyed by variable name', () => {
    const r = redactConfig(
      loadConfig({ ETCD_PASSWORD: 's3cret', ETCD_KEY_FILE: '/k.pem', ETCD_USERNAME: 'nexus' }),
    );
    assert.equal(r.ETCD_PASSWORD, '***');
    assert.equal(r.ETCD_KEY_FILE, '***');
    assert.equal(r.ETCD_USERNAME, 'nexus');
    assert.equal(r.BATCH_SIZE, 100);
    assert.equal(JSON.stringify(r).includes('s3cret'), false);
    assert.deepEqual(
      Object.keys(r).sort(),
      Object.values(SETTINGS)
        .map((s) => s.env)
        .sort(),
    );
  });

  it('leaves an unset secret empty rather than pretending one is set', () => {
    const r = redactConfig(loadConfig({}));
    assert.equal(r.ETCD_PASSWORD, '');
  });
});
