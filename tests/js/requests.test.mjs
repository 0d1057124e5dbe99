// PROTOCOL §4.1: every request gets one acknowledgement object — also
// unknown events (`not_found`, the socket stays connected), and also a
// request the client sends the moment it is connected (or buffers before).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { NAMESPACES, TRANSPORTS, ack, connect, startServer } from './helpers.mjs';

import { io } from 'socket.io-client';

describe('requests on the namespaces', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice' } });
  });
  after(() => server?.stop());

  for (const ns of NAMESPACES) {
    for (const transport of TRANSPORTS) {
      test(`${ns} answers an unknown event with not_found over ${transport} and stays connected`, async (t) => {
        const socket = await connect(server.url, ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
        });
        t.after(() => socket.close());
        let disconnected = null;
        socket.on('disconnect', (reason) => (disconnected = reason));

        const answer = await ack(socket, 'no:such-event', { hello: 'world' });
        assert.equal(answer.ok, false);
        assert.equal(answer.error?.code, 'not_found');
        assert.equal(typeof answer.error?.message, 'string');
        assert.ok(answer.error.message.length > 0);
        assert.deepEqual(Object.keys(answer).sort(), ['error', 'ok']);

        // Without an ack, an unknown event is ignored; the socket still works.
        socket.emit('another:unknown', 1, 2, 3);
        const whoami = await ack(socket, 'auth:whoami', {});
        assert.deepEqual(whoami, { ok: true, user_id: 'alice', role: 'user', method: 'token' });
        assert.equal(socket.connected, true);
        assert.equal(disconnected, null);
      });

      test(`${ns} answers auth:whoami over ${transport} whatever its payload`, async (t) => {
        const socket = await connect(server.url, ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
        });
        t.after(() => socket.close());
        const expected = { ok: true, user_id: 'alice', role: 'user', method: 'token' };
        assert.deepEqual(await ack(socket, 'auth:whoami', {}), expected);
        assert.deepEqual(await ack(socket, 'auth:whoami', { anything: [1, 2] }), expected);
        assert.deepEqual(await socket.timeout(5000).emitWithAck('auth:whoami'), expected);
      });
    }
  }

  // A client may send a request the moment `connect` fires — or even before,
  // socket.io-client buffers it and flushes it right after the CONNECT packet.
  // The server must already listen then; a request that is silently dropped
  // shows up here as "operation has timed out". Repeated, because the window
  // in which a request can be lost is short.
  const ROUNDS = 100;
  for (const transport of TRANSPORTS) {
    test(`a request emitted as soon as the socket connects is acknowledged, ${ROUNDS} connections in a row over ${transport}`, async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const ns = NAMESPACES[i % NAMESPACES.length];
        const socket = await connect(server.url, ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
        });
        try {
          const answer = await ack(socket, 'auth:whoami', {});
          assert.equal(answer.ok, true);
        } catch (err) {
          err.message = `connection ${i + 1} to ${ns}: the request emitted on connect got no ack (${err.message})`;
          throw err;
        } finally {
          socket.close();
        }
      }
    });

    test(`a request emitted before the socket is connected is acknowledged once connected, ${ROUNDS} connections in a row over ${transport}`, async () => {
      for (let i = 0; i < ROUNDS; i++) {
        const ns = NAMESPACES[i % NAMESPACES.length];
        const socket = io(server.url + ns, {
          transports: [transport],
          auth: { token: 'tok-alice' },
          reconnection: false,
          forceNew: true,
        });
        try {
          const refused = new Promise((_, reject) => socket.once('connect_error', reject));
          const answer = await Promise.race([ack(socket, 'auth:whoami', {}), refused]);
          assert.equal(answer.ok, true);
        } catch (err) {
          err.message = `connection ${i + 1} to ${ns}: the buffered request got no ack (${err.message})`;
          throw err;
        } finally {
          socket.close();
        }
      }
    });
  }
});
