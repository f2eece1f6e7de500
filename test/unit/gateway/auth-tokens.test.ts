import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { silentLogger } from '../../../src/core/logger.js';
import { accessOf } from '../../../src/gateway/auth/access.js';
import { FileTokenStore } from '../../../src/gateway/auth/file-token-store.js';
import { selectProtocol } from '../../../src/gateway/auth/plugin.js';
import { SqlTokenStore } from '../../../src/gateway/auth/sql-token-store.js';
import { TokenAuthenticator } from '../../../src/gateway/auth/token-auth.js';
import {
  TOKEN_FORMAT,
  checkScope,
  grants,
  hashToken,
  type TokenRecord,
  type TokenStore,
} from '../../../src/gateway/auth/tokens.js';
import { PGliteDatabase } from '../../../src/store/pglite/database.js';
import { migratedDump } from '../../helpers/pglite.js';

const dir = mkdtempSync(join(tmpdir(), 'nexus-tokens-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The same behaviour from both token stores: the embedded file, and SQL (here on PGlite). */
const stores: [string, () => Promise<TokenStore>][] = [
  ['file', () => Promise.resolve(new FileTokenStore(join(mkdtempSync(join(dir, 'f-')), 't.json')))],
  [
    'sql (PGlite, every migration applied: 005_api_tokens among them)',
    async () => {
      const db = new PGliteDatabase('memory://', await migratedDump());
      await db.ready();
      return new SqlTokenStore(db);
    },
  ],
];

for (const [name, open] of stores) {
  describe(`token store: ${name}`, () => {
    it('keeps only the hash; finds a token by it; lists, revokes by id or name, reuses a revoked name', async () => {
      const store = await open();
      try {
        const T0 = Date.parse('2025-07-18T13:00:00Z');
        const a = await store.create({ name: 'ci', scope: 'read', expiresAt: null }, T0);
        assert.match(a.token, TOKEN_FORMAT);
        assert.equal(a.record.hash, hashToken(a.token));
        assert.deepEqual(
          { ...a.record, id: '' },
          {
            id: '',
            name: 'ci',
            scope: 'read',
            hash: hashToken(a.token),
            createdAt: T0,
            expiresAt: null,
            revokedAt: null,
            lastUsedAt: null,
          },
        );
        const b = await store.create({ scope: 'admin', expiresAt: T0 + 86_400_000 }, T0 + 1);
        assert.equal(b.record.name, b.record.id, 'the name defaults to the id');
        assert.deepEqual(await store.findByHash(hashToken(b.token)), b.record);
        assert.equal(await store.findByHash(hashToken(`${b.token}x`)), undefined);
        await assert.rejects(
          store.create({ name: 'ci', scope: 'admin', expiresAt: null }),
          new RegExp(`a token named "ci" exists \\(id ${a.record.id}\\)`),
        );

        const revoked = await store.revoke('ci', T0 + 2);
        assert.equal(revoked?.id, a.record.id);
        assert.equal(revoked.revokedAt, T0 + 2);
        // Again, by id: the first revocation time stays.
        assert.equal((await store.revoke(a.record.id, T0 + 3))?.revokedAt, T0 + 2);
        assert.equal(await store.revoke('no-such-token'), undefined);
        const again = await store.create({ name: 'ci', scope: 'read', expiresAt: null }, T0 + 4);
        assert.notEqual(again.record.id, a.record.id);

        await store.touch(b.record.id, T0 + 10);
        await store.touch(b.record.id, T0 + 5); // never moves back
        const listed = await store.list();
        assert.deepEqual(
          listed.map((t) => [t.name, t.scope, t.revokedAt, t.lastUsedAt]),
          [
            ['ci', 'read', T0 + 2, null],
            [b.record.id, 'admin', null, T0 + 10],
            ['ci', 'read', null, null],
          ],
        );
        assert.ok(listed.every((t) => !JSON.stringify(t).includes('nexus_')));
      } finally {
        await store.close();
      }
    });
  });
}

describe('token store: the embedded file', () => {
  it('is mode 0600, holds no token, survives concurrent writers, and says what is wrong with a broken file', async () => {
    const file = join(dir, 'concurrent', 'tokens.json');
    const one = new FileTokenStore(file);
    const two = new FileTokenStore(file);
    const made = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 === 0 ? one : two).create({ name: `t${i}`, scope: 'read', expiresAt: null }),
      ),
    );
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal((await one.list()).length, 10, 'no write lost');
    const text = readFileSync(file, 'utf8');
    for (const m of made) assert.ok(!text.includes(m.token), 'the token itself is not stored');

    writeFileSync(file, '{"version": 1, "tokens": [{"id": 1}]}');
    await assert.rejects(one.list(), /tokens\.json is not a Nexus token file/);
  });
});

