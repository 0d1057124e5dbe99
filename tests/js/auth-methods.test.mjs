// PROTOCOL §2 and §4: every accepted authentication method, over both
// transports of the official client and on both namespaces.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  NAMESPACES,
  TRANSPORTS,
  claims,
  connect,
  connectError,
  expectAccepted,
  expectRefused,
  expiredClaims,
  hs256,
  keyPair,
  now,
  signJwt,
  socketTokenFor,
  startServer,
} from './helpers.mjs';

const SECRET = 'methods-test-secret-0123456789abcdef';

/**
 * Runs `methods` (each `{ name, credential(server) → { opts, secrets }, identity }`)
 * on every namespace and transport against the server returned by `server()`.
 */
function acceptanceMatrix(server, methods) {
  for (const ns of NAMESPACES) {
    for (const transport of TRANSPORTS) {
      for (const method of methods) {
        test(`${ns} accepts ${method.name} over ${transport}`, async (t) => {
          const s = server();
          const { opts, secrets = [] } = await method.credential(s);
          const since = s.logs.length;
          const socket = await connect(s.url, ns, { transports: [transport], ...opts });
          t.after(() => socket.close());
          await expectAccepted(s, socket, { ns, transport, identity: method.identity, since, secrets });
        });
      }
    }
  }
}

describe('with static API tokens and an HS256 secret', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: {
        SWITCHBOARD_API_TOKENS: 'alice:tok-alice,bob:tok-bob',
        SWITCHBOARD_JWT_SECRET: SECRET,
      },
    });
  });
  after(() => server?.stop());

  const carol = hs256(claims('carol'), SECRET);
  const dave = hs256(claims('dave'), SECRET);
  const erin = hs256(claims('erin'), SECRET);
  const frank = hs256(claims('frank', { role: 'admin' }), SECRET);
  const grace = hs256(claims('grace'), SECRET);

  acceptanceMatrix(() => server, [
    {
      name: 'a static API token in auth.token',
      credential: () => ({ opts: { auth: { token: 'tok-alice' } }, secrets: ['tok-alice'] }),
      identity: { user_id: 'alice', role: 'user', method: 'token' },
    },
    {
      name: 'an HS256 JWT in auth.token',
      credential: () => ({ opts: { auth: { token: carol } }, secrets: [carol] }),
      identity: { user_id: 'carol', role: 'user', method: 'jwt' },
    },
    {
      name: 'a static API token in an Authorization: Bearer header',
      credential: () => ({
        opts: { extraHeaders: { authorization: 'Bearer tok-bob' } },
        secrets: ['tok-bob'],
      }),
      identity: { user_id: 'bob', role: 'user', method: 'token' },
    },
    {
      name: 'an HS256 JWT in an Authorization: Bearer header',
      credential: () => ({
        opts: { extraHeaders: { authorization: `Bearer ${dave}` } },
        secrets: [dave],
      }),
      identity: { user_id: 'dave', role: 'user', method: 'jwt' },
    },
    {
      name: 'an HS256 JWT in the sb_session cookie among other cookies',
      credential: () => ({
        opts: { extraHeaders: { cookie: `theme=dark; sb_session=${erin}; lang=en` } },
        secrets: [erin],
      }),
      identity: { user_id: 'erin', role: 'user', method: 'cookie' },
    },
    {
      name: 'an HS256 JWT with role admin, as an admin',
      credential: () => ({ opts: { auth: { token: frank } }, secrets: [frank] }),
      identity: { user_id: 'frank', role: 'admin', method: 'jwt' },
    },
    {
      name: 'a socket token from POST /v1/auth/socket-token in auth.token',
      credential: async (s) => {
        const token = await socketTokenFor(s, grace);
        return { opts: { auth: { token } }, secrets: [grace, token] };
      },
      identity: { user_id: 'grace', role: 'user', method: 'jwt' },
    },
  ]);
});

describe('with an HS256 secret, an issuer and an audience configured', () => {
  const ISSUER = 'https://issuer.switchboard.test';
  const AUDIENCE = 'switchboard-api';
  const good = (sub, extra = {}) => claims(sub, { iss: ISSUER, aud: AUDIENCE, ...extra });
  let server;
  before(async () => {
    server = await startServer({
      env: {
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_JWT_ISSUER: ISSUER,
        SWITCHBOARD_JWT_AUDIENCE: AUDIENCE,
      },
    });
  });
  after(() => server?.stop());

  const plain = hs256(good('ivan', { nbf: now() - 60 }), SECRET);
  const listed = hs256(good('judy', { aud: ['another-api', AUDIENCE] }), SECRET);
  const socketAud = hs256(good('ken', { aud: 'socket' }), SECRET);
  const cookie = hs256(good('liz'), SECRET);

  acceptanceMatrix(() => server, [
    {
      name: 'a JWT with the configured issuer and audience and a past nbf',
      credential: () => ({ opts: { auth: { token: plain } }, secrets: [plain] }),
      identity: { user_id: 'ivan', role: 'user', method: 'jwt' },
    },
    {
      name: 'a JWT whose audience list includes the configured audience',
      credential: () => ({ opts: { auth: { token: listed } }, secrets: [listed] }),
      identity: { user_id: 'judy', role: 'user', method: 'jwt' },
    },
    {
      name: 'a JWT with aud "socket" although another audience is configured',
      credential: () => ({ opts: { auth: { token: socketAud } }, secrets: [socketAud] }),
      identity: { user_id: 'ken', role: 'user', method: 'jwt' },
    },
    {
      name: 'a socket token exchanged for a cookie with the configured issuer and audience',
      credential: async (s) => {
        const token = await socketTokenFor(s, cookie);
        return { opts: { auth: { token } }, secrets: [cookie, token] };
      },
      identity: { user_id: 'liz', role: 'user', method: 'jwt' },
    },
  ]);
});

