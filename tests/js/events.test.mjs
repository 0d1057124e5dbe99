// PROTOCOL §4.3, §5: the event log as clients see it — replay then live
// delivery with no gap and no duplicate (also while a producer appends),
// resuming after a reconnection and after a server restart, Server-Sent
// Events with Last-Event-ID and keep-alives, producer ingest (idempotency,
// atomic refusal, size limits) and retention.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import {
  TRANSPORTS,
  ack,
  assertContiguous,
  collectEvents,
  connect,
  freePort,
  httpApi,
  nextEvent,
  openEventStream,
  outputEvents,
  startServer,
  tempDir,
  transportOf,
  withTimeout,
} from './helpers.mjs';

const TOKENS = 'alice:tok-alice,bob:tok-bob';
const ENVELOPE_KEYS = ['data', 'run_id', 'seq', 'session_id', 'ts', 'type'];

/** A fresh server (extra `env`), alice's HTTP client and one of her sessions. */
async function setup(t, env = {}) {
  const server = await startServer({ env: { SWITCHBOARD_API_TOKENS: TOKENS, ...env } });
  t.after(() => server.stop());
  const alice = httpApi(server, 'tok-alice');
  const session = await alice.createSession({ title: 'events' });
  return { server, alice, id: session.id };
}

/** Alice's socket over `transport`, closed after the test. */
async function aliceSocket(t, url, transport, opts = {}) {
  const socket = await connect(url, '/agent', {
    transports: [transport],
    auth: { token: 'tok-alice' },
    ...opts,
  });
  t.after(() => socket.close());
  assert.equal(transportOf(socket), transport);
  return socket;
}

/** Checks the envelope of an `output` event made by `outputEvents`. */
function assertOutputEnvelope(envelope, sessionId, line) {
  assert.deepEqual(Object.keys(envelope).sort(), ENVELOPE_KEYS);
  assert.equal(envelope.session_id, sessionId);
  assert.equal(envelope.type, 'output');
  assert.equal(envelope.run_id, null, 'a producer event belongs to no run');
  assert.ok(!Number.isNaN(Date.parse(envelope.ts)), `ts is a timestamp: ${envelope.ts}`);
  assert.deepEqual(envelope.data, { stream: 'stdout', data: `line ${line}` });
}

