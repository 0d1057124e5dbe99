// PROTOCOL §1: `serve` refuses to start without authentication, logs the
// address it listens on, and exits cleanly on SIGTERM / SIGINT, closing
// Socket.IO connections at the transport level (no `disconnect` packet), so
// that clients reconnect by themselves.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { TRANSPORTS, ack, connect, startServer } from './helpers.mjs';

describe('the serve command', () => {
  test('refuses to start when no authentication method is configured, naming the variables', async () => {
    const err = await startServer({ env: {} }).then(
      () => assert.fail('the server started without any authentication method'),
      (e) => e,
    );
    assert.ok(err.exit, `the process did not exit: ${err.message}`);
    assert.notEqual(err.exit.code, 0, 'a refusal to start exits with a non-zero code');
    for (const name of [
      'SWITCHBOARD_API_TOKENS',
      'SWITCHBOARD_JWT_SECRET',
      'SWITCHBOARD_JWT_PUBLIC_KEY',
      'SWITCHBOARD_AUTH_DISABLED',
    ]) {
      assert.ok(err.stderr.includes(name), `the refusal names ${name}:\n${err.stderr}`);
    }
  });

  test('logs one line with the address it listens on', async (t) => {
    const server = await startServer({ env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice' } });
    t.after(() => server.stop());
    const lines = server.logs.filter((l) => l.message === 'listening');
    assert.equal(lines.length, 1);
    assert.equal(lines[0].addr, server.host);
    const res = await fetch(`${server.url}/healthz`);
    await res.arrayBuffer();
    assert.equal(res.status, 200);
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    for (const transport of TRANSPORTS) {
      test(`exits with code 0 on ${signal} and closes a ${transport} client at the transport level`, async (t) => {
        const server = await startServer({ env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice' } });
        t.after(() => server.stop());
        const socket = await connect(server.url, '/agent', {
          transports: [transport],
          auth: { token: 'tok-alice' },
        });
        t.after(() => socket.close());
        assert.equal((await ack(socket, 'auth:whoami', {})).ok, true);

        const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
        server.process.kill(signal);
        const reason = await disconnected;
        assert.notEqual(reason, 'io server disconnect', 'closed with a Socket.IO disconnect packet');
        assert.ok(
          ['transport close', 'transport error'].includes(reason),
          `unexpected disconnect reason ${reason}`,
        );
        const exit = await server.stop();
        assert.deepEqual(exit, { code: 0, signal: null });
      });
    }
  }
});
