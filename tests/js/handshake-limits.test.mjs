// Issue 12: a handshake past SWITCHBOARD_HANDSHAKE_RATE is refused with
// HTTP 429 before a session exists. The official client takes that as a
// connect_error and retries with its backoff, and connects once the limit
// lets it through again: a limit slows a client down, it does not strand it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { io } from 'socket.io-client';

import { TRANSPORTS, ack, nextEvent, startServer } from './helpers.mjs';

const POLLING_HANDSHAKE = '/socket.io/?EIO=4&transport=polling';

describe('with SWITCHBOARD_HANDSHAKE_RATE=1/s', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice', SWITCHBOARD_HANDSHAKE_RATE: '1/s' },
    });
  });
  after(() => server?.stop());

  for (const transport of TRANSPORTS) {
    test(`over ${transport}, a refused handshake is a connect_error and the client retries until it connects`, async () => {
      // Take this second's handshake, so that the client's first is refused.
      const taken = await fetch(server.url + POLLING_HANDSHAKE);
      await taken.text();
      const refused = await fetch(server.url + POLLING_HANDSHAKE);
      const body = await refused.json();
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal(body.error.code, 'rate_limited');

      const socket = io(`${server.url}/agent`, {
        transports: [transport],
        auth: { token: 'tok-alice' },
        forceNew: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 400,
      });
      try {
        const errors = [];
        socket.on('connect_error', (err) => errors.push(err.message));
        const attempt = nextEvent(socket.io, 'reconnect_attempt', 5000);
        await nextEvent(socket, 'connect', 10_000);
        assert.ok(errors.length >= 1, 'the first handshake was refused');
        assert.ok((await attempt) >= 1, 'the client retried');
        const whoami = await ack(socket, 'auth:whoami');
        assert.equal(whoami.user_id, 'alice');
      } finally {
        socket.close();
      }
    });
  }
});
