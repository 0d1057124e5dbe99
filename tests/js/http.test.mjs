// PROTOCOL §5 (the parts that exist so far): health, readiness, and HTTP
// authentication through GET /v1/whoami (Bearer header or cookie; socket
// tokens are never accepted on HTTP).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { assertNotLogged, claims, expiredClaims, hs256, startServer } from './helpers.mjs';

const SECRET = 'http-test-secret-0123456789abcdef';

async function getJson(url, headers = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

const unauthorized = (reason) => ({
  error: { code: 'unauthorized', message: `unauthorized: ${reason}` },
});

describe('the HTTP API with static API tokens and an HS256 secret', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice', SWITCHBOARD_JWT_SECRET: SECRET },
    });
  });
  after(() => server?.stop());

  test('GET /healthz answers 200 without authentication', async () => {
    const res = await getJson(`${server.url}/healthz`);
    assert.equal(res.status, 200);
  });

  test('GET /readyz answers 200 {status: "ready"} when the database answers', async () => {
    const res = await getJson(`${server.url}/readyz`);
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'ready');
    assert.match(res.headers.get('content-type'), /application\/json/);
  });

  test('GET /v1/whoami with a static token in a Bearer header names its user', async () => {
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: 'Bearer tok-alice' });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { user_id: 'alice', role: 'user', method: 'token' });
  });

  test('GET /v1/whoami with an admin JWT in a Bearer header names the admin', async () => {
    const jwt = hs256(claims('root', { role: 'admin' }), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { user_id: 'root', role: 'admin', method: 'jwt' });
    assertNotLogged(server, jwt);
  });

  test('GET /v1/whoami with a JWT in the sb_session cookie names its user', async () => {
    const jwt = hs256(claims('carol'), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { cookie: `a=1; sb_session=${jwt}` });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { user_id: 'carol', role: 'user', method: 'cookie' });
    assertNotLogged(server, jwt);
  });

  test('GET /v1/whoami without credentials answers 401 missing_credentials', async () => {
    const res = await getJson(`${server.url}/v1/whoami`);
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('missing_credentials'));
  });

  test('GET /v1/whoami with an unknown token answers 401 invalid_token', async () => {
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: 'Bearer tok-mallory' });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('invalid_token'));
    assertNotLogged(server, 'tok-mallory');
  });

  test('GET /v1/whoami with an Authorization: Basic header answers 401 invalid_token', async () => {
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: 'Basic YWxpY2U6dG9rLWFsaWNl' });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('invalid_token'));
  });

  test('GET /v1/whoami with an expired JWT answers 401 expired_token', async () => {
    const jwt = hs256(expiredClaims('late'), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('expired_token'));
  });

  test('GET /v1/whoami with an invalid Bearer header and a valid cookie answers 401 (no fall-through)', async () => {
    const jwt = hs256(claims('carol'), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, {
      authorization: 'Bearer tok-mallory',
      cookie: `sb_session=${jwt}`,
    });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('invalid_token'));
  });

  for (const [where, headers] of [
    ['a Bearer header', (t) => ({ authorization: `Bearer ${t}` })],
    ['the cookie', (t) => ({ cookie: `sb_session=${t}` })],
  ]) {
    test(`GET /v1/whoami refuses a JWT with aud "socket" in ${where} with 401 wrong_audience`, async () => {
      const jwt = hs256(claims('carol', { aud: 'socket' }), SECRET);
      const res = await getJson(`${server.url}/v1/whoami`, headers(jwt));
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, unauthorized('wrong_audience'));
    });

    test(`GET /v1/whoami refuses a JWT whose audience list includes "socket" in ${where} with 401 wrong_audience`, async () => {
      const jwt = hs256(claims('carol', { aud: ['socket', 'other'] }), SECRET);
      const res = await getJson(`${server.url}/v1/whoami`, headers(jwt));
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, unauthorized('wrong_audience'));
    });
  }

  test('an unknown route answers 404 with a JSON error', async () => {
    const res = await getJson(`${server.url}/v1/nowhere`, { authorization: 'Bearer tok-alice' });
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, 'not_found');
  });
});

describe('the HTTP API with a configured audience', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_JWT_SECRET: SECRET, SWITCHBOARD_JWT_AUDIENCE: 'switchboard-api' },
    });
  });
  after(() => server?.stop());

  test('GET /v1/whoami accepts a JWT for the configured audience', async () => {
    const jwt = hs256(claims('carol', { aud: 'switchboard-api' }), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { user_id: 'carol', role: 'user', method: 'jwt' });
  });

  test('GET /v1/whoami refuses a socket token (aud "socket") with 401 wrong_audience', async () => {
    const jwt = hs256(claims('carol', { aud: 'socket' }), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('wrong_audience'));
  });

  test('GET /v1/whoami refuses a JWT without aud with 401 wrong_audience', async () => {
    const jwt = hs256(claims('carol'), SECRET);
    const res = await getJson(`${server.url}/v1/whoami`, { authorization: `Bearer ${jwt}` });
    assert.equal(res.status, 401);
    assert.deepEqual(res.body, unauthorized('wrong_audience'));
  });
});