for (const alg of ['RS256', 'ES256', 'EdDSA']) {
  describe(`with a ${alg} public key`, () => {
    const keys = keyPair(alg);
    const other = keyPair(alg);
    let server;
    before(async () => {
      server = await startServer({
        files: { 'jwt-public.pem': keys.publicPem },
        env: ({ dir }) => ({ SWITCHBOARD_JWT_PUBLIC_KEY: `${dir}/jwt-public.pem` }),
      });
    });
    after(() => server?.stop());

    const token = signJwt(claims(`pk-${alg}`), { alg, key: keys.privateKey });
    const admin = signJwt(claims(`pk-admin-${alg}`, { role: 'admin' }), { alg, key: keys.privateKey });
    const cookie = signJwt(claims(`pk-cookie-${alg}`), { alg, key: keys.privateKey });

    acceptanceMatrix(() => server, [
      {
        name: `a ${alg} JWT in auth.token`,
        credential: () => ({ opts: { auth: { token } }, secrets: [token] }),
        identity: { user_id: `pk-${alg}`, role: 'user', method: 'jwt' },
      },
      {
        name: `a ${alg} JWT with role admin in an Authorization: Bearer header`,
        credential: () => ({
          opts: { extraHeaders: { authorization: `Bearer ${admin}` } },
          secrets: [admin],
        }),
        identity: { user_id: `pk-admin-${alg}`, role: 'admin', method: 'jwt' },
      },
      {
        name: `a ${alg} JWT in the sb_session cookie`,
        credential: () => ({
          opts: { extraHeaders: { cookie: `sb_session=${cookie}` } },
          secrets: [cookie],
        }),
        identity: { user_id: `pk-cookie-${alg}`, role: 'user', method: 'cookie' },
      },
    ]);

    const refusals = [
      {
        name: `a ${alg} JWT signed by another key`,
        token: () => signJwt(claims('mallory'), { alg, key: other.privateKey }),
        reason: 'invalid_token',
      },
      {
        name: 'an HS256 JWT whose secret is the public key (algorithm confusion)',
        token: () => hs256(claims('mallory'), keys.publicPem),
        reason: 'invalid_token',
      },
      {
        name: `a ${alg} JWT that expired an hour ago`,
        token: () =>
signJwt(expiredClaims('late'), { alg, key: keys.privateKey }),
        reason: 'expired_token',
      },
    ];
    for (const transport of TRANSPORTS) {
      for (const refusal of refusals) {
        test(`/agent refuses ${refusal.name} over ${transport} with ${refusal.reason}`, async () => {
          const bad = refusal.token();
          const since = server.logs.length;
          const err = await connectError(server.url, '/agent', {
            transports: [transport],
            auth: { token: bad },
          });
          await expectRefused(server, err, {
            ns: '/agent',
            reason: refusal.reason,
            method: 'jwt',
            since,
            secrets: [bad],
          });
        });
      }
    }
  });
}

describe('with SWITCHBOARD_AUTH_DISABLED=1', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { SWITCHBOARD_AUTH_DISABLED: '1' } });
  });
  after(() => server?.stop());

  test('the server warns loudly at start that authentication is disabled', async () => {
    const line = await server.waitForLog(
      (l) => ['WARN', 'ERROR'].includes(l.level) && /disabled/i.test(l.message),
    );
    assert.ok(line);
  });

  acceptanceMatrix(() => server, [
    {
      name: 'a client without credentials as user anonymous',
      credential: () => ({ opts: {} }),
      identity: { user_id: 'anonymous', role: 'user', method: 'disabled' },
    },
  ]);
});

describe('with a custom SWITCHBOARD_COOKIE_NAME', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: { SWITCHBOARD_JWT_SECRET: SECRET, SWITCHBOARD_COOKIE_NAME: 'my_session' },
    });
  });
  after(() => server?.stop());

  const jwt = hs256(claims('heidi'), SECRET);
  for (const transport of TRANSPORTS) {
    test(`/agent accepts the JWT in the configured cookie over ${transport}`, async (t) => {
      const since = server.logs.length;
      const socket = await connect(server.url, '/agent', {
        transports: [transport],
        extraHeaders: { cookie: `my_session=${jwt}` },
      });
      t.after(() => socket.close());
      await expectAccepted(server, socket, {
        ns: '/agent',
        transport,
        identity: { user_id: 'heidi', role: 'user', method: 'cookie' },
        since,
        secrets: [jwt],
      });
    });

    test(`/agent ignores the default sb_session cookie over ${transport}`, async () => {
      const since = server.logs.length;
      const err = await connectError(server.url, '/agent', {
        transports: [transport],
        extraHeaders: { cookie: `sb_session=${jwt}` },
      });
      await expectRefused(server, err, {
        ns: '/agent',
        reason: 'missing_credentials',
        method: 'none',
        since,
        secrets: [jwt],
      });
    });
  }
});
