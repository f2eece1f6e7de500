import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse, specifiedRules, validate } from 'graphql';
import { BoundedQueue } from '../../src/gateway/graphql/live.js';
import { costRule, depthRule, queryCosts } from '../../src/gateway/graphql/limits.js';
import { buildGraphqlSchema } from '../../src/gateway/graphql/schema.js';

const schema = buildGraphqlSchema();
const cost = (q: string, variables: Record<string, unknown> = {}): number =>
  queryCosts(schema, parse(q), variables)[0]?.cost ?? NaN;

describe('GraphQL cost estimate', () => {
  it('counts each field once and multiplies what is under a list', () => {
    assert.equal(cost('{ clusters { cluster_id cluster_name status } }'), 1 + 10 * 3);
    assert.equal(cost('{ telemetry { cluster_id timestamp data } }'), 1 + 100 * 3);
    assert.equal(cost('{ telemetry(limit: 7) { value } }'), 1 + 7);
    assert.equal(cost('query($n: Int) { telemetry(limit: $n) { value } }', { n: 40 }), 1 + 40);
    // a page's readings are counted by the page's limit, not again by the list
    assert.equal(
      cost('{ telemetryPage(limit: 50) { count readings { value } } }'),
      1 + 50 * (1 + 1 + 1),
    );
    assert.equal(cost('{ hosts(cluster_id: "c") { gpus { gpu_id } } }'), 1 + 100 * (1 + 8 * 1));
  });

  it('follows fragments', () => {
    assert.equal(
      cost('{ clusters { ...C } } fragment C on Cluster { cluster_id hosts { host_id } }'),
      1 + 10 * (1 + 1 + 100),
    );
  });

  it('refuses above the maximum, saying the cost and the maximum', () => {
    const errors = validate(schema, parse('{ telemetry(limit: 600) { value unit } }'), [
      costRule({}, 1000),
    ]);
    assert.equal(errors.length, 1);
    assert.match(errors[0]?.message ?? '', /query cost 1201 exceeds the maximum of 1000/);
  });

  it('depth counts field levels, not introspection', () => {
    const deep = '{ clusters { hosts { cluster { hosts { cluster { hosts { host_id } } } } } } }';
    assert.deepEqual(validate(schema, parse(deep), [...specifiedRules, depthRule(7)]), []);
    assert.match(
      validate(schema, parse(deep), [depthRule(6)])[0]?.message ?? '',
      /query depth 7 exceeds the limit of 6/,
    );
  });
});

describe('the live queue', () => {
  const queue = (capacity: number) => {
    let closed = 0;
    const q = new BoundedQueue<number[], { items: number[]; dropped: number }>(
      capacity,
      (x) => x.length,
      (items, dropped) => ({ items, dropped }),
      () => closed++,
    );
    return { q, closed: () => closed };
  };

  it('hands items over in order, at once to a waiting reader', async () => {
    const { q } = queue(10);
    const waiting = q.next();
    q.push([1]);
    q.push([2, 3]);
    assert.deepEqual(await waiting, { value: { items: [1], dropped: 0 }, done: false });
    assert.deepEqual(await q.next(), { value: { items: [2, 3], dropped: 0 }, done: false });
  });

  it('holds at most its capacity: the oldest go first, counted', async () => {
    const { q } = queue(5);
    for (let i = 0; i < 100_000; i++) q.push([i, i]);
    assert.ok(q.length <= 3);
    assert.equal(q.dropped, 2 * (100_000 - 2));
    const first = await q.next();
    assert.deepEqual(first.value, { items: [99_998, 99_998], dropped: 2 * (100_000 - 2) });
    assert.deepEqual((await q.next()).value, { items: [99_999, 99_999], dropped: 0 });
  });

  it('return() ends the stream once, waking a waiting reader', async () => {
    const { q, closed } = queue(5);
    const waiting = q.next();
    await q.return();
    await q.return();
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.equal(closed(), 1);
    q.push([1]);
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });
});