describe('replay and live delivery on /agent', () => {
  for (const transport of TRANSPORTS) {
    test(`a subscriber after seq 100 of 1,300 stored events receives every later seq exactly once and in order while three producers keep appending, over ${transport}`, async (t) => {
      const { server, alice, id } = await setup(t);
      const stored = await alice.appendInBatches(id, outputEvents(1300), 500);
      assert.equal(stored.last_seq, 1300);

      const socket = await aliceSocket(t, server.url, transport);
      const events = collectEvents(socket, id);
      const arrivals = new Map(); // seq → when it arrived
      socket.on('agent:event', (e) => e.session_id === id && arrivals.set(e.seq, performance.now()));

      // Three producers append batches of 10 `x.live` events from the moment
      // the subscription is requested until the replay is over and each of
      // them appended two more batches (at most 100 batches each).
      let subscribeAck = null;
      const batches = []; // { first_seq, last_seq, at }
      const counts = [0, 0, 0];
      const producer = async (p) => {
        let after = 0;
        for (let batch = 0; batch < 100 && after < 2; batch++) {
          const live = Array.from({ length: 10 }, () => ({ type: 'x.live', data: { p, n: counts[p]++ } }));
          const answer = await alice.append(id, live);
          batches.push({ ...answer, at: performance.now() });
          if (subscribeAck !== null && events.last >= subscribeAck.head_seq) after++;
        }
      };
      const producing = Promise.all([0, 1, 2].map(producer));
      const answer = await ack(socket, 'session:subscribe', { session_id: id, after_seq: 100 });
      subscribeAck = answer;
      await producing;
      const finalHead = Math.max(...batches.map((b) => b.last_seq));

      assert.equal(answer.ok, true, JSON.stringify(answer));
      assert.equal(answer.session.id, id);
      assert.ok(answer.head_seq >= 1300 && answer.head_seq <= finalHead, `head_seq ${answer.head_seq}`);
      assert.equal(answer.truncated, undefined, 'nothing was pruned');
      assert.ok(finalHead > answer.head_seq, 'events were appended after the subscription');
      await events.waitForSeq(finalHead, 20_000);
      assertContiguous(events.seqs(), 101, finalHead);

      // The contents: the stored lines, then each producer's events in order.
      for (const envelope of events.events.slice(0, 1200)) {
        assertOutputEnvelope(envelope, id, envelope.seq);
      }
      const live = events.events.slice(1200);
      assert.ok(live.every((e) => e.type === 'x.live'));
      for (const p of [0, 1, 2]) {
        assert.deepEqual(
          live.filter((e) => e.data.p === p).map((e) => e.data.n),
          Array.from({ length: counts[p] }, (_, i) => i),
          `producer ${p}'s events`,
        );
      }
      const replayEnd = arrivals.get(answer.head_seq);
      const during = batches.filter((b) => b.first_seq > answer.head_seq && b.at < replayEnd).length;
      t.diagnostic(
        `ack head_seq ${answer.head_seq}, final head ${finalHead}; ${during} of ${batches.length} ` +
          'batches were committed after the subscription and before its replay had arrived',
      );
    });
  }

  for (const transport of TRANSPORTS) {
    test(`subscribing again on the same socket replays from the new after_seq without doubling live events, and unsubscribing stops delivery, over ${transport}`, async (t) => {
      const { server, alice, id } = await setup(t);
      const socket = await aliceSocket(t, server.url, transport);
      const events = collectEvents(socket, id);
      await alice.append(id, outputEvents(5));
      assert.equal((await ack(socket, 'session:subscribe', { session_id: id })).head_seq, 5);
      await events.waitForSeq(5);

      // Again, after what was seen: live events keep coming once.
      assert.equal((await ack(socket, 'session:subscribe', { session_id: id, after_seq: 5 })).ok, true);
      await alice.append(id, outputEvents(1, { from: 6 }));
      await events.waitForSeq(6);
      // Again, from further back: those events come again, then live ones once.
      const again = await ack(socket, 'session:subscribe', { session_id: id, after_seq: 2 });
      assert.equal(again.head_seq, 6);
      await alice.append(id, outputEvents(1, { from: 7 }));
      await events.waitForSeq(7);
      assert.deepEqual(events.seqs(), [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7]);

      assert.deepEqual(await ack(socket, 'session:unsubscribe', { session_id: id }), { ok: true });
      // Seq 8 is appended unsubscribed, seq 9 after a new subscription after 8.
      await alice.append(id, outputEvents(1, { from: 8 }));
      assert.equal((await ack(socket, 'session:subscribe', { session_id: id, after_seq: 8 })).ok, true);
      await alice.append(id, outputEvents(1, { from: 9 }));
      await events.waitForSeq(9);
      assert.deepEqual(events.seqs(), [1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7, 9]);
      events.events.forEach((e) => assertOutputEnvelope(e, id, e.seq));
    });
  }

  test('a polling client whose transport drops resubscribes with the last seq it saw and loses nothing, receiving nothing twice', async (t) => {
    const { server, alice, id } = await setup(t);
    const socket = await aliceSocket(t, server.url, 'polling', {
      reconnection: true,
      reconnectionDelay: 400,
      reconnectionDelayMax: 400,
      randomizationFactor: 0,
    });
    const events = collectEvents(socket, id);
    const acks = [];
    const subscribe = async () => {
      const afterSeq = events.last;
      const answer = await ack(socket, 'session:subscribe', { session_id: id, after_seq: afterSeq });
      acks.push({ afterSeq, answer });
    };
    let connects = 0;
    socket.on('connect', () => {
      connects++;
      subscribe().catch((error) => acks.push({ afterSeq: events.last, answer: String(error) }));
    });
    await subscribe();
    await alice.append(id, outputEvents(10));
    await events.waitForSeq(10);

    // The transport goes down; the manager reconnects by itself after 400 ms.
    const disconnected = nextEvent(socket, 'disconnect');
    socket.io.engine.close();
    const reason = await disconnected;
    assert.notEqual(reason, 'io server disconnect');
    assert.notEqual(reason, 'io client disconnect');
    await alice.append(id, outputEvents(10, { from: 11 }));
    assert.equal(socket.connected, false, 'seqs 11..20 were appended while the client was away');

    await nextEvent(socket, 'connect', 5000);
    await events.waitForSeq(20);
    assert.equal(transportOf(socket), 'polling');
    await alice.append(id, outputEvents(10, { from: 21 }));
    await events.waitForSeq(30);

    assert.equal(connects, 1, 'one reconnection');
    assert.equal(acks.length, 2);
    assert.equal(acks[1].afterSeq, 10, 'resubscribed after the last seq seen');
    assert.equal(acks[1].answer.ok, true, JSON.stringify(acks[1].answer));
    assert.ok(acks[1].answer.head_seq >= 20);
    assertContiguous(events.seqs(), 1, 30);
    events.events.forEach((e) => assertOutputEnvelope(e, id, e.seq));
  });

  for (const transport of TRANSPORTS) {
    test(`a client reconnects by itself to a restarted server on the same address and database and resumes with the next seqs, over ${transport}`, async (t) => {
      const dir = await tempDir(t);
      const port = await freePort();
      const options = {
        bind: `127.0.0.1:${port}`,
        env: { SWITCHBOARD_API_TOKENS: TOKENS, DATABASE_URL: `sqlite://${join(dir, 'sb.db')}?mode=rwc` },
      };
      const a = await startServer(options);
      t.after(() => a.stop());
      const url = a.url;
      const alice = httpApi(url, 'tok-alice');
      const id = (await alice.createSession({ title: 'restart' })).id;

      const socket = await aliceSocket(t, url, transport, {
        reconnection: true,
        reconnectionDelay: 100,
        reconnectionDelayMax: 200,
      });
      const events = collectEvents(socket, id);
      const acks = [];
      const subscribe = async () => {
        const afterSeq = events.last;
        const answer = await ack(socket, 'session:subscribe', { session_id: id, after_seq: afterSeq });
        acks.push({ afterSeq, answer });
        return answer;
      };
      const resubscribed = new Promise((resolve) => {
        socket.on('connect', () => subscribe().then(resolve, resolve));
      });
      assert.equal((await subscribe()).ok, true);
      await alice.append(id, outputEvents(5));
      await events.waitForSeq(5);

      const disconnected = nextEvent(socket, 'disconnect');
      const exit = await a.stop();
      const reason = await disconnected;
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.notEqual(reason, 'io server disconnect', 'closed with a Socket.IO disconnect packet');
      assert.ok(['transport close', 'transport error'].includes(reason), `disconnect reason ${reason}`);

      const b = await startServer(options);
      t.after(() => b.stop());
      assert.equal(b.url, url);
      const answer = await withTimeout(resubscribed, 10_000, 'reconnection and resubscription');
      assert.equal(answer.ok, true, JSON.stringify(answer));
      assert.equal(answer.head_seq, 5, 'server B has the events stored through A');
      assert.equal(acks.at(-1).afterSeq, 5);

      const appended = await alice.append(id, outputEvents(5, { from: 6 }));
      assert.deepEqual(appended, { first_seq: 6, last_seq: 10, duplicates: 0 });
      await events.waitForSeq(10);
      assertContiguous(events.seqs(), 1, 10);
      events.events.forEach((e) => assertOutputEnvelope(e, id, e.seq));
    });
  }

  for (const transport of TRANSPORTS) {
    test(`with retention of 10 events a subscriber after seq 0 of 25 is told truncated from first_seq 16 and receives 16 to 25, over ${transport}`, async (t) => {
      const { server, alice, id } = await setup(t, { SWITCHBOARD_RETENTION_MAX_EVENTS: '10' });
      await alice.appendInBatches(id, outputEvents(25), 5);

      const socket = await aliceSocket(t, server.url, transport);
      const events = collectEvents(socket, id);
      const answer = await ack(socket, 'session:subscribe', { session_id: id, after_seq: 0 });
      assert.equal(answer.ok, true, JSON.stringify(answer));
      assert.equal(answer.truncated, true);
      assert.equal(answer.first_seq, 16);
      assert.equal(answer.head_seq, 25);
      await events.waitForSeq(25);
      assertContiguous(events.seqs(), 16, 25);
      events.events.forEach((e) => assertOutputEnvelope(e, id, e.seq));

      // Without after_seq the replay starts at 0: truncated too.
      const other = await aliceSocket(t, server.url, transport);
      const otherEvents = collectEvents(other, id);
      const fromStart = await ack(other, 'session:subscribe', { session_id: id });
      assert.equal(fromStart.truncated, true);
      assert.equal(fromStart.first_seq, 16);
      await otherEvents.waitForSeq(25);
      assertContiguous(otherEvents.seqs(), 16, 25, 'the second subscriber');

      // Asking only for what is still stored is not truncated.
      const third = await aliceSocket(t, server.url, transport);
      const thirdEvents = collectEvents(third, id);
      const stillStored = await ack(third, 'session:subscribe', { session_id: id, after_seq: 15 });
      assert.equal(stillStored.ok, true);
      assert.equal(stillStored.truncated, undefined);
      assert.equal(stillStored.first_seq, undefined);

      // The same over HTTP.
      const page = await alice.readEvents(id, { after_seq: 0 });
      assert.equal(page.truncated, true);
      assert.equal(page.first_seq, 16);
      assert.equal(page.head_seq, 25);
      assert.deepEqual(page.events.map((e) => e.seq), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);

      // New events keep counting on and reach every subscriber.
      assert.equal((await alice.append(id, outputEvents(1, { from: 26 }))).first_seq, 26);
      await Promise.all([events, otherEvents, thirdEvents].map((c) => c.waitForSeq(26)));
      assertContiguous(events.seqs(), 16, 26);
      assertContiguous(otherEvents.seqs(), 16, 26, 'the second subscriber');
      assertContiguous(thirdEvents.seqs(), 16, 26, 'the third subscriber');
    });
  }
});

