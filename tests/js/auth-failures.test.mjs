// PROTOCOL §2: every refusal reason reaches the official client as
// `connect_error` with `err.message === 'unauthorized: R'`, over both
// transports and on both namespaces; an invalid credential never falls
// through to the next method; every refusal is logged without the credential.

import { after, before, describe, test } from 'node:test';

import {
  NAMESPACES,
  TRANSPORTS,
  claims,
  connectError,
  expectRefused,
  expiredClaims,
  hs256,
  now,
  signJwt,
  startServer,
} from './helpers.mjs';

const SECRET = 'failures-test-secret-0123456789abcdef';
const ISSUER = 'https://issuer.switchboard.test';
const AUDIENCE = 'switchboard-api';

/** Claims that pass every configured check unless overridden. */
const good = (sub, extra = {}) => claims(sub, { iss: ISSUER, aud: AUDIENCE, ...extra });
const { aud: _aud, ...noAud } = good('no-aud');
const { iss: _iss, ...noIss } = good('no-iss');
const { exp: _exp, ...noExp } = good('no-exp');
const { sub: _sub, ...noSub } = good('no-sub');

const validJwt = hs256(good('valid-user'), SECRET);
const bearer = (token) => ({ authorization: `Bearer ${token}` });
const cookie = (token) => ({ cookie: `sb_session=${token}` });

// Each case: how the client presents the credential, the expected reason,
// the method the handshake line must name (an array: any of them), and the
// strings that must never appear in the logs.
const cases = [
  {
    name: 'a client that presents no credential at all',
    opts: {},
    reason: 'missing_credentials',
    method: 'none',
  },
  {
    name: 'an auth payload without a token',
    opts: { auth: { user: 'alice' } },
    reason: 'missing_credentials',
    method: 'none',
  },
  {
    name: 'a garbage auth.token',
    opts: { auth: { token: '%%% not a token %%%' } },
    reason: 'invalid_token',
    method: 'token',
    secrets: ['%%% not a token %%%'],
  },
  {
    name: 'an unknown static API token',
    opts: { auth: { token: 'tok-mallory' } },
    reason: 'invalid_token',
    method: 'token',
    secrets: ['tok-mallory'],
  },
  {
    name: 'an auth.token that is not a string',
    opts: { auth: { token: 4242 } },
    reason: 'invalid_token',
    method: 'token',
  },
  {
    name: 'a JWT signed with another secret',
    token: hs256(good('mallory'), 'not-the-secret'),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT whose signature was tampered with',
    token: `${validJwt.slice(0, -4)}AAAA`,
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT whose payload was changed after signing',
    token: (() => {
      const [h, , sig] = validJwt.split('.');
      const forged = Buffer.from(JSON.stringify(good('root', { role: 'admin' }))).toString('base64url');
      return `${h}.${forged}.${sig}`;
    })(),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'an unsigned JWT (alg none)',
    token: signJwt(good('mallory'), { alg: 'none' }),
    reason: 'invalid_token',
    // The third segment is empty: the server may log it as a token or a JWT.
    method: ['token', 'jwt'],
  },
  {
    name: 'a JWT with alg none and a bogus signature',
    token: signJwt(good('mallory'), { alg: 'none', signature: 'c2lnbmF0dXJl' }),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT without exp',
    token: hs256(noExp, SECRET),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT without sub',
    token: hs256(noSub, SECRET),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT that is not valid before an hour from now (nbf)',
    token: hs256(good('early', { nbf: now() + 3600 }), SECRET),
    reason: 'invalid_token',
    method: 'jwt',
  },
  {
    name: 'a JWT that expired an hour ago',
    token: hs256(expiredClaims('late', { iss: ISSUER, aud: AUDIENCE }), SECRET),
    reason: 'expired_token',
    method: 'jwt',
  },
  {
    name: 'a JWT for another audience',
    token: hs256(good('elsewhere', { aud: 'another-api' }), SECRET),
    reason: 'wrong_audience',
    method: 'jwt',
  },
  {
    name: 'a JWT whose audience list does not name the configured one',
    token: hs256(good('elsewhere', { aud: ['another-api', 'yet-another'] }), SECRET),
    reason: 'wrong_audience',
    method: 'jwt',
  },
  {
    name: 'a JWT without aud while an audience is configured',
    token: hs256(noAud, SECRET),
    reason: 'wrong_audience',
    method: 'jwt',
  },
  {
    name: 'a JWT from another issuer',
    token: hs256(good('foreigner', { iss: 'https://evil.example' }), SECRET),
    reason: 'wrong_issuer',
    method: 'jwt',
  },
  {
    name: 'a JWT without iss while an issuer is configured',
    token: hs256(noIss, SECRET),
    reason: 'wrong_issuer',
    method: 'jwt',
  },
  {
    name: 'an expired JWT in an Authorization: Bearer header',
    headers: bearer(hs256(expiredClaims('late', { iss: ISSUER, aud: AUDIENCE }), SECRET)),
    reason: 'expired_token',
    method: 'jwt',
  },
  {
    name: 'an unknown static token in an Authorization: Bearer header',
    headers: bearer('tok-mallory'),
    reason: 'invalid_token',
    method: 'token',
    secrets: ['tok-mallory'],
  },
  {
    name: 'an Authorization: Basic header',
    headers: { authorization: `Basic ${Buffer.from('alice:tok-alice').toString('base64')}` },
    reason: 'invalid_token',
    method: ['token', 'jwt'],
    secrets: [Buffer.from('alice:tok-alice').toString('base64')],
  },
  {
    name: 'an expired JWT in the cookie',
    headers: cookie(hs256(expiredClaims('late', { iss: ISSUER, aud: AUDIENCE }), SECRET)),
    reason: 'expired_token',
    method: 'cookie',
  },
  {
    name: 'a cookie that is not a JWT',
    headers: cookie('definitely-not-a-jwt'),
    reason: 'invalid_token',
    method: 'cookie',
    secrets: ['definitely-not-a-jwt'],
  },
  {
    name: 'a static API token in the cookie (the cookie carries JWTs only)',
    headers: cookie('tok-alice'),
    reason: 'invalid_token',
    method: 'cookie',
  },
  {
    name: 'a cookie JWT for another audience',
    headers: cookie(hs256(good('elsewhere', { aud: 'another-api' }), SECRET)),
    reason: 'wrong_audience',
    method: 'cookie',
  },
  {
    name: 'an invalid auth.token together with a valid cookie (no fall-through)',
    opts: { auth: { token: 'tok-mallory' } },
    headers: cookie(validJwt),
    reason: 'invalid_token',
    method: 'token',
    secrets: ['tok-mallory', validJwt],
  },
  {
    name: 'an invalid auth.token together with a valid Bearer header (no fall-through)',
    opts: { auth: { token: hs256(good('mallory'), 'not-the-secret') } },
    headers: bearer('tok-alice'),
    reason: 'invalid_token',
    method: 'jwt',
    secrets: ['tok-alice'],
  },
  {
    name: 'an expired auth.token together with a valid Bearer header and cookie (no fall-through)',
    opts: { auth: { token: hs256(expiredClaims('late', { iss: ISSUER, aud: AUDIENCE }), SECRET) } },
    headers: { ...bearer(validJwt), ...cookie(validJwt) },
    reason: 'expired_token',
    method: 'jwt',
    secrets: [validJwt],
  },
  {
    name: 'a non-string auth.token together with a valid cookie (no fall-through)',
    opts: { auth: { token: { nested: 'tok-alice' } } },
    headers: cookie(validJwt),
    reason: 'invalid_token',
    method: 'token',
    secrets: [validJwt],
  },
  {
    name: 'an invalid Bearer header together with a valid cookie (no fall-through)',
    headers: { ...bearer('tok-mallory'), ...cookie(validJwt) },
    reason: 'invalid_token',
    method: 'token',
    secrets: ['tok-mallory', validJwt],
  },
  {
    name: 'an Authorization: Basic header together with a valid cookie (no fall-through)',
    headers: { authorization: 'Basic dXNlcjpwYXNz', ...cookie(validJwt) },
    reason: 'invalid_token',
    method: ['token', 'jwt'],
    secrets: [validJwt],
  },
];

