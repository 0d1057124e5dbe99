// PROTOCOL §2: POST /v1/auth/socket-token exchanges a valid session cookie
// for a short-lived JWT with aud "socket", for clients that cannot send
// cookies on the WebSocket. Browser-only (Origin + X-Requested-With),
// rate-limited per client address, never echoes the cookie.

import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  NAMESPACES,
  TRANSPORTS,
  assertNotLogged,
  claims,
  connect,
  decodeJwt,
  expectAccepted,
  expiredClaims,
  hs256,
  requestSocketToken,
  startServer,
} from './helpers.mjs';

const SECRET = 'socket-token-test-secret-0123456789abcdef';
const AUDIENCE = 'switchboard-api';
const LISTED = 'http://localhost:5173';
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

async function json(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

describe('POST /v1/auth/socket-token with an HS256 secret and a configured audience', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: {
        SWITCHBOARD_API_TOKENS: 'alice:tok-alice',
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_JWT_AUDIENCE: AUDIENCE,
        SWITCHBOARD_ALLOWED_ORIGINS: LISTED,
        // Many requests from 127.0.0.1 in this block; the limit has its own test.
        SWITCHBOARD_SOCKET_TOKEN_RATE: '1000',
      },
    });
  });
  after(() => server?.stop());

  const cookieFor = (sub, extra = {}) => hs256(claims(sub, { aud: AUDIENCE, ...extra }), SECRET);

  test('a valid cookie from the same origin gets 200 { token, expires_at } with Cache-Control: no-store', async () => {
    const cookie = cookieFor('carol');
    const before = Date.now();
    const res = await requestSocketToken(server, { cookie });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.match(res.headers.get('content-type'), /application\/json/);
    assert.match(res.headers.get('cache-control') ?? '', /\bno-store\b/);

    const body = JSON.parse(text);
    assert.deepEqual(Object.keys(body).sort(), ['expires_at', 'token']);
    assert.equal(typeof body.token, 'string');
    assert.match(body.expires_at, RFC3339);
    const expiresAt = Date.parse(body.expires_at);
    assert.ok(expiresAt > before, 'expires_at is in the future');
    assert.ok(expiresAt <= Date.now() + 5 * 60_000 + 1000, 'expires_at is at most 5 minutes ahead');

    const { payload } = decodeJwt(body.token);
    assert.equal(payload.aud, 'socket');
    assert.equal(payload.sub, 'carol');
    assert.ok(Math.abs(payload.exp * 1000 - expiresAt) < 1000, 'exp matches expires_at');
    assert.ok(payload.exp * 1000 <= Date.now() + 5 * 60_000 + 1000, 'exp is at most 5 minutes ahead');

    // Never the cookie's own value, whole or its signature.
    assert.ok(!text.includes(cookie), 'the response contains the cookie');
    assert.ok(!text.includes(cookie.split('.')[2]), "the response contains the cookie's signature");
    assert.notEqual(body.token, cookie);
    assertNotLogged(server, cookie, 'the cookie');
    assertNotLogged(server, body.token, 'the socket token');
  });

  test('a valid cookie from the listed origin gets a token with CORS headers', async () => {
    const res = await requestSocketToken(server, { cookie: cookieFor('dave'), origin: LISTED });
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(decodeJwt(body.token).payload.sub, 'dave');
    assert.equal(res.headers.get('access-control-allow-origin'), LISTED);
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  });

  test('a request without X-Requested-With gets 403', async () => {
    const res = await requestSocketToken(server, { cookie: cookieFor('carol'), requestedWith: null });
    const body = await json(res);
    assert.equal(res.status, 403);
    assert.equal(body.error?.code, 'forbidden');
  });

  test('a request with X-Requested-With other than switchboard gets 403', async () => {
    const res = await requestSocketToken(server, {
      cookie: cookieFor('carol'),
      requestedWith: 'XMLHttpRequest',
    });
    const body = await json(res);
    assert.equal(res.status, 403);
    assert.equal(body.error?.code, 'forbidden');
  });

  test('a request without Origin gets 403', async () => {
    const res = await requestSocketToken(server, { cookie: cookieFor('carol'), origin: null });
    const body = await json(res);
    assert.equal(res.status, 403);
    assert.equal(body.error?.code, 'forbidden');
  });

  test('a request from a foreign Origin gets 403', async () => {
    const res = await requestSocketToken(server, {
      cookie: cookieFor('carol'),
      origin: 'http://evil.example',
    });
    const body = await json(res);
    assert.equal(res.status, 403);
    assert.equal(body.error?.code, 'forbidden');
  });

  test('a request without the cookie gets 401', async () => {
    const res = await requestSocketToken(server, {});
    const body = await json(res);
    assert.equal(res.status, 401);
    assert.deepEqual(body, {
      error: { code: 'unauthorized', message: 'unauthorized: missing_credentials' },
    });
  });

  test('a Bearer token instead of the cookie gets 401', async () => {
    const res = await requestSocketToken(server, { headers: { authorization: 'Bearer tok-alice' } });
    const body = await json(res);
    assert.equal(res.status, 401);
    assert.equal(body.error?.code, 'unauthorized');
  });

  test('an expired cookie gets 401 expired_token', async () => {
    const cookie = hs256(expiredClaims('late', { aud: AUDIENCE }), SECRET);
    const res = await requestSocketToken(server, { cookie });
    const body = await json(res);
    assert.equal(res.status, 401);
    assert.deepEqual(body, {
      error: { code: 'unauthorized', message: 'unauthorized: expired_token' },
    });
  });

  test('a cookie signed with another secret gets 401 invalid_token', async () => {
    const cookie = hs256(claims('mallory', { aud: AUDIENCE }), 'not-the-secret');
    const res = await requestSocketToken(server, { cookie });
    const body = await json(res);
    assert.equal(res.status, 401);
    assert.deepEqual(body, {
      error: { code: 'unauthorized', message: 'unauthorized: invalid_token' },
    });
  });

  test('a socket token presented as the cookie gets 401 wrong_audience (no chaining)', async () => {
    const first = await json(await requestSocketToken(server, { cookie: cookieFor('carol') }));
    const res = await requestSocketToken(server, { cookie: first.token });
    const body = await json(res);
    assert.equal(res.status, 401);
    assert.deepEqual(body, {
      error: { code: 'unauthorized', message: 'unauthorized: wrong_audience' },
    });
  });

  test('the socket token is refused on HTTP: GET /v1/whoami answers 401 wrong_audience', async () => {
    const { token } = await json(await requestSocketToken(server, { cookie: cookieFor('carol') }));
    const res = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), {
      error: { code: 'unauthorized', message: 'unauthorized: wrong_audience' },
    });
  });

  for (const ns of NAMESPACES) {
    for (const transport of TRANSPORTS) {
      test(`the socket token connects to ${ns} over ${transport} as the cookie's user`, async (t) => {
        const cookie = cookieFor('erin', { role: 'admin' });
        const res = await requestSocketToken(server, { cookie });
        const { token } = await json(res);
        assert.equal(res.status, 200);
        const since = server.logs.length;
        const socket = await connect(server.url, ns, { transports: [transport], auth: { token } });
        t.after(() => socket.close());
        await expectAccepted(server, socket, {
          ns,
          transport,
          identity: { user_id: 'erin', role: 'admin', method: 'jwt' },
          since,
          secrets: [cookie, token],
        });
      });
    }
  }

  for (const transport of TRANSPORTS) {
    test(`a hand-made JWT with aud "socket" is accepted at the /agent handshake over ${transport} although another audience is configured`, async (t) => {
      const token = hs256(claims('frank', { aud: 'socket' }), SECRET);
      const since = server.logs.length;
      const socket = await connect(server.url, '/agent', { transports: [transport], auth: { token } });
      t.after(() => socket.close());
      await expectAccepted(server, socket, {
        ns: '/agent',
        transport,
        identity: { user_id: 'frank', role: 'user', method: 'jwt' },
        since,
        secrets: [token],
      });
    });
  }
});

