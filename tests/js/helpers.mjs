// Shared helpers of the JavaScript compatibility suite: a server per test
// (fresh SQLite database in a temporary directory), socket.io-client
// wrappers, and JWT minting with node:crypto only.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { io } from 'socket.io-client';

export const SERVER_BIN =
  process.env.SWITCHBOARD_BIN ?? new URL('../../target/debug/switchboard', import.meta.url).pathname;

/** Both transports of the official client, for test matrices. */
export const TRANSPORTS = ['websocket', 'polling'];
/** Both authenticated namespaces. */
export const NAMESPACES = ['/agent', '/gateway'];

const START_TIMEOUT_MS = 15_000;

// Servers still running, so that none outlives a test process that crashes
// or forgets to stop one.
const running = new Map(); // child process → temporary directory
process.once('exit', () => {
  for (const [child, dir] of running) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Starts `switchboard serve` on a free loopback port with a fresh database.
 *
 * - `env`: extra environment variables (the process inherits only PATH), or
 *   a function `({ dir }) => env` of the server's temporary directory.
 * - `files`: `{ name: content }` written into that directory before start.
 *
 * Resolves once the server logged `listening`, with
 * `{ url, port, host, dir, logs, stderr(), waitForLog(predicate, timeoutMs), stop() }`.
 * Rejects with the collected stderr if the process exits before listening.
 */
export async function startServer({ env = {}, files = {} } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'switchboard-js-'));
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), content);
  }
  const extra = typeof env === 'function' ? env({ dir }) : env;
  const child = spawn(
    SERVER_BIN,
    ['serve', '--bind', '127.0.0.1:0', '--log-format', 'json'],
    {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: `sqlite://${dir}/sb.db?mode=rwc`,
        RUST_LOG: 'info',
        ...extra,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );

  running.set(child, dir);
  const logs = [];
  const rawLines = [];
  const waiters = new Set();
  let exited = null; // { code, signal } once the process is gone
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      exited ??= { code, signal };
      resolve(exited);
    });
    // Spawning failed (e.g. the binary is not built): no 'exit' may follow.
    child.once('error', (error) => {
      running.delete(child);
      exited ??= { code: null, signal: null, error: `${error.message} (${SERVER_BIN})` };
      resolve(exited);
    });
  });
  // Drain stdout so that the child never blocks on a full pipe.
  child.stdout.resume();

  const lines = createInterface({ input: child.stderr });
  lines.on('line', (line) => {
    rawLines.push(line);
    let parsed;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = { message: line, unparsed: true };
    }
    logs.push(parsed);
    for (const waiter of waiters) waiter.check(parsed);
  });
  const stderrClosed = new Promise((resolve) => lines.once('close', resolve));
  const stderr = () => rawLines.join('\n');

  /**
   * Resolves with the first log line (already seen or to come) matching
   * `predicate`; `since` skips the first `since` lines; aborting `signal`
   * stops waiting (the promise then never settles).
   */
  function waitForLog(predicate, timeoutMs = 5000, { since = 0, signal } = {}) {
    const found = logs.slice(since).find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const done = () => {
        waiters.delete(waiter);
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
      };
      const waiter = {
        check(line) {
          if (predicate(line)) {
            done();
            resolve(line);
          }
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`no matching log line within ${timeoutMs} ms; stderr so far:\n${stderr()}`),
        );
      }, timeoutMs);
      waiters.add(waiter);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  let listening;
  const startWait = new AbortController();
  try {
    listening = await Promise.race([
      waitForLog((l) => l.message === 'listening' && typeof l.addr === 'string', START_TIMEOUT_MS, {
        signal: startWait.signal,
      }),
      exitPromise.then(async (how) => {
        if (startWait.signal.aborted) return null; // listening won the race
        if (!how.error) await stderrClosed;
        throw new Error(
          how.error
            ? `cannot start switchboard: ${how.error}; run cargo build first`
            : `switchboard exited before listening (code ${how.code}, signal ${how.signal}):\n${stderr()}`,
        );
      }),
    ]);
    startWait.abort();
  } catch (error) {
    startWait.abort();
    if (!exited) {
      child.kill('SIGKILL');
      await exitPromise;
    }
    await rm(dir, { recursive: true, force: true });
    error.stderr = stderr();
    error.exit = exited;
    throw error;
  }

  const port = Number(listening.addr.split(':').pop());
  let stopping = null;
  /** SIGTERM, then waits for the exit; resolves with `{ code, signal }`. */
  function stop() {
    stopping ??= (async () => {
      if (!exited) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const how = await exitPromise;
      clearTimeout(killer);
      if (!how.error) await stderrClosed;
      await rm(dir, { recursive: true, force: true });
      return how;
    })();
    return stopping;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    dir,
    logs,
    stderr,
    waitForLog,
    stop,
    process: child,
  };
}

