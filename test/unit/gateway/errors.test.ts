/**
 * Fastify's own refusals of a body (too large, not JSON, empty, a media type no parser takes)
 * leave in the API's words and codes (src/gateway/errors.ts), never with Fastify's FST_ERR_ codes.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import Fastify from 'fastify';
import { silentLogger } from '../../../src/core/logger.js';
import { installErrorHandling } from '../../../src/gateway/errors.js';

const app = Fastify({ bodyLimit: 1024 });
installErrorHandling(app, silentLogger());
app.post('/echo', async (req) => ({ got: req.body }));
after(() => app.close());

const post = (payload: string, contentType = 'application/json') =>
  app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': contentType }, payload });

describe('refused request bodies', () => {
  for (const [name, payload, type, status, message] of [
    [
      'too large',
      `"${'x'.repeat(2000)}"`,
      'application/json',
      413,
      /^body is too large: at most 1024 bytes \(MAX_BODY\)$/,
    ],
    ['not JSON', '{"a":', 'application/json', 400, /^body is not valid JSON/],
    ['a __proto__ key', '{"__proto__":{"x":1}}', 'application/json', 400, /__proto__/],
    ['empty', '', 'application/json', 400, /^body is empty: send a JSON document$/],
    [
      'a media type nothing parses',
      'a=1',
      'application/x-www-form-urlencoded',
      415,
      /^content type "application\/x-www-form-urlencoded" is not accepted here$/,
    ],
  ] as const) {
    it(`${name}: ${status} in the API's words`, async () => {
      const res = await post(payload, type);
      assert.equal(res.statusCode, status, res.body);
      const body = res.json<{ error: string; code: string; statusCode: number }>();
      assert.match(body.error, message);
      assert.equal(body.code, 'BAD_REQUEST');
      assert.equal(body.statusCode, status);
    });
  }

  it('a body within the limit is served', async () => {
    const res = await post('{"a":1}');
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { got: { a: 1 } });
  });
});