describe('Server-Sent Events', () => {
  test('the stream sends each event with its seq as id, and a reopened stream with Last-Event-ID sends only newer events, the header winning over after_seq', async (t) => {
    const { server, alice, id } = await setup(t);
    await alice.append(id, outputEvents(5));
    const url = `${server.url}/v1/sessions/${id}/stream`;

    const first = await openEventStream(url, { token: 'tok-alice' });
    t.after(() => first.close());
    await first.waitForId(5);
    assert.deepEqual(first.ids(), [1, 2, 3, 4, 5]);
    first.envelopes().forEach((e, i) => {
      assert.equal(e.seq, i + 1, 'the id is the seq');
      assertOutputEnvelope(e, id, i + 1);
    });
    await alice.append(id, outputEvents(1, { from: 6 }));
    await first.waitForId(6);
    const lastSeen = first.messages.at(-1).lastEventId;
    assert.equal(lastSeen, '6');
    first.close();

    await alice.append(id, outputEvents(4, { from: 7 }));
    const resumed = await openEventStream(`${url}?after_seq=2`, {
      token: 'tok-alice',
      headers: { 'Last-Event-ID': lastSeen },
    });
    t.after(() => resumed.close());
    await resumed.waitForId(10);
    await alice.append(id, outputEvents(2, { from: 11 }));
    await resumed.waitForId(12);
    assert.deepEqual(resumed.ids(), [7, 8, 9, 10, 11, 12]);
    resumed.envelopes().forEach((e) => assertOutputEnvelope(e, id, e.seq));
    resumed.close();

    // ?after_seq= alone.
    const fromQuery = await openEventStream(`${url}?after_seq=9`, { token: 'tok-alice' });
    t.after(() => fromQuery.close());
    await fromQuery.waitForId(12);
    assert.deepEqual(fromQuery.ids(), [10, 11, 12]);
    fromQuery.close();
  });

  test('an idle stream sends keep-alive comment lines at the configured interval', async (t) => {
    const { server, alice, id } = await setup(t, { SWITCHBOARD_SSE_KEEP_ALIVE: '200ms' });
    const controller = new AbortController();
    t.after(() => controller.abort());
    const res = await fetch(`${server.url}/v1/sessions/${id}/stream`, {
      headers: { authorization: 'Bearer tok-alice', accept: 'text/event-stream' },
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);

    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const lines = () => text.split('\n');
    /** Reads until `predicate(text)` holds; fails after `timeoutMs`. */
    async function readUntil(predicate, what, timeoutMs = 3000) {
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      try {
        while (!predicate(text)) {
          const { value, done } = await reader.read();
          if (done) assert.fail(`the stream ended before ${what}: ${JSON.stringify(text)}`);
          text += value;
        }
      } catch (err) {
        if (controller.signal.aborted) assert.fail(`no ${what} within ${timeoutMs} ms: ${JSON.stringify(text)}`);
        throw err;
      } finally {
        clearTimeout(timer);
      }
    }

    const started = Date.now();
    await readUntil(() => lines().filter((l) => l.startsWith(':')).length >= 2, 'two keep-alive comments');
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 300, `two keep-alives 200 ms apart came after ${elapsed} ms`);
    assert.ok(!lines().some((l) => l.startsWith('data:')), 'an idle stream sends no data');

    // An event on the same stream: `id:` is the seq, `data:` the envelope.
    await alice.append(id, outputEvents(1));
    const eventComplete = () => {
      const data = text.search(/^data:/m);
      const idLine = text.search(/^id:/m);
      return data >= 0 && idLine >= 0 && text.indexOf('\n\n', Math.max(data, idLine)) >= 0;
    };
    await readUntil(eventComplete, 'an event');
    assert.ok(lines().some((l) => /^id: ?1$/.test(l)), `no id: 1 line in ${JSON.stringify(text)}`);
    const data = lines().find((l) => l.startsWith('data:'));
    assertOutputEnvelope(JSON.parse(data.replace(/^data: ?/, '')), id, 1);
    controller.abort();
  });
});