/**
 * Connects a socket to `url + ns`. Resolves with the socket on `connect`,
 * rejects with the client's Error on `connect_error` (the socket is then
 * closed). No reconnection and a fresh Manager unless `opts` says otherwise.
 */
export function connect(url, ns = '/agent', opts = {}) {
  const socket = io(url + ns, { reconnection: false, forceNew: true, timeout: 5000, ...opts });
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off('connect_error', onError);
      resolve(socket);
    };
    const onError = (err) => {
      socket.off('connect', onConnect);
      socket.close();
      reject(err);
    };
    socket.once('connect', onConnect);
    socket.once('connect_error', onError);
  });
}

/**
 * Like `connect`, but expects the connection to be refused: resolves with
 * the `connect_error` Error, rejects if the socket connects.
 */
export async function connectError(url, ns = '/agent', opts = {}) {
  let socket;
  try {
    socket = await connect(url, ns, opts);
  } catch (err) {
    return err;
  }
  socket.close();
  throw new Error(`expected ${ns} to refuse the connection, but it connected`);
}

/** Emits `event` with `payload` and resolves with the acknowledgement (5 s timeout). */
export function ack(socket, event, payload = {}) {
  return socket.timeout(5000).emitWithAck(event, payload);
}

/** The name of the transport the socket's engine currently uses. */
export function transportOf(socket) {
  return socket.io.engine.transport.name;
}

// ---------------------------------------------------------------------------
// JWTs

const b64url = (value) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

export const now = () => Math.floor(Date.now() / 1000);

/** Claims for `sub`, valid for an hour unless overridden. */
export function claims(sub, extra = {}) {
  const t = now();
  return { sub, iat: t, exp: t + 3600, ...extra };
}

/** Claims for `sub` that expired an hour ago (well past the 30 s leeway). */
export function expiredClaims(sub, extra = {}) {
  const t = now();
  return { sub, iat: t - 7200, exp: t - 3600, ...extra };
}

/**
 * Signs `payload` as a compact JWS.
 * - `alg: 'HS256'`: `key` is the shared secret (string).
 * - `alg: 'RS256' | 'ES256' | 'EdDSA'`: `key` is a private KeyObject.
 * - `alg: 'none'`: no signature (empty third segment, or `signature` if given).
 * `header` adds or overrides header fields.
 */
export function signJwt(payload, { alg = 'HS256', key, header = {}, signature } = {}) {
  const input = `${b64url({ alg, typ: 'JWT', ...header })}.${b64url(payload)}`;
  let sig;
  switch (alg) {
    case 'HS256':
      sig = createHmac('sha256', key).update(input).digest('base64url');
      break;
    case 'RS256':
      sig = cryptoSign('sha256', Buffer.from(input), key).toString('base64url');
      break;
    case 'ES256':
      sig = cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString(
        'base64url',
      );
      break;
    case 'EdDSA':
      sig = cryptoSign(null, Buffer.from(input), key).toString('base64url');
      break;
    case 'none':
      sig = '';
      break;
    default:
      throw new Error(`signJwt: unsupported alg ${alg}`);
  }
  return `${input}.${signature ?? sig}`;
}

/** HS256 shorthand. */
export function hs256(payload, secret) {
  return signJwt(payload, { alg: 'HS256', key: secret });
}

/**
 * A fresh key pair for `alg` (`RS256`, `ES256` or `EdDSA`):
 * `{ alg, privateKey, publicPem }`, the public key as SPKI PEM.
 */
export function keyPair(alg) {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : alg === 'ES256'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : alg === 'EdDSA'
          ? generateKeyPairSync('ed25519')
          : null;
  if (!pair) throw new Error(`keyPair: unsupported alg ${alg}`);
  return {
    alg,
    privateKey: pair.privateKey,
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }),
  };
}

/** The decoded payload of a compact JWT (no verification). */
export function decodeJwt(token) {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(payload, 'base64url').toString()),
  };
}