/** Client options and secrets of a case. */
function presentation(c) {
  const opts = { ...(c.opts ?? {}) };
  const secrets = [...(c.secrets ?? [])];
  if (c.token !== undefined) {
    opts.auth = { ...(opts.auth ?? {}), token: c.token };
    secrets.push(c.token);
  }
  if (c.headers) {
    opts.extraHeaders = c.headers;
    for (const value of Object.values(c.headers)) {
      const token = value.replace(/^(Bearer|Basic) /, '').replace(/^sb_session=/, '');
      secrets.push(token);
    }
  }
  return { opts, secrets };
}

describe('with static API tokens and an HS256 secret, issuer and audience', () => {
  let server;
  before(async () => {
    server = await startServer({
      env: {
        SWITCHBOARD_API_TOKENS: 'alice:tok-alice,bob:tok-bob',
        SWITCHBOARD_JWT_SECRET: SECRET,
        SWITCHBOARD_JWT_ISSUER: ISSUER,
        SWITCHBOARD_JWT_AUDIENCE: AUDIENCE,
      },
    });
  });
  after(() => server?.stop());

  for (const ns of NAMESPACES) {
    for (const transport of TRANSPORTS) {
      for (const c of cases) {
        test(`${ns} refuses ${c.name} over ${transport} with ${c.reason}`, async () => {
          const { opts, secrets } = presentation(c);
          const since = server.logs.length;
          const err = await connectError(server.url, ns, { transports: [transport], ...opts });
          await expectRefused(server, err, {
            ns,
            reason: c.reason,
            method: c.method,
            since,
            secrets,
          });
        });
      }
    }
  }
});

describe('with static API tokens only', () => {
  let server;
  before(async () => {
    server = await startServer({ env: { SWITCHBOARD_API_TOKENS: 'alice:tok-alice' } });
  });
  after(() => server?.stop());

  const jwt = hs256(claims('carol'), SECRET);
  for (const transport of TRANSPORTS) {
    test(`/agent refuses a JWT in auth.token over ${transport} when JWT auth is not configured`, async () => {
      const since = server.logs.length;
      const err = await connectError(server.url, '/agent', {
        transports: [transport],
        auth: { token: jwt },
      });
      await expectRefused(server, err, {
        ns: '/agent',
        reason: 'invalid_token',
        method: ['token', 'jwt'],
        since,
        secrets: [jwt],
      });
    });

    test(`/agent refuses a cookie over ${transport} when JWT auth is not configured`, async () => {
      const since = server.logs.length;
      const err = await connectError(server.url, '/agent', {
        transports: [transport],
        extraHeaders: cookie(jwt),
      });
      await expectRefused(server, err, {
        ns: '/agent',
        reason: 'invalid_token',
        method: 'cookie',
        since,
        secrets: [jwt],
      });
    });
  }
});