describe('producer ingest over HTTP', () => {
  test('idempotency keys deduplicate a retried batch, counting duplicates, and seqs are never reused', async (t) => {
    const { server, alice, id } = await setup(t);
    const socket = await aliceSocket(t, server.url, 'websocket');
    const events = collectEvents(socket, id);
    assert.equal((await ack(socket, 'session:subscribe', { session_id: id })).ok, true);

    const batch = [
      { type: 'output', data: { stream: 'stdout', data: '$ make\n' }, idempotency_key: 'out-1' },
      { type: 'progress', data: { passing: 3, total: 10 }, idempotency_key: 'prog-1' },
      { type: 'info', data: { message: 'no key' } },
      { type: 'x.custom', data: [1, 'anything'], idempotency_key: 'x-1' },
    ];
    assert.deepEqual(await alice.append(id, batch), { first_seq: 1, last_seq: 4, duplicates: 0 });
    // The producer retries after a timeout: the keyed events are not stored
    // again; the unkeyed one is, with the next seq.
    assert.deepEqual(await alice.append(id, batch), { first_seq: 5, last_seq: 5, duplicates: 3 });
    // A batch mixing a stored key and a new one.
    const mixed = [
      { type: 'x.custom', data: 'again', idempotency_key: 'x-1' },
      { type: 'info', data: { message: 'new' }, idempotency_key: 'info-1' },
    ];
    assert.deepEqual(await alice.append(id, mixed), { first_seq: 6, last_seq: 6, duplicates: 1 });
    // A batch of duplicates only stores nothing.
    const allDuplicates = await alice.append(id, mixed);
    assert.equal(allDuplicates.duplicates, 2);
    assert.equal((await alice.getSession(id)).head_seq, 6);
    // The next event takes the next seq.
    assert.deepEqual(await alice.append(id, outputEvents(1)), { first_seq: 7, last_seq: 7, duplicates: 0 });

    const page = await alice.readEvents(id);
    assert.deepEqual(page.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(
      page.events.map((e) => [e.type, e.data]),
      [
        ['output', { stream: 'stdout', data: '$ make\n' }],
        ['progress', { passing: 3, total: 10 }],
        ['info', { message: 'no key' }],
        ['x.custom', [1, 'anything']],
        ['info', { message: 'no key' }],
        ['info', { message: 'new' }],
        ['output', { stream: 'stdout', data: 'line 1' }],
      ],
    );
    assert.equal(page.head_seq, 7);
    assert.equal(page.first_seq, 1);

    // A subscriber saw each stored event once.
    await events.waitForSeq(7);
    assertContiguous(events.seqs(), 1, 7);
    assert.deepEqual(events.events.map((e) => e.data), page.events.map((e) => e.data));
  });

  test('a batch with one bad event is refused whole with 422 naming events[i], and nothing of it is stored', async (t) => {
    const { alice, id } = await setup(t);
    // Every producer type is accepted.
    const good = [
      { type: 'output', data: { stream: 'stderr', data: 'warning' } },
      { type: 'progress', data: { passing: 1, total: 2, message: 'half' } },
      { type: 'progress', data: {} },
      { type: 'info', data: { message: 'hello' } },
      { type: 'error', data: { code: 'E1', message: 'failed' } },
      { type: 'tool.call', data: { call_id: 'c1', name: 'ls', arguments: { path: '.' }, target: 'gateway' } },
      { type: 'tool.result', data: { call_id: 'c1', status: 'success', output: ['a', 'b'] } },
      { type: 'x.anything', data: null },
    ];
    assert.deepEqual(await alice.append(id, good), { first_seq: 1, last_seq: 8, duplicates: 0 });

    const ok = { type: 'info', data: { message: 'fine' } };
    const refused = [
      [[ok, { type: 'text.delta', data: { message_id: 'm', delta: 'x' } }, ok], 1],
      [[{ type: 'message.user', data: { message_id: 'm', content: 'hi' } }], 0],
      [[ok, ok, { type: 'run.finished', data: { run_id: 'r', reason: 'completed' } }], 2],
      [[ok, { type: 'status', data: { status: 'idle' } }], 1],
      [[{ type: 'x.', data: {} }], 0],
      [[{ type: 'nonsense', data: {} }, ok], 0],
      [[ok, { type: 'output', data: { stream: 'stdin', data: 'x' } }], 1],
      [[ok, ok, ok, { type: 'progress', data: { passing: 'many' } }], 3],
      [[{ type: 'info', data: { text: 'wrong field' } }], 0],
      [[ok, { type: 'error', data: { message: 'no code' } }], 1],
      [[ok, { type: 'tool.result', data: { call_id: 'c', status: 'maybe', output: 1 } }], 1],
    ];
    for (const [events, index] of refused) {
      const res = await alice.request('POST', `/v1/sessions/${id}/events`, { events });
      const what = `a batch with ${JSON.stringify(events[index])} at ${index}`;
      assert.equal(res.status, 422, `${what} answered ${res.status}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error?.code, 'invalid_payload', `${what}: ${JSON.stringify(res.body)}`);
      assert.ok(
        res.body.error.message.includes(`events[${index}]`),
        `${what}: the message does not name events[${index}]: ${res.body.error.message}`,
      );
    }

    const session = await alice.getSession(id);
    assert.equal(session.head_seq, 8, 'no refused batch stored anything');
    const page = await alice.readEvents(id);
    assert.deepEqual(page.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(await alice.append(id, [ok]), { first_seq: 9, last_seq: 9, duplicates: 0 });
  });

  test('a batch of more than 1,000 events or 4 MiB is refused with 413 and stores nothing, while 1,000 events are accepted', async (t) => {
    const { alice, id } = await setup(t);

    const tooMany = await alice.request('POST', `/v1/sessions/${id}/events`, { events: outputEvents(1001) });
    assert.equal(tooMany.status, 413, JSON.stringify(tooMany.body));
    assert.equal(tooMany.body.error?.code, 'too_large');

    const big = 'x'.repeat(4 * 1024 * 1024 + 1024);
    const tooBig = await alice.request('POST', `/v1/sessions/${id}/events`, {
      events: [{ type: 'x.big', data: big }],
    });
    assert.equal(tooBig.status, 413, JSON.stringify(tooBig.body).slice(0, 500));
    assert.equal(tooBig.body.error?.code, 'too_large');

    assert.equal((await alice.getSession(id)).head_seq, 0, 'a refused batch stored nothing');
    assert.deepEqual(await alice.append(id, outputEvents(1000)), { first_seq: 1, last_seq: 1000, duplicates: 0 });
    const page = await alice.readEvents(id, { after_seq: 990 });
    assert.deepEqual(page.events.map((e) => e.seq), [991, 992, 993, 994, 995, 996, 997, 998, 999, 1000]);
  });
});
