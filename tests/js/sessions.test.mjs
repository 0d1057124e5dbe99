// PROTOCOL §3, §4.1, §4.2, §5: sessions over /agent and HTTP — creating,
// listing (newest first, paginated), reading; the ownership rule (another
// user's session answers `forbidden` without any of its data, an unknown id
// `not_found`); malformed requests answer `invalid_payload` naming the field,
// change nothing and leave the socket connected.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  TRANSPORTS,
  ack,
  assertAckError,
  collectEvents,
  connect,
  httpApi,
  outputEvents,
  startServer,
  transportOf,
} from './helpers.mjs';

const TOKENS = 'alice:tok-alice,bob:tok-bob';
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const SESSION_KEYS = ['created_at', 'head_seq', 'id', 'metadata', 'owner', 'status', 'title', 'updated_at'];

/** A server with alice and bob, and alice's socket over `transport`. */
async function setup(t, transport) {
  const server = await startServer({ env: { SWITCHBOARD_API_TOKENS: TOKENS } });
  t.after(() => server.stop());
  const socket = await connect(server.url, '/agent', {
    transports: [transport],
    auth: { token: 'tok-alice' },
  });
  t.after(() => socket.close());
  assert.equal(transportOf(socket), transport);
  let disconnected = null;
  socket.on('disconnect', (reason) => (disconnected = reason));
  return { server, socket, disconnected: () => disconnected };
}

function assertSession(session, { owner, title, metadata = {}, head_seq = 0 }) {
  assert.deepEqual(Object.keys(session).sort(), SESSION_KEYS);
  assert.match(session.id, UUID_V7, 'a session id is a UUID v7');
  assert.equal(session.owner, owner);
  assert.equal(session.title, title);
  assert.equal(session.status, 'idle');
  assert.equal(session.head_seq, head_seq);
  assert.deepEqual(session.metadata, metadata);
  for (const field of ['created_at', 'updated_at']) {
    assert.ok(!Number.isNaN(Date.parse(session[field])), `${field} is a timestamp: ${session[field]}`);
  }
}

/** Every page of `session:list` with `limit`, following `next_before`. */
async function listAll(socket, limit) {
  const pages = [];
  let before;
  for (let i = 0; i < 20; i++) {
    const answer = await ack(socket, 'session:list', before ? { limit, before } : { limit });
    assert.equal(answer.ok, true, JSON.stringify(answer));
    assert.ok(answer.sessions.length <= limit, 'a page holds at most `limit` sessions');
    pages.push(answer.sessions.map((s) => s.id));
    if (answer.next_before === undefined) return pages;
    assert.equal(answer.next_before, answer.sessions.at(-1).id, 'next_before is the last id of the page');
    before = answer.next_before;
  }
  assert.fail('session:list kept answering next_before');
}