/** POST /v1/auth/socket-token from a chosen local address (node:http). */
function postFrom(server, localAddress, cookie) {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        path: '/v1/auth/socket-token',
        method: 'POST',
        localAddress,
        headers: {
          origin: server.url,
          'x-requested-with': 'switchboard',
          cookie: `sb_session=${cookie}`,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () => {
          let body = text;
          try {
            body = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode, body });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('POST /v1/auth/socket-token with SWITCHBOARD_SOCKET_TOKEN_RATE=3', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_JWT_SECRET: SECRET, SWITCHBOARD_SOCKET_TOKEN_RATE: '3' },
    });
  });
  after(() => server?.stop());

  test('the fourth request in a row from one address gets 429 rate_limited, another address is still served', async () => {
    const cookie = hs256(claims('carol'), SECRET);
    for (let i = 1; i <= 3; i++) {
      const res = await postFrom(server, '127.0.0.1', cookie);
      assert.equal(res.status, 200, `request ${i}: ${JSON.stringify(res.body)}`);
    }
    const limited = await postFrom(server, '127.0.0.1', cookie);
    assert.equal(limited.status, 429, JSON.stringify(limited.body));
    assert.equal(limited.body.error?.code, 'rate_limited');
    assert.equal(typeof limited.body.error?.message, 'string');

    const other = await postFrom(server, '127.0.0.2', cookie);
    assert.equal(other.status, 200, `from 127.0.0.2: ${JSON.stringify(other.body)}`);
  });
});
