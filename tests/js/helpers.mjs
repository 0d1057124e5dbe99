// Shared helpers of the JavaScript compatibility suite: a server per test
// (fresh SQLite database in a temporary directory), socket.io-client
// wrappers, and JWT minting with node:crypto only.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { EventSource } from 'eventsource';
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
 * - `bind`: the listen address (default `127.0.0.1:0`, a free port); with
 *   `freePort()`, a server can be restarted on the same address.
 * - To keep the database across servers, pass `DATABASE_URL` in `env`
 *   pointing into a directory of your own (`tempDir`): the server's own
 *   directory is removed when it stops.
 *
 * Resolves once the server logged `listening`, with
 * `{ url, port, host, dir, logs, stderr(), waitForLog(predicate, timeoutMs), stop() }`.
 * Rejects with the collected stderr if the process exits before listening.
 */
export async function startServer({ env = {}, files = {}, bind = '127.0.0.1:0' } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'switchboard-js-'));
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), content);
  }
  const extra = typeof env === 'function' ? env({ dir }) : env;
  const child = spawn(
    SERVER_BIN,
    ['serve', '--bind', bind, '--log-format', 'json'],
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

// ---------------------------------------------------------------------------
// Ports, directories, waiting

/** A free TCP port on 127.0.0.1: bound to port 0, then released. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A temporary directory, removed when the test `t` ends. */
export async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), 'switchboard-js-data-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Resolves with the first argument of the next `event` on `emitter` (a
 * socket, a Manager, an EventSource…); rejects after `timeoutMs`.
 */
export function nextEvent(emitter, event, timeoutMs = 5000) {
  const on = (emitter.on ?? emitter.addEventListener).bind(emitter);
  const off = (emitter.off ?? emitter.removeEventListener).bind(emitter);
  return new Promise((resolve, reject) => {
    const listener = (value) => {
      clearTimeout(timer);
      off(event, listener);
      resolve(value);
    };
    const timer = setTimeout(() => {
      off(event, listener);
      reject(new Error(`no ${event} within ${timeoutMs} ms`));
    }, timeoutMs);
    on(event, listener);
  });
}