class CountingStore implements TokenStore {
  readonly where = 'memory';
  lookups = 0;
  touches: number[] = [];
  constructor(public record: TokenRecord | undefined) {}
  create(): never {
    throw new Error('not here');
  }
  list(): Promise<TokenRecord[]> {
    return Promise.resolve([]);
  }
  revoke(): Promise<undefined> {
    return Promise.resolve(undefined);
  }
  findByHash(hash: string): Promise<TokenRecord | undefined> {
    this.lookups++;
    return Promise.resolve(this.record?.hash === hash ? this.record : undefined);
  }
  touch(_id: string, at: number): Promise<void> {
    this.touches.push(at);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('TokenAuthenticator', () => {
  const token = `nexus_${'A'.repeat(43)}`;
  const record: TokenRecord = {
    id: 'abc123',
    name: 'x',
    scope: 'read',
    hash: hashToken(token),
    createdAt: 0,
    expiresAt: 100_000,
    revokedAt: null,
    lastUsedAt: null,
  };

  it('asks the store once per TOKEN_CACHE_TTL, so a revocation is seen within that bound; an expiry at once', async () => {
    const store = new CountingStore(record);
    let now = 1000;
    const auth = new TokenAuthenticator(store, {
      cacheTtlMs: 5000,
      logger: silentLogger(),
      now: () => now,
    });
    for (let i = 0; i < 100; i++) assert.equal((await auth.verify(token)).ok, true);
    assert.equal(store.lookups, 1);
    store.record = { ...record, revokedAt: 1500 };
    now = 5999; // still within the period of the lookup made at 1000
    assert.equal((await auth.verify(token)).ok, true);
    now = 6000;
    assert.deepEqual(await auth.verify(token), {
      ok: false,
      reason: 'revoked',
      message: 'the bearer token abc123 was revoked',
    });
    assert.equal(store.lookups, 2);

    store.record = record;
    now = 100_000; // expires_at: refused at once, whatever the cache holds
    const reason = async (t: string) => {
      const v = await auth.verify(t);
      return v.ok ? 'ok' : v.reason;
    };
    assert.equal(await reason(token), 'expired');
    assert.equal(await reason(`nexus_${'B'.repeat(43)}`), 'invalid');
    assert.equal(await reason('abc'), 'malformed');
  });

  it('writes last_used_at at most once a minute per token, not per request', async () => {
    const store = new CountingStore({ ...record, expiresAt: null });
    let now = 0;
    const auth = new TokenAuthenticator(store, {
      cacheTtlMs: 5000,
      logger: silentLogger(),
      now: () => now,
    });
    for (now = 0; now < 180_000; now += 1000) await auth.verify(token);
    assert.deepEqual(store.touches, [0, 60_000, 120_000]);
  });
});

describe('scopes', () => {
  it('write grants ingest only; admin grants everything; read only reads', () => {
    assert.deepEqual([...grants('write')], ['write']);
    assert.deepEqual([...grants('read')], ['read']);
    assert.deepEqual([...grants('admin')].sort(), ['admin', 'read', 'write']);
    assert.equal(checkScope('write'), 'write');
    assert.throws(() => checkScope('ingest'), /"ingest" is not one of read, write, admin/);
  });
});

describe('routes and subprotocols', () => {
  it('every route needs the read scope unless named open; admin when it says so', () => {
    const a = (url: string, config?: unknown, method = 'GET') =>
      accessOf({ method, url, config }, true);
    assert.equal(a('/api/v1/clusters'), 'read');
    assert.equal(a('/api/v1/some-new-route'), 'read');
    assert.equal(a('/openapi.json'), 'read');
    assert.equal(a('/swagger/json'), 'read');
    assert.equal(a('/graphql', undefined, 'POST'), 'read');
    assert.equal(a('/metrics'), 'read');
    assert.equal(accessOf({ method: 'GET', url: '/metrics' }, false), 'open');
    assert.equal(a('/api/v1/admin/dead-letters', { access: 'admin' }), 'admin');
    assert.equal(a('/api/v1/write', { access: 'write' }, 'POST'), 'write');
    for (const open of ['/healthz', '/readyz', '/health', '/swagger/index.html', '/'])
      assert.equal(a(open), 'open', open);
    assert.equal(a('/assets/app.js', { file: 'app.js', rootPath: '/x' }), 'open');
    assert.equal(a('*', undefined, 'OPTIONS'), 'open');
  });

  it('a bearer.<token> WebSocket subprotocol is never selected', () => {
    assert.equal(selectProtocol(new Set(['nexus', 'bearer.nexus_x'])), 'nexus');
    assert.equal(
      selectProtocol(new Set(['bearer.nexus_x', 'graphql-transport-ws'])),
      'graphql-transport-ws',
    );
    assert.equal(selectProtocol(new Set(['bearer.nexus_x'])), false);
  });
});
