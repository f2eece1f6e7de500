import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getIntrospectionQuery, parse, specifiedRules, validate } from 'graphql';
import { BoundedQueue } from '../../../src/gateway/graphql/live.js';
import { costRule, depthRule, queryCosts } from '../../../src/gateway/graphql/limits.js';
import { buildGraphqlSchema } from '../../../src/gateway/graphql/schema.js';

const schema = buildGraphqlSchema();
const cost = (q: string, variables: Record<string, unknown> = {}): number =>
  queryCosts(schema, parse(q), variables)[0]?.cost ?? NaN;

describe('GraphQL cost estimate', () => {
  it('counts each field once and multiplies what is under a list; a store query weighs 500', () => {
    assert.equal(cost('{ clusters { cluster_id cluster_name status } }'), 1 + 10 * 3);
    // data is a JSON object of 8 values: 1 + 8
    assert.equal(cost('{ telemetry { cluster_id timestamp data } }'), 501 + 100 * (1 + 1 + 9));
    assert.equal(cost('{ telemetry(limit: 7) { value } }'), 501 + 7);
    assert.equal(cost('query($n: Int) { telemetry(limit: $n) { value } }', { n: 40 }), 501 + 40);
    // a page's readings are counted by the page's limit, not again by the list; its count once
    assert.equal(
      cost('{ telemetryPage(limit: 50) { count readings { value } } }'),
      501 + 1 + (1 + 50 * 1),
    );
    assert.equal(cost('{ hosts(cluster_id: "c") { gpus { gpu_id } } }'), 11 + 100 * (1 + 8 * 1));
  });

  it("costs every page's items by its limit, once: the largest page fits with a few fields", () => {
    // hostsPage, Cluster.events, search: limit x the item's fields, plus the page's own fields.
    const hosts = '{ total hosts { host_id hostname gpu_count first_seen last_seen } }';
    assert.equal(cost(`{ hostsPage(cluster_id: "c") ${hosts} }`), 11 + 1 + (1 + 100 * 5));
    assert.equal(cost(`{ hostsPage(cluster_id: "c", limit: 1000) ${hosts} }`), 11 + 1 + 1 + 5000);
    const events = 'events { id type time host_id gpu_id code message }';
    assert.equal(
      cost(`{ cluster(cluster_id: "c") { events { ${events} } } }`),
      11 + 1 + (1 + 100 * 7),
    );
    assert.equal(
      cost(
        `{ cluster(cluster_id: "c") { events(limit: 1000) { counts { xid } next_cursor ${events} } } }`,
      ),
      11 + 1 + (1 + 1) + 1 + (1 + 1000 * 7),
    );
    assert.equal(
      cost('query($n: Int) { search(q: "a", limit: $n) { count hits { kind label } } }', {
        n: 100,
      }),
      11 + 1 + (1 + 100 * 2),
    );
    assert.equal(cost('{ telemetryPage(limit: 10000) { readings { value } } }'), 501 + 1 + 10_000);
    // What the items select multiplies as under any list: 1,000 hosts x 8 GPUs.
    assert.equal(
      cost('{ hostsPage(cluster_id: "c", limit: 1000) { hosts { gpus { gpu_id } } } }'),
      11 + 1 + 1000 * (1 + 8 * 1),
    );
    // One fragment under pages of different limits is costed with each limit.
    assert.equal(
      cost(
        '{ a: hostsPage(cluster_id: "c", limit: 1) { ...P } b: hostsPage(cluster_id: "c", limit: 1000) { ...P } } fragment P on HostPage { hosts { host_id } }',
      ),
      11 + (1 + 1) + 11 + (1 + 1000),
    );
    // Aliases of the largest page still add up past the maximum.
    const pages = Array.from(
      { length: 10 },
      (_, i) => `p${i}: hostsPage(cluster_id: "c", limit: 1000) ${hosts}`,
    ).join(' ');
    assert.ok(cost(`{ ${pages} }`) > 50_000);
  });

  it("costs a variable's default as the limit it runs with", () => {
    // The default is what execution uses when the variable is not given (it was costed as 100).
    assert.equal(cost('query($n: Int = 10000) { telemetry(limit: $n) { value } }'), 501 + 10_000);
    assert.equal(
      cost('query($n: Int = 10000) { telemetry(limit: $n) { value } }', { n: 3 }),
      501 + 3,
    );
    // null takes the argument's default, as execution does.
    assert.equal(cost('query($n: Int) { telemetry(limit: $n) { value } }', { n: null }), 501 + 100);
  });

  it('costs aliases each, so many aliases of a cheap field add up', () => {
    const aliases = Array.from({ length: 490 }, (_, i) => `a${i}: latest { value }`).join(' ');
    assert.equal(cost(`{ ${aliases} }`), 490 * (21 + 100));
    assert.ok(cost(`{ ${aliases} }`) > 50_000);
  });

  it('costs introspection on the schema: the standard query passes, nesting does not', () => {
    assert.ok(cost(getIntrospectionQuery()) < 50_000, String(cost(getIntrospectionQuery())));
    const nested =
      '{ __schema { types { fields { type { fields { type { fields { type { fields { name } } } } } } } } } }';
    assert.ok(cost(nested) > 50_000, String(cost(nested)));
  });

  it('counts a field once however often it is selected, as execution runs it', () => {
    assert.equal(
      cost('{ clusters { cluster_id cluster_id ...F ...F } } fragment F on Cluster { cluster_id }'),
      1 + 10 * 1,
    );
    // A fragment "bomb": each level spreads the one below twice; execution runs each field once.
    const levels = Array.from(
      { length: 40 },
      (_, i) => `fragment F${i + 1} on Cluster { ...F${i} ...F${i} }`,
    ).join(' ');
    const bomb = `{ clusters { ...F40 } } fragment F0 on Cluster { cluster_id } ${levels}`;
    assert.equal(cost(bomb), 1 + 10 * 1);
    // Distinct aliases at each level do multiply, and are costed without visiting 2^40 nodes.
    const aliased = Array.from(
      { length: 40 },
      (_, i) =>
        `fragment A${i + 1} on Host { cluster { x: hosts { ...A${i} } y: hosts { ...A${i} } } }`,
    ).join(' ');
    const wide = `{ hosts(cluster_id: "c") { ...A40 } } fragment A0 on Host { host_id } ${aliased}`;
    assert.ok(cost(wide) > 1e20);
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
    assert.match(errors[0]?.message ?? '', /query cost 1701 exceeds the maximum of 1000/);
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
