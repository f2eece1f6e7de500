/**
 * The dashboard's pure parts, in Node: routes, the heatmap's geometry and data model, the choice of
 * steps for charts. The browser test (test/e2e/dashboard.test.ts) covers the rest.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Fastify from 'fastify';
import {
  cellRect,
  computeLayout,
  hitTest,
  moveCursor,
} from '../../../dashboard/src/heatmap-layout.js';
import { HeatmapModel } from '../../../dashboard/src/heatmap-model.js';
import {
  drillLabel,
  formatRoute,
  parentOf,
  parseHash,
  type Route,
} from '../../../dashboard/src/route.js';
import { RANGE_MS, stepFor } from '../../../dashboard/src/series.js';
import { silentLogger } from '../../../src/core/logger.js';
import { dashboardPlugin } from '../../../src/gateway/dashboard/plugin.js';

describe('dashboard routes', () => {
  it('reads and writes every page of the URL', () => {
    const routes: Route[] = [
      { view: 'overview', cluster: undefined, metric: 'DCGM_FI_DEV_GPU_UTIL' },
      { view: 'overview', cluster: 'local-cluster', metric: 'DCGM_FI_DEV_GPU_TEMP' },
      { view: 'host', cluster: 'c 1', host: 'mtv5-dgx1-hgpu-031', metric: 'DCGM_FI_DEV_FB_USED' },
      { view: 'gpu', cluster: 'local-cluster', host: 'h/1', gpu: 7, range: '30d' },
    ];
    for (const r of routes) assert.deepEqual(parseHash(formatRoute(r)), r);
    assert.equal(
      formatRoute({ view: 'gpu', cluster: 'c', host: 'h', gpu: 0, range: '6h' }),
      '#/gpu/c/h/0?range=6h',
    );
  });

  it('takes short metric names and falls back on defaults', () => {
    assert.deepEqual(parseHash('#/?metric=POWER_USAGE'), {
      view: 'overview',
      cluster: undefined,
      metric: 'DCGM_FI_DEV_POWER_USAGE',
    });
    assert.deepEqual(parseHash(''), parseHash('#/'));
    assert.deepEqual(parseHash('#/gpu/c/h/0?range=2y'), parseHash('#/gpu/c/h/0'));
    assert.equal(parseHash('#/gpu/c/h/x').view, 'notfound');
    assert.equal(parseHash('#/nothing').view, 'notfound');
  });

  it('goes up from a GPU to its host to the fleet', () => {
    const gpu = parseHash('#/gpu/c/h/3');
    const host = parentOf(gpu);
    assert.deepEqual(host, {
      view: 'host',
      cluster: 'c',
      host: 'h',
      metric: 'DCGM_FI_DEV_GPU_UTIL',
    });
    assert.equal(parentOf(host)?.view, 'overview');
    assert.equal(parentOf(parseHash('#/')), undefined);
  });
});

describe('heatmap drill-down in the URL', () => {
  const top: Route = { view: 'overview', cluster: 'c', metric: 'DCGM_FI_DEV_GPU_UTIL' };
  const group = { prefix: 'gpu-node-012', from: 'gpu-node-01200', to: 'gpu-node-01299' };
  const host = { prefix: 'gpu-node-01234', from: 'gpu-node-01234', to: 'gpu-node-01234' };

  it('round-trips each step, in order, and reads as it should', () => {
    const r: Route = { ...top, drill: [group, host] };
    assert.equal(
      formatRoute(r),
      '#/?cluster=c&in=gpu-node-012|gpu-node-01200|gpu-node-01299&in=gpu-node-01234|gpu-node-01234|gpu-node-01234',
    );
    assert.deepEqual(parseHash(formatRoute(r)), r);
    assert.deepEqual(parseHash('#/?in=rack-a'), {
      view: 'overview',
      cluster: undefined,
      metric: 'DCGM_FI_DEV_GPU_UTIL',
      drill: [{ prefix: 'rack-a' }],
    });
    assert.deepEqual(parseHash('#/?in=|a1|z9'), {
      view: 'overview',
      cluster: undefined,
      metric: 'DCGM_FI_DEV_GPU_UTIL',
      drill: [{ prefix: '', from: 'a1', to: 'z9' }],
    });
  });

  it('goes up one step at a time, then to no parent', () => {
    const r: Route = { ...top, drill: [group, host] };
    const up: Route = { ...top, drill: [group] };
    assert.deepEqual(parentOf(r), up);
    assert.deepEqual(parentOf(up), top);
    assert.equal(parentOf(top), undefined);
  });

  it('names the steps for the breadcrumbs', () => {
    assert.equal(drillLabel(group), 'gpu-node-012…');
    assert.equal(drillLabel(host), 'gpu-node-01234');
    assert.equal(drillLabel({ prefix: '', from: 'a1', to: 'z9' }), 'a1 – z9');
  });
});

describe('heatmap geometry', () => {
  it('wraps many hosts into groups that fit the width, and finds every cell again', () => {
    const l = computeLayout(1200, 31, 8, 140);
    assert.ok(l.groups > 1 && l.width <= 1200, JSON.stringify(l));
    assert.equal(l.rowsPerGroup, Math.ceil(31 / l.groups));
    for (let row = 0; row < 31; row++) {
      for (let col = 0; col < 8; col++) {
        const r = cellRect(l, row, col);
        assert.deepEqual(hitTest(l, r.x + r.w / 2, r.y + r.h / 2), { kind: 'cell', row, col });
      }
    }
    const first = cellRect(l, 0, 0);
    assert.deepEqual(hitTest(l, first.x - 20, first.y + 2), { kind: 'label', row: 0 });
    assert.equal(hitTest(l, first.x + first.w + l.gap / 2, first.y + 2), undefined);
  });

  it('stays within a canvas for a fleet of thousands of GPUs', () => {
    const l = computeLayout(1200, 2000, 8, 120);
    assert.ok(l.height < 16_000 && l.cellH >= 6, JSON.stringify(l));
  });

  it('moves the keyboard cursor across groups', () => {
    const l = computeLayout(1200, 31, 8, 140);
    assert.deepEqual(moveCursor(l, undefined, 'ArrowDown'), { row: 0, col: 0 });
    assert.deepEqual(moveCursor(l, { row: 0, col: 7 }, 'ArrowRight'), {
      row: l.rowsPerGroup,
      col: 0,
    });
    assert.deepEqual(moveCursor(l, { row: l.rowsPerGroup, col: 0 }, 'ArrowLeft'), {
      row: 0,
      col: 7,
    });
    assert.deepEqual(moveCursor(l, { row: 30, col: 3 }, 'ArrowDown'), { row: 30, col: 3 });
    assert.equal(moveCursor(l, { row: 0, col: 0 }, 'x'), undefined);
  });
});

describe('heatmap model', () => {
  const r = (host: string, gpu: number, value: number, time: number) => ({
    host_id: host,
    gpu_id: gpu,
    value,
    time,
  });

  it('keeps one cell per GPU in natural host order, newest reading wins', () => {
    const m = new HeatmapModel();
    m.load([r('node-10', 0, 1, 100), r('node-2', 1, 2, 100), r('node-2', 0, 3, 100)]);
    assert.deepEqual(m.hosts, ['node-2', 'node-10']);
    assert.equal(m.cols, 2);
    assert.equal(m.gpus, 3);
    assert.deepEqual(m.apply(r('node-2', 0, 9, 200)), { kind: 'cell', index: 0 });
    assert.deepEqual(m.apply(r('node-2', 0, 5, 150)), { kind: 'cell', index: -1 });
    assert.equal(m.values[0], 9);
    assert.equal(m.newest(), 200);
  });

  it('grows when a new host or GPU index reports', () => {
    const m = new HeatmapModel();
    m.load([r('a', 0, 1, 100)]);
    assert.deepEqual(m.apply(r('b', 3, 2, 100)), { kind: 'structure' });
    assert.deepEqual(m.hosts, ['a', 'b']);
    assert.equal(m.cols, 4);
    assert.equal(m.gpus, 2);
    assert.equal(m.values[m.index('a', 0)], 1);
    assert.equal(m.present[m.index('a', 3)], 0);
  });
});

describe('chart steps', () => {
  it('keeps every range within 600 points, in whole minutes (the rollup) from 6 h up', () => {
    for (const [range, ms] of Object.entries(RANGE_MS)) {
      const step = stepFor(ms);
      assert.ok(ms / step.ms <= 600, `${range}: ${step.text}`);
      if (ms >= RANGE_MS['6h']) assert.equal(step.ms % 60_000, 0, `${range}: ${step.text}`);
    }
    assert.equal(stepFor(RANGE_MS['15m']).text, '2s');
    assert.equal(stepFor(RANGE_MS['24h']).text, '5m');
    assert.equal(stepFor(RANGE_MS['30d']).text, '2h');
  });
});

describe('dashboard serving', () => {
  const logger = silentLogger();

  it('serves the page uncached and the hashed bundles cached for good', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-dash-'));
    mkdirSync(join(dir, 'assets'));
    writeFileSync(
      join(dir, 'index.html'),
      '<!doctype html><script src="/assets/app-X1.js"></script>',
    );
    writeFileSync(join(dir, 'assets', 'app-X1.js'), 'console.log(1)');
    const app = Fastify();
    try {
      await app.register(dashboardPlugin(dir, logger));
      const page = await app.inject({ url: '/' });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /app-X1\.js/);
      assert.equal(page.headers['cache-control'], 'no-cache');
      const js = await app.inject({ url: '/assets/app-X1.js' });
      assert.equal(js.statusCode, 200);
      assert.equal(js.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal((await app.inject({ url: '/assets/nope.js' })).statusCode, 404);
    } finally {
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how to build it when there is no build', async () => {
    const app = Fastify();
    try {
      await app.register(dashboardPlugin(join(tmpdir(), 'nexus-no-such-dashboard'), logger));
      const page = await app.inject({ url: '/' });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /make build-nexus/);
    } finally {
      await app.close();
    }
  });
});
