// PROTOCOL §2: a browser handshake whose Origin is not allowed is refused at
// the transport with HTTP 403, before any namespace is reached; the server's
// own origin and the listed ones are allowed, with CORS headers.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  NAMESPACES,
  TRANSPORTS,
  connect,
  connectError,
  expectAccepted,
  handshakeLines,
  startServer,
} from './helpers.mjs';

const LISTED = 'http://localhost:5173';
const EVIL = 'http://evil.example';
const POLLING_HANDSHAKE = '/socket.io/?EIO=4&transport=polling';

describe('with SWITCHBOARD_ALLOWED_ORIGINS listing one origin', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice', SWITCHBOARD_ALLOWED_ORIGINS: LISTED },
    });
  });
  after(() => server?.stop());

  const handshake = (headers = {}) => fetch(server.url + POLLING_HANDSHAKE, { headers });

  test('a polling handshake from a foreign Origin gets 403 without CORS headers', async () => {
    const res = await handshake({ origin: EVIL });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
    assert.equal(res.headers.get('access-control-allow-credentials'), null);
  });

  test('a polling handshake from an origin that differs from the listed one only by port gets 403', async () => {
    const res = await handshake({ origin: 'http://localhost:5174' });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
  });

  test('a polling handshake from Origin "null" gets 403', async () => {
    const res = await handshake({ origin: 'null' });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
  });

  test('a polling handshake without Origin (a non-browser client) is answered', async () => {
    const res = await handshake();
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(body, /^0\{.*"sid"/);
  });

  test("a polling handshake from the server's own origin is answered", async () => {
    const res = await handshake({ origin: server.url });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(body, /^0\{.*"sid"/);
  });

  test('a polling handshake from the listed origin is answered with credentialed CORS headers', async () => {
    const res = await handshake({ origin: LISTED });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    assert.match(body, /^0\{.*"sid"/);
    assert.equal(res.headers.get('access-control-allow-origin'), LISTED);
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
  });

  test('a CORS preflight from the listed origin for the socket-token request is allowed', async () => {
    const res = await fetch(`${server.url}/v1/auth/socket-token`, {
      method: 'OPTIONS',
      headers: {
        origin: LISTED,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-requested-with',
      },
    });
    await res.arrayBuffer();
    assert.ok(res.status >= 200 && res.status < 300, `preflight answered ${res.status}`);
    assert.equal(res.headers.get('access-control-allow-origin'), LISTED);
    assert.equal(res.headers.get('access-control-allow-credentials'), 'true');
    assert.match(res.headers.get('access-control-allow-headers') ?? '', /x-requested-with/i);
    assert.match(res.headers.get('access-control-allow-methods') ?? '', /POST/);
  });

  test('a CORS preflight from a foreign origin gets 403', async () => {
    const res = await fetch(`${server.url}/v1/auth/socket-token`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST' },
    });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
    assert.equal(res.headers.get('access-control-allow-origin'), null);
  });

  for (const transport of TRANSPORTS) {
    for (const ns of NAMESPACES) {
      test(`${ns} refuses a client with a foreign Origin over ${transport} at the transport, before the namespace`, async (t) => {
        const since = server.logs.length;
        const err = await connectError(server.url, ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
          extraHeaders: { origin: EVIL },
        });
        // A transport error carrying the HTTP status, not a namespace refusal.
        assert.equal(err.type, 'TransportError', `got ${err.message}`);
        const status =
          typeof err.description === 'number' ? err.description : String(err.description?.message);
        assert.match(String(status), /\b403\b/);
        assert.doesNotMatch(err.message, /^unauthorized/);

        // A later, valid handshake is the first one the server logs: the
        // refused client never reached a namespace.
        const socket = await connect(server.url, ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
        });
        t.after(() => socket.close());
        await server.waitForLog((l) => l.message === 'handshake' && l.outcome === 'accepted', 5000, {
          since,
        });
        assert.equal(handshakeLines(server, since).length, 1);
      });
    }

    for (const [label, origin] of [
      ['the listed Origin', LISTED],
      ["the server's own Origin", null],
    ]) {
      test(`/agent accepts a client with ${label} over ${transport}`, async (t) => {
        const since = server.logs.length;
        const socket = await connect(server.url, '/agent', {
          transports: [transport],
          auth: { token: 'tok-alice' },
          extraHeaders: { origin: origin ?? server.url },
        });
        t.after(() => socket.close());
        await expectAccepted(server, socket, {
          ns: '/agent',
          transport,
          identity: { user_id: 'alice', role: 'user', method: 'token' },
          since,
          secrets: ['tok-alice'],
        });
      });
    }
  }
});

describe('without SWITCHBOARD_ALLOWED_ORIGINS', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice' } });
  });
  after(() => server?.stop());

  test('only the same origin is allowed: a polling handshake from localhost:5173 gets 403', async () => {
    const res = await fetch(server.url + POLLING_HANDSHAKE, { headers: { origin: LISTED } });
    await res.arrayBuffer();
    assert.equal(res.status, 403);
  });

  test("a polling handshake from the server's own origin is answered", async () => {
    const res = await fetch(server.url + POLLING_HANDSHAKE, { headers: { origin: server.url } });
    const body = await res.text();
    assert.equal(res.status, 200, body);
  });
});