// ---------------------------------------------------------------------------
// Logs

/** The `handshake` log lines after index `since`. */
export function handshakeLines(server, since = 0) {
  return server.logs.slice(since).filter((l) => l.message === 'handshake');
}

/** Waits for the next `handshake` log line after index `since`. */
export function nextHandshakeLog(server, since, timeoutMs = 5000) {
  return server.waitForLog((l) => l.message === 'handshake', timeoutMs, { since });
}

/**
 * Throws if `secret` appears anywhere in the server's stderr. For a JWT, its
 * signature segment alone must not appear either.
 */
export function assertNotLogged(server, secret, what = 'the credential') {
  const text = server.stderr();
  assert.ok(!text.includes(secret), `${what} (${secret}) appears in the server logs`);
  const parts = secret.split('.');
  if (parts.length === 3 && parts[2].length >= 16) {
    assert.ok(!text.includes(parts[2]), `the signature of ${what} appears in the server logs`);
  }
}

/**
 * The checks of an accepted handshake: the socket uses `transport`,
 * `auth:whoami` answers `{ ok: true, ...identity }`, exactly one `handshake`
 * log line was written since log index `since`, with the namespace, method,
 * outcome and user, and none of `secrets` appears in the logs.
 */
export async function expectAccepted(server, socket, { ns, transport, identity, since, secrets = [] }) {
  assert.equal(transportOf(socket), transport, 'the socket uses the requested transport');
  let whoami;
  try {
    whoami = await ack(socket, 'auth:whoami', {});
  } catch (err) {
    err.message +=
      ': auth:whoami, emitted right after connect, was never acknowledged' +
      ' (see requests.test.mjs: "a request emitted as soon as the socket connects is acknowledged")';
    throw err;
  }
  assert.deepEqual(whoami, { ok: true, ...identity });
  const line = await nextHandshakeLog(server, since);
  assert.equal(line.namespace, ns);
  assert.equal(line.method, identity.method);
  assert.equal(line.outcome, 'accepted');
  assert.equal(line.user, identity.user_id);
  assert.equal(line.reason, undefined);
  assert.equal(handshakeLines(server, since).length, 1, 'one handshake line per handshake');
  for (const secret of secrets) assertNotLogged(server, secret);
}

/**
 * The checks of a refused handshake: `err.message` is `unauthorized: R`,
 * exactly one `handshake` line since `since` says `refused` with reason R,
 * the namespace and `method` (any of `methods` when an array), no user, and
 * none of `secrets` appears in the logs.
 */
export async function expectRefused(server, err, { ns, reason, method, since, secrets = [] }) {
  assert.equal(err.message, `unauthorized: ${reason}`);
  const line = await nextHandshakeLog(server, since);
  assert.equal(line.namespace, ns);
  assert.equal(line.outcome, 'refused');
  assert.equal(line.reason, reason);
  if (Array.isArray(method)) {
    assert.ok(method.includes(line.method), `logged method ${line.method} is one of ${method}`);
  } else {
    assert.equal(line.method, method);
  }
  assert.equal(line.user, undefined, 'a refused handshake names no user');
  assert.equal(handshakeLines(server, since).length, 1, 'one handshake line per handshake');
  for (const secret of secrets) assertNotLogged(server, secret);
}

// ---------------------------------------------------------------------------
// HTTP

/**
 * `POST /v1/auth/socket-token` with, by default, the server's own Origin and
 * `X-Requested-With: switchboard`; `cookie` is the session cookie's JWT
 * (sent as `sb_session`), `origin: null` / `requestedWith: null` omit them.
 */
export function requestSocketToken(
  server,
  { cookie, cookieName = 'sb_session', origin = server.url, requestedWith = 'switchboard', headers = {} } = {},
) {
  const h = { ...headers };
  if (origin !== null) h.origin = origin;
  if (requestedWith !== null) h['x-requested-with'] = requestedWith;
  if (cookie !== undefined) h.cookie = `${cookieName}=${cookie}`;
  return fetch(`${server.url}/v1/auth/socket-token`, { method: 'POST', headers: h });
}

/** A socket token for the cookie's user; throws unless the server answers 200. */
export async function socketTokenFor(server, cookie) {
  const res = await requestSocketToken(server, { cookie });
  const body = await res.text();
  assert.equal(res.status, 200, `socket-token answered ${res.status}: ${body}`);
  return JSON.parse(body).token;
}