/** Resolves or rejects like `promise`, but rejects naming `what` after `timeoutMs`. */
export function withTimeout(promise, timeoutMs, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// Sessions and events

/** The `{ ok: false, error: { code } }` acknowledgement check; returns the message. */
export function assertAckError(answer, code, what = 'the request') {
  assert.equal(answer?.ok, false, `${what} should fail with ${code}: ${JSON.stringify(answer)}`);
  assert.deepEqual(Object.keys(answer).sort(), ['error', 'ok'], `${what}: ${JSON.stringify(answer)}`);
  assert.equal(answer.error?.code, code, `${what}: ${JSON.stringify(answer)}`);
  assert.equal(typeof answer.error.message, 'string');
  return answer.error.message;
}

/**
 * A JSON client of the HTTP API for `token` (`base` is a server or its URL).
 * `request(method, path, body?, headers?)` resolves with `{ status, headers,
 * body }` (body parsed when JSON); the other methods assert success and
 * resolve with the parsed body.
 */
export function httpApi(base, token) {
  const url = typeof base === 'string' ? base : base.url;
  async function request(method, path, body, headers = {}) {
    const h = { authorization: `Bearer ${token}`, ...headers };
    const init = { method, headers: h };
    if (body !== undefined) {
      h['content-type'] = 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(url + path, init);
    const text = await res.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }
  async function expect(status, method, path, body) {
    const res = await request(method, path, body);
    assert.equal(res.status, status, `${method} ${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }
  return {
    request,
    /** `POST /v1/sessions` → the session. */
    async createSession(body = {}) {
      return (await expect(201, 'POST', '/v1/sessions', body)).session;
    },
    async getSession(id) {
      return (await expect(200, 'GET', `/v1/sessions/${id}`)).session;
    },
    /** `POST /v1/sessions/{id}/events` → `{ first_seq, last_seq, duplicates }`. */
    append(id, events) {
      return expect(200, 'POST', `/v1/sessions/${id}/events`, { events });
    },
    /** Appends `events` in batches of `size`, one request after the other; resolves with the last answer. */
    async appendInBatches(id, events, size = 500) {
      let last;
      for (let i = 0; i < events.length; i += size) last = await this.append(id, events.slice(i, i + size));
      return last;
    },
    /** `GET /v1/sessions/{id}/events?…` → the page. */
    readEvents(id, query = {}) {
      const qs = new URLSearchParams(query).toString();
      return expect(200, 'GET', `/v1/sessions/${id}/events${qs ? `?${qs}` : ''}`);
    },
  };
}

/** `n` producer events `output {stream: 'stdout', data: '<prefix><i>'}`, i from `from`. */
export function outputEvents(n, { prefix = 'line ', from = 1 } = {}) {
  return Array.from({ length: n }, (_, i) => ({
    type: 'output',
    data: { stream: 'stdout', data: `${prefix}${from + i}` },
  }));
}

/**
 * Records the `agent:event` envelopes that `socket` receives for
 * `sessionId`, in arrival order. Register it BEFORE emitting
 * `session:subscribe`: the client may run `agent:event` listeners before the
 * subscribe acknowledgement's promise continues.
 *
 * `events`, `seqs()`, `last` (highest seq seen, 0 at first) and
 * `waitForSeq(seq, timeoutMs)`, which resolves once an event with at least
 * that seq arrived and rejects after the timeout, naming what arrived.
 */
export function collectEvents(socket, sessionId) {
  const events = [];
  const waiters = new Set();
  const collector = {
    events,
    last: 0,
    seqs: () => events.map((e) => e.seq),
    waitForSeq(seq, timeoutMs = 10_000) {
      if (collector.last >= seq) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const waiter = { seq, resolve };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(
            new Error(
              `seq ${seq} not received within ${timeoutMs} ms; got ${events.length} events, last seq ${collector.last}`,
            ),
          );
        }, timeoutMs);
        waiter.resolve = () => {
          clearTimeout(timer);
          resolve();
        };
        waiters.add(waiter);
      });
    },
    stop: () => socket.off('agent:event', listener),
  };
  function listener(envelope) {
    if (envelope?.session_id !== sessionId) return;
    events.push(envelope);
    collector.last = Math.max(collector.last, envelope.seq);
    for (const waiter of waiters) {
      if (collector.last >= waiter.seq) {
        waiters.delete(waiter);
        waiter.resolve();
      }
    }
  }
  socket.on('agent:event', listener);
  return collector;
}

/**
 * Asserts that `seqs` is exactly `from, from + 1, …, to`: reports the first
 * duplicate, gap or reordering rather than a diff of the whole list.
 */
export function assertContiguous(seqs, from, to, what = 'the received seqs') {
  const seen = new Set();
  for (let i = 0; i < seqs.length; i++) {
    const expected = from + i;
    if (seqs[i] !== expected) {
      const kind = seen.has(seqs[i]) ? 'a duplicate' : seqs[i] > expected ? 'a gap' : 'out of order';
      assert.fail(
        `${what}: position ${i} holds seq ${seqs[i]} where ${expected} was expected (${kind}); ` +
          `around it: ${JSON.stringify(seqs.slice(Math.max(0, i - 3), i + 4))}`,
      );
    }
    seen.add(seqs[i]);
  }
  assert.equal(
    seqs.length,
    to - from + 1,
    `${what}: ${seqs.length} events from ${from}, expected up to ${to}; last ${seqs.at(-1)}`,
  );
}

// ---------------------------------------------------------------------------
// Server-Sent Events

/**
 * Opens `url` (a `/v1/sessions/{id}/stream` URL) with the `eventsource`
 * package, sending `Authorization: Bearer token` and `headers` (e.g.
 * `Last-Event-ID`) on the first request; the library's own headers win on
 * its reconnections. Resolves once the stream is open (rejects on an error
 * event first) with `{ es, messages, ids(), envelopes(), waitForId(id,
 * timeoutMs), close() }`; `messages` are the `message` events in order.
 */
export function openEventStream(url, { token, headers = {} } = {}) {
  const es = new EventSource(url, {
    fetch: (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...headers, ...init.headers, authorization: `Bearer ${token}` },
      }),
  });
  const messages = [];
  const waiters = new Set();
  const lastId = () => (messages.length ? Number(messages.at(-1).lastEventId) : 0);
  es.addEventListener('message', (event) => {
    messages.push(event);
    for (const waiter of waiters) waiter();
  });
  const stream = {
    es,
    messages,
    ids: () => messages.map((m) => Number(m.lastEventId)),
    envelopes: () => messages.map((m) => JSON.parse(m.data)),
    waitForId(id, timeoutMs = 5000) {
      if (lastId() >= id) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const waiter = () => {
          if (lastId() < id) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`SSE id ${id} not received within ${timeoutMs} ms; ids so far ${stream.ids()}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: () => es.close(),
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      es.close();
      reject(new Error(`the event stream ${url} did not open within 5000 ms`));
    }, 5000);
    let opened = false;
    es.addEventListener('open', () => {
      opened = true;
      clearTimeout(timer);
      resolve(stream);
    }, { once: true });
    es.addEventListener('error', (event) => {
      if (opened) return; // later errors: the library reconnects by itself
      clearTimeout(timer);
      es.close();
      reject(new Error(`the event stream ${url} failed: ${event.code ?? ''} ${event.message ?? ''}`));
    });
  });
}