describe('sessions on /agent', () => {
  for (const transport of TRANSPORTS) {
    test(`a user creates sessions, lists them newest first page by page with next_before, and gets each one over ${transport}`, async (t) => {
      const { server, socket, disconnected } = await setup(t, transport);

      const created = [];
      for (let i = 1; i <= 5; i++) {
        const answer = await ack(socket, 'session:create', { title: `chat ${i}` });
        assert.equal(answer.ok, true, JSON.stringify(answer));
        assert.deepEqual(Object.keys(answer).sort(), ['ok', 'session']);
        assertSession(answer.session, { owner: 'alice', title: `chat ${i}` });
        created.push(answer.session);
      }
      const withMetadata = await ack(socket, 'session:create', {
        title: 'with metadata',
        metadata: { repo: 'switchboard', tags: ['a', 'b'], depth: { n: 1 } },
      });
      assert.equal(withMetadata.ok, true, JSON.stringify(withMetadata));
      assertSession(withMetadata.session, {
        owner: 'alice',
        title: 'with metadata',
        metadata: { repo: 'switchboard', tags: ['a', 'b'], depth: { n: 1 } },
      });
      created.push(withMetadata.session);
      const untitled = await ack(socket, 'session:create', {});
      assert.equal(untitled.ok, true, JSON.stringify(untitled));
      assertSession(untitled.session, { owner: 'alice', title: '' });
      created.push(untitled.session);
      assert.equal(new Set(created.map((s) => s.id)).size, created.length, 'ids are unique');

      const newestFirst = created.map((s) => s.id).reverse();
      // Without a limit: everything, newest first, no further page.
      const all = await ack(socket, 'session:list', {});
      assert.equal(all.ok, true);
      assert.deepEqual(all.sessions.map((s) => s.id), newestFirst);
      assert.equal(all.next_before, undefined);
      assert.deepEqual(all.sessions.at(-1), created[0], 'list shows the sessions as created');

      // Pages of 3: 3 + 3 + 1.
      const pages = await listAll(socket, 3);
      assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
      assert.deepEqual(pages.flat(), newestFirst);
      // Pages of 7, exactly the count: a next_before may point at an empty page.
      assert.deepEqual((await listAll(socket, 7)).flat(), newestFirst);

      for (const session of created) {
        const got = await ack(socket, 'session:get', { session_id: session.id });
        assert.deepEqual(got, { ok: true, session });
        const messages = await ack(socket, 'session:messages', { session_id: session.id });
        assert.deepEqual(messages, { ok: true, messages: [] });
      }

      // The same sessions over HTTP.
      const alice = httpApi(server, 'tok-alice');
      const listed = await alice.request('GET', '/v1/sessions?limit=3');
      assert.equal(listed.status, 200);
      assert.deepEqual(listed.body.sessions.map((s) => s.id), newestFirst.slice(0, 3));
      assert.equal(listed.body.next_before, newestFirst[2]);
      const next = await alice.request('GET', `/v1/sessions?limit=3&before=${listed.body.next_before}`);
      assert.deepEqual(next.body.sessions.map((s) => s.id), newestFirst.slice(3, 6));
      assert.deepEqual(await alice.getSession(created[5].id), created[5]);
      const noMessages = await alice.request('GET', `/v1/sessions/${created[5].id}/messages`);
      assert.equal(noMessages.status, 200);
      assert.deepEqual(noMessages.body, { messages: [] });
      const viaHttp = await alice.createSession({ title: 'over http' });
      assertSession(viaHttp, { owner: 'alice', title: 'over http' });
      const first = await ack(socket, 'session:list', { limit: 1 });
      assert.deepEqual(first.sessions, [viaHttp], 'a session created over HTTP is the newest');

      assert.equal(socket.connected, true);
      assert.equal(disconnected(), null);
    });

    test(`another user's sessions are not listed, and every request on them answers forbidden without their data, over ${transport} and HTTP`, async (t) => {
      const { server, socket, disconnected } = await setup(t, transport);
      const alice = httpApi(server, 'tok-alice');
      const bob = httpApi(server, 'tok-bob');

      const secretTitle = 'bob-secret-title-7c1f';
      const secretMeta = 'bob-secret-metadata-93ab';
      const bobs = await bob.createSession({ title: secretTitle, metadata: { note: secretMeta } });
      assertSession(bobs, { owner: 'bob', title: secretTitle, metadata: { note: secretMeta } });
      const bobSocket = await connect(server.url, '/agent', {
        transports: [transport],
        auth: { token: 'tok-bob' },
      });
      t.after(() => bobSocket.close());
      const bobs2 = (await ack(bobSocket, 'session:create', { title: secretTitle })).session;
      await bob.append(bobs.id, outputEvents(3));
      const own = (await ack(socket, 'session:create', { title: 'mine' })).session;

      // Lists show the caller's sessions only, over the socket and HTTP.
      const list = await ack(socket, 'session:list', {});
      assert.deepEqual(list.sessions.map((s) => s.id), [own.id]);
      const httpList = await alice.request('GET', '/v1/sessions');
      assert.deepEqual(httpList.body.sessions.map((s) => s.id), [own.id]);
      const bobList = await ack(bobSocket, 'session:list', {});
      assert.deepEqual(bobList.sessions.map((s) => s.id), [bobs2.id, bobs.id]);

      const leaks = (text) => [secretTitle, secretMeta].filter((secret) => text.includes(secret));

      // Every /agent request on bob's session: forbidden, nothing of it in the answer.
      const events = collectEvents(socket, bobs.id);
      for (const [event, payload] of [
        ['session:get', { session_id: bobs.id }],
        ['session:subscribe', { session_id: bobs.id }],
        ['session:subscribe', { session_id: bobs.id, after_seq: 1 }],
        ['session:unsubscribe', { session_id: bobs.id }],
        ['session:messages', { session_id: bobs.id }],
        ['session:messages', { session_id: bobs2.id, limit: 10 }],
      ]) {
        const answer = await ack(socket, event, payload);
        const message = assertAckError(answer, 'forbidden', `${event} on bob's session`);
        assert.deepEqual(leaks(message), [], `${event}'s error leaks bob's data: ${message}`);
      }

      // The same over HTTP: 403 with only the error.
      const id = bobs.id;
      for (const [method, path, body] of [
        ['GET', `/v1/sessions/${id}`],
        ['GET', `/v1/sessions/${id}/messages`],
        ['GET', `/v1/sessions/${id}/events`],
        ['GET', `/v1/sessions/${id}/events?after_seq=0`],
        ['GET', `/v1/sessions/${id}/stream`],
        ['POST', `/v1/sessions/${id}/events`, { events: outputEvents(1, { prefix: 'alice ' }) }],
      ]) {
        const res = await alice.request(method, path, body);
        assert.equal(res.status, 403, `${method} ${path} answered ${res.status}: ${JSON.stringify(res.body)}`);
        assert.deepEqual(Object.keys(res.body), ['error'], `${method} ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error.code, 'forbidden');
        assert.deepEqual(leaks(JSON.stringify(res.body)), [], `${method} ${path} leaks bob's data`);
      }

      // Nothing changed for bob, and alice was never sent bob's events.
      const after = await bob.getSession(id);
      assert.equal(after.head_seq, 3, "alice's POST appended nothing");
      await bob.append(id, outputEvents(1, { from: 4 }));
      const mine = collectEvents(socket, own.id);
      const subscribed = await ack(socket, 'session:subscribe', { session_id: own.id });
      assert.equal(subscribed.ok, true);
      await alice.append(own.id, outputEvents(1));
      await mine.waitForSeq(1);
      assert.deepEqual(events.events, [], "alice received bob's events");

      // An id that names no session: not_found, over the socket and HTTP.
      const unknown = randomUUID();
      for (const event of ['session:get', 'session:subscribe', 'session:unsubscribe', 'session:messages']) {
        assertAckError(await ack(socket, event, { session_id: unknown }), 'not_found', `${event} on an unknown id`);
      }
      for (const path of [`/v1/sessions/${unknown}`, `/v1/sessions/${unknown}/events`]) {
        const res = await alice.request('GET', path);
        assert.equal(res.status, 404, `${path} answered ${res.status}`);
        assert.equal(res.body.error.code, 'not_found');
      }

      // Bob still acts on his own session normally.
      assert.equal((await ack(bobSocket, 'session:get', { session_id: id })).session.title, secretTitle);
      assert.equal(socket.connected, true);
      assert.equal(disconnected(), null);
    });

    test(`malformed requests answer invalid_payload naming the field, change nothing, and leave the socket usable over ${transport}`, async (t) => {
      const { server, socket, disconnected } = await setup(t, transport);
      const alice = httpApi(server, 'tok-alice');
      const session = (await ack(socket, 'session:create', { title: 'target' })).session;
      await alice.append(session.id, outputEvents(2));
      const id = session.id;

      const cases = [
        ['session:create', { title: 42 }, 'title'],
        ['session:create', { title: ['a'] }, 'title'],
        ['session:create', { metadata: 'not an object' }, 'metadata'],
        ['session:create', { metadata: [1, 2] }, 'metadata'],
        ['session:create', { title: 'x', titel: 'typo' }, 'titel'],
        ['session:list', { limit: 0 }, 'limit'],
        ['session:list', { limit: -1 }, 'limit'],
        ['session:list', { limit: 'ten' }, 'limit'],
        ['session:list', { limit: 1.5 }, 'limit'],
        ['session:list', { before: 'not-a-uuid' }, 'before'],
        ['session:list', { before: 7 }, 'before'],
        ['session:list', { page: 2 }, 'page'],
        ['session:get', {}, 'session_id'],
        ['session:get', { session_id: 'not-a-uuid' }, 'session_id'],
        ['session:get', { session_id: 42 }, 'session_id'],
        ['session:get', { session_id: null }, 'session_id'],
        ['session:get', { session_id: id, extra: true }, 'extra'],
        ['session:subscribe', {}, 'session_id'],
        ['session:subscribe', { session_id: 'nope' }, 'session_id'],
        ['session:subscribe', { session_id: id, after_seq: 'x' }, 'after_seq'],
        ['session:subscribe', { session_id: id, after_seq: -1 }, 'after_seq'],
        ['session:subscribe', { session_id: id, after_seq: 1.5 }, 'after_seq'],
        ['session:subscribe', { session_id: id, after_seq: 0, follow: true }, 'follow'],
        ['session:unsubscribe', {}, 'session_id'],
        ['session:unsubscribe', { session_id: 'nope' }, 'session_id'],
        ['session:messages', {}, 'session_id'],
        ['session:messages', { session_id: id, limit: 0 }, 'limit'],
        ['session:messages', { session_id: id, limit: 'x' }, 'limit'],
        ['session:messages', { session_id: id, before: 5 }, 'before'],
        ['session:messages', { session_id: id, order: 'asc' }, 'order'],
      ];
      for (const [event, payload, field] of cases) {
        const what = `${event} ${JSON.stringify(payload)}`;
        const message = assertAckError(await ack(socket, event, payload), 'invalid_payload', what);
        assert.ok(message.includes(field), `${what}: the message does not name ${field}: ${message}`);
      }
      // Not an object at all.
      for (const event of ['session:create', 'session:list', 'session:subscribe']) {
        for (const payload of ['text', 42, [1, 2], null]) {
          const answer = await socket.timeout(5000).emitWithAck(event, payload);
          assertAckError(answer, 'invalid_payload', `${event} with ${JSON.stringify(payload)}`);
        }
      }
      // Well-formed but impossible: after_seq beyond the head is a conflict.
      const conflict = await ack(socket, 'session:subscribe', { session_id: id, after_seq: 3 });
      assertAckError(conflict, 'conflict', 'after_seq beyond head_seq');

      // Nothing changed: no session was created, the session is as before…
      const list = await ack(socket, 'session:list', {});
      assert.deepEqual(list.sessions.map((s) => s.id), [id], 'a refused session:create created nothing');
      assert.equal((await ack(socket, 'session:get', { session_id: id })).session.head_seq, 2);
      // …and no refused subscribe subscribed: seq 3 is appended before a
      // valid subscribe after it, so it arrives only if one of them did.
      const events = collectEvents(socket, id);
      await alice.append(id, outputEvents(1, { from: 3 }));
      const subscribed = await ack(socket, 'session:subscribe', { session_id: id, after_seq: 3 });
      assert.equal(subscribed.ok, true, JSON.stringify(subscribed));
      assert.equal(subscribed.head_seq, 3);
      await alice.append(id, outputEvents(1, { from: 4 }));
      await events.waitForSeq(4);
      assert.deepEqual(events.seqs(), [4], 'a refused subscribe still delivered events');

      // The socket is still connected and answers.
      assert.equal(socket.connected, true);
      assert.equal(disconnected(), null);
      const whoami = await ack(socket, 'auth:whoami', {});
      assert.equal(whoami.user_id, 'alice');
      assert.equal((await ack(socket, 'session:create', { title: 'afterwards' })).ok, true);
    });
  }
});
