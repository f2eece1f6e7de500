import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { parseServiceRef, targetsOfSlices } from '../../../src/scraper/kubernetes.js';
import {
  FileTargets,
  parseFileSd,
  staticTargets,
  targetUrl,
  type ScrapeTarget,
} from '../../../src/scraper/targets.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-file-sd-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('scrape targets as written', () => {
  it('host:port is http and /metrics; a URL keeps its scheme and path', () => {
    assert.equal(targetUrl('10.0.0.5:9400'), 'http://10.0.0.5:9400/metrics');
    assert.equal(targetUrl('https://gpu-1:9400'), 'https://gpu-1:9400/metrics');
    assert.equal(targetUrl('http://gpu-1:9400/custom'), 'http://gpu-1:9400/custom');
    assert.equal(targetUrl('[::1]:9400'), 'http://[::1]:9400/metrics');
    assert.deepEqual(
      staticTargets(['a:1', 'b:2']).map((t) => t.url),
      ['http://a:1/metrics', 'http://b:2/metrics'],
    );
  });

  it('refuses a target with no port, another scheme, or garbage, naming it', () => {
    assert.throws(() => targetUrl('gpu-1'), /"gpu-1" has no port/);
    assert.throws(() => targetUrl('ftp://gpu-1:21'), /only http and https/);
    assert.throws(() => targetUrl('a b:c'), /not host:port or a URL/);
  });
});

describe('file_sd files', () => {
  it('reads JSON and YAML groups with labels, __scheme__ and __metrics_path__', () => {
    const json = parseFileSd(
      JSON.stringify([
        { targets: ['n1:9400', 'n2:9400'], labels: { rack: 'r1' } },
        { targets: ['n3:9443'], labels: { __scheme__: 'https', __metrics_path__: '/m' } },
      ]),
      'f.json',
    );
    assert.deepEqual(json, [
      { url: 'http://n1:9400/metrics', labels: { rack: 'r1' } },
      { url: 'http://n2:9400/metrics', labels: { rack: 'r1' } },
      { url: 'https://n3:9443/m', labels: {} },
    ]);
    const yaml = parseFileSd('- targets: [n1:9400]\n  labels:\n    rack: r2\n', 'f.yaml');
    assert.deepEqual(yaml, [{ url: 'http://n1:9400/metrics', labels: { rack: 'r2' } }]);
    assert.deepEqual(parseFileSd('', 'empty.yaml'), []);
  });

  it('says what is wrong with a bad file', () => {
    assert.throws(() => parseFileSd('{"targets": []}', 'f.json'), /f.json: expected a list/);
    assert.throws(() => parseFileSd('[{"labels": {}}]', 'f.json'), /group 1 has no targets/);
    assert.throws(() => parseFileSd('[{"targets": [5]}]', 'f.json'), /a target is not text/);
    assert.throws(() => parseFileSd('[{"targets": ["x"]}]', 'f.json'), /group 1: .*no port/);
    assert.throws(() => parseFileSd('[{"targets": [', 'f.json'), /f.json: not JSON or YAML/);
  });

  it('follows changes of the file; a bad version keeps the last good targets and says why', async () => {
    const path = join(dir, 'targets.json');
    writeFileSync(path, JSON.stringify([{ targets: ['n1:9400'] }]));
    const seen: string[][] = [];
    const errors: string[] = [];
    const file = new FileTargets({
      path,
      logger: silentLogger(),
      pollMs: 3_600_000,
      sink: (source: string, targets: readonly ScrapeTarget[]) => {
        assert.equal(source, 'file');
        seen.push(targets.map((t) => t.url));
      },
      onError: (reason) => errors.push(reason),
    });
    await file.start();
    assert.deepEqual(seen, [['http://n1:9400/metrics']]);
    // Unchanged: nothing new.
    await file.check();
    assert.equal(seen.length, 1);
    // Replaced as a ConfigMap or an editor does (a new file renamed over the old).
    writeFileSync(`${path}.tmp`, JSON.stringify([{ targets: ['n1:9400', 'n2:9400'] }]));
    renameSync(`${path}.tmp`, path);
    await file.check();
    assert.deepEqual(seen.at(-1), ['http://n1:9400/metrics', 'http://n2:9400/metrics']);
    // A bad version: no new list, one reason.
    writeFileSync(path, '[{"targets": ["n3:9400"');
    await file.check();
    assert.equal(seen.length, 2);
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /not JSON or YAML/);
    assert.match(file.problem ?? '', /not JSON or YAML/);
    // Gone: still the last good list.
    rmSync(path);
    await file.check();
    assert.equal(seen.length, 2);
    assert.match(errors[1] ?? '', /cannot read/);
    // Back and good.
    writeFileSync(path, '- targets: ["n3:9400"]\n');
    await file.check();
    assert.deepEqual(seen.at(-1), ['http://n3:9400/metrics']);
    assert.equal(file.problem, undefined);
    await file.stop();
  });

  it('a bad file at start is a configuration error', async () => {
    const path = join(dir, 'bad.yaml');
    writeFileSync(path, 'targets: nope\n');
    const file = new FileTargets({ path, logger: silentLogger(), sink: () => undefined });
    await assert.rejects(file.start(), /SCRAPE_TARGETS_FILE: .*expected a list/);
    await assert.rejects(
      new FileTargets({
        path: join(dir, 'none'),
        logger: silentLogger(),
        sink: () => undefined,
      }).start(),
      /SCRAPE_TARGETS_FILE: cannot read/,
    );
  });
});

describe('Kubernetes Service endpoints', () => {
  it('parses namespace/name[:port]', () => {
    assert.deepEqual(parseServiceRef('gpu-operator/nvidia-dcgm-exporter'), {
      namespace: 'gpu-operator',
      name: 'nvidia-dcgm-exporter',
    });
    assert.deepEqual(parseServiceRef('gpu/dcgm:metrics').port, 'metrics');
    assert.throws(() => parseServiceRef('dcgm'), /not namespace\/name\[:port\]/);
    assert.throws(() => parseServiceRef('Gpu/x'), /not namespace\/name/);
  });

  it('takes the ready addresses of the slices at the chosen port', () => {
    const slices = [
      {
        addressType: 'IPv4',
        ports: [{ name: 'metrics', port: 9400 }],
        endpoints: [
          { addresses: ['10.0.0.1'], conditions: { ready: true }, nodeName: 'gpu-a' },
          { addresses: ['10.0.0.2'], conditions: { ready: false }, nodeName: 'gpu-b' },
          { addresses: ['10.0.0.3'], nodeName: 'gpu-c' },
        ],
      },
      {
        addressType: 'IPv6',
        ports: [{ name: 'metrics', port: 9400 }],
        endpoints: [{ addresses: ['fd00::1'], conditions: { ready: true } }],
      },
    ];
    const ref = parseServiceRef('gpu/dcgm:metrics');
    assert.deepEqual(targetsOfSlices(slices, ref), [
      { url: 'http://10.0.0.1:9400/metrics', labels: { kubernetes_node: 'gpu-a' } },
      { url: 'http://10.0.0.3:9400/metrics', labels: { kubernetes_node: 'gpu-c' } },
      { url: 'http://[fd00::1]:9400/metrics', labels: {} },
    ]);
    assert.deepEqual(targetsOfSlices(slices, parseServiceRef('gpu/dcgm:other')), []);
    assert.equal(
      targetsOfSlices(slices, parseServiceRef('gpu/dcgm:9500'))[0]?.url,
      'http://10.0.0.1:9500/metrics',
    );
  });
});
