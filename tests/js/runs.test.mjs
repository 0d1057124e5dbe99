// PROTOCOL §4.2-§4.4: runs over /agent — `agent:execute` and `agent:stop`,
// the events a run logs and streams (`message.user`, `run.started`, `status`,
// `text.delta`…, `message.completed`, `run.finished`, `status`), the
// conversation sent to an OpenAI-compatible provider (a mock Chat
// Completions server in this file), idempotency by `client_msg_id`,
// stopping, resuming after a reload, the scripted model, and bad input.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { describe, test } from 'node:test';

import {
  TRANSPORTS,
  ack,
  assertAckError,
  assertContiguous,
  collectEvents,
  connect,
  httpApi,
  startServer,
  withTimeout,
} from './helpers.mjs';

const TOKENS = 'alice:tok-alice,bob:tok-bob';
/** In a scripted reply: hold the stream open here until `release()`. */
const STALL = Symbol('stall');
/** The usage the mock reports when asked (`stream_options.include_usage`). */
const MOCK_USAGE = { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 };
const COMPLETED_RUN = ['message.user', 'run.started', 'status', 'text.delta', 'message.completed', 'run.finished', 'status'];

/**
 * A mock OpenAI-compatible Chat Completions endpoint. `script(...chunks)`
 * queues the reply to the next request: each string is one
 * `choices[0].delta.content` chunk, each `STALL` holds the stream open until
 * `release()` (or the client goes away); then `finish_reason: "stop"` and
 * `[DONE]`. `requests` holds `{ body, closedEarly, closed }` per request,
 * `closedEarly` true when the client closed the connection before the end.
 */
async function startMockLlm(t) {
  const replies = [];
  const requests = [];
  const gates = [];
  const http = createServer(async (req, res) => {
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404).end();
      return;
    }
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const entry = { body: JSON.parse(raw), closedEarly: false };
    entry.closed = new Promise((resolve) =>
      res.once('close', () => {
        entry.closedEarly = !res.writableEnded;
        resolve();
      }),
    );
    requests.push(entry);
    const chunks = replies.shift() ?? ['(no reply scripted)'];
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (data) => res.write(`data: ${JSON.stringify(data)}\n\n`);
    for (const chunk of chunks) {
      if (chunk === STALL) {
        await Promise.race([new Promise((resolve) => gates.push(resolve)), entry.closed]);
        if (res.destroyed || res.writableEnded) return;
      } else {
        send({ id: 'mock', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: chunk } }] });
      }
    }
    send({ id: 'mock', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    if (entry.body.stream_options?.include_usage) send({ id: 'mock', choices: [], usage: MOCK_USAGE });
    res.end('data: [DONE]\n\n');
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const open of gates.splice(0)) open();
    http.closeAllConnections();
    return new Promise((resolve) => http.close(resolve));
  });
  return {
    baseUrl: `http://127.0.0.1:${http.address().port}/v1`,
    requests,
    script: (...chunks) => replies.push(chunks),
    /** Lets the oldest stalled reply go on. */
    release() {
      assert.ok(gates.length > 0, 'a reply is stalled');
      gates.shift()();
    },
  };
}

/** A server (with the mock provider unless `scripted`), alice's socket over `transport` and a session of hers. */
async function setup(t, { transport = 'websocket', scripted = false } = {}) {
  const llm = scripted ? null : await startMockLlm(t);
  const env = { SWITCHBOARD_API_TOKENS: TOKENS };
  if (llm) {
    Object.assign(env, {
      SWITCHBOARD_LLM_PROVIDER: 'openai',
      SWITCHBOARD_LLM_BASE_URL: llm.baseUrl,
      SWITCHBOARD_LLM_MODEL: 'mock-model',
    });
  } else {
    env.SWITCHBOARD_SCRIPTED_DELAY = '5ms';
  }
  const server = await startServer({ env });
  t.after(() => server.stop());
  const socket = await aliceSocket(t, server, transport);
  const created = await ack(socket, 'session:create', { title: 'runs' });
  assert.equal(created.ok, true, JSON.stringify(created));
  return { server, llm, socket, id: created.session.id };
}

async function aliceSocket(t, server, transport = 'websocket', token = 'tok-alice') {
  const socket = await connect(server.url, '/agent', { transports: [transport], auth: { token } });
  t.after(() => socket.close());
  return socket;
}

/** Collects `id`'s events on `socket` and subscribes (after `after_seq` when given). */
async function subscribe(socket, id, after_seq) {
  const events = collectEvents(socket, id);
  const answer = await ack(socket, 'session:subscribe', after_seq === undefined ? { session_id: id } : { session_id: id, after_seq });
  assert.equal(answer.ok, true, JSON.stringify(answer));
  return { events, answer };
}

/** Resolves with the first event (seen or to come) matching `predicate`. */
async function waitFor(events, predicate, what, timeoutMs = 10_000) {
  for (;;) {
    const found = events.events.find(predicate);
    if (found) return found;
    await withTimeout(events.waitForSeq(events.last + 1, timeoutMs), timeoutMs, `${what}; got ${JSON.stringify(events.events.map((e) => e.type))}`);
  }
}

const runFinished = (events, runId) =>
  waitFor(events, (e) => e.type === 'run.finished' && e.data.run_id === runId, `run.finished of ${runId}`);

/** After `run.finished`, the closing `status idle`: the whole run is then in. */
async function runDone(events, runId) {
  const finished = await runFinished(events, runId);
  await events.waitForSeq(finished.seq + 1);
  return finished;
}

async function execute(socket, payload) {
  const answer = await ack(socket, 'agent:execute', payload);
  assert.equal(answer.ok, true, JSON.stringify(answer));
  assert.deepEqual(Object.keys(answer).sort(), ['message_id', 'ok', 'run_id']);
  return answer;
}

const deltas = (events) => events.filter((e) => e.type === 'text.delta').map((e) => e.data.delta);

describe('runs on /agent', () => {
  for (const transport of TRANSPORTS) {
    test(`a UI sends a message and sees the whole run live, in order, then finds both messages stored, over ${transport}`, async (t) => {
      const { llm, socket, id } = await setup(t, { transport });
      const { events } = await subscribe(socket, id);
      llm.script('Hel', 'lo', ' world');

      const { run_id, message_id } = await execute(socket, { session_id: id, content: 'Say hello' });
      await runDone(events, run_id);

      const all = events.events;
      assertContiguous(events.seqs(), 1, all.length);
      assert.deepEqual(all.map((e) => e.type), [...COMPLETED_RUN.slice(0, 3), 'text.delta', 'text.delta', ...COMPLETED_RUN.slice(3)]);
      for (const e of all) {
        assert.equal(e.session_id, id);
        assert.ok(!Number.isNaN(Date.parse(e.ts)), `ts is a timestamp: ${e.ts}`);
        assert.equal(e.run_id, run_id, `${e.type} names the run`);
      }
      assert.deepEqual(all[0].data, { message_id, content: 'Say hello' });
      assert.deepEqual(all[1].data, { run_id, message_id });
      assert.deepEqual(all[2].data, { status: 'running' });
      assert.deepEqual(deltas(all), ['Hel', 'lo', ' world']);
      const assistantId = all[3].data.message_id;
      assert.notEqual(assistantId, message_id, 'the answer is a message of its own');
      for (const e of all.slice(3, 6)) assert.equal(e.data.message_id, assistantId);
      assert.deepEqual(
        all[6].data,
        { message_id: assistantId, role: 'assistant', content: 'Hello world', status: 'complete' },
        'no tool_calls without tool calls',
      );
      assert.deepEqual(all[7].data, { run_id, reason: 'completed', usage: MOCK_USAGE });
      assert.deepEqual(all[8].data, { status: 'idle' });

      assert.equal(llm.requests.length, 1);
      const body = llm.requests[0].body;
      assert.equal(body.stream, true);
      assert.deepEqual(body.stream_options, { include_usage: true });
      assert.equal(body.model, 'mock-model');
      assert.deepEqual(body.messages, [{ role: 'user', content: 'Say hello' }]);

      const messages = await ack(socket, 'session:messages', { session_id: id });
      assert.equal(messages.ok, true, JSON.stringify(messages));
      assert.deepEqual(
        messages.messages.map((m) => [m.id, m.role, m.content, m.status]),
        [
          [assistantId, 'assistant', 'Hello world', 'complete'],
          [message_id, 'user', 'Say hello', 'complete'],
        ],
        'the messages, newest first (PROTOCOL §5)',
      );
      const got = await ack(socket, 'session:get', { session_id: id });
      assert.equal(got.session.status, 'idle');
      assert.equal(got.session.head_seq, all.length);
    });
  }

  test('the second turn sends the whole conversation to the provider', async (t) => {
    const { llm, socket, id } = await setup(t);
    const { events } = await subscribe(socket, id);
    llm.script('Hi', ' Alice');
    llm.script('You are ', 'Alice');

    await runDone(events, (await execute(socket, { session_id: id, content: 'I am Alice' })).run_id);
    await runDone(events, (await execute(socket, { session_id: id, content: 'Who am I?' })).run_id);

    assert.equal(llm.requests.length, 2);
    assert.deepEqual(llm.requests[0].body.messages, [{ role: 'user', content: 'I am Alice' }]);
    assert.deepEqual(llm.requests[1].body.messages, [
      { role: 'user', content: 'I am Alice' },
      { role: 'assistant', content: 'Hi Alice' },
      { role: 'user', content: 'Who am I?' },
    ]);
  });

  test('the same client_msg_id, sent twice at once and again after the run, starts one run and acknowledges the same ids', async (t) => {
    const { llm, socket, id } = await setup(t);
    const { events } = await subscribe(socket, id);
    llm.script('once');
    llm.script('second');

    const request = { session_id: id, content: 'double click', client_msg_id: 'click-1' };
    const [first, second] = await Promise.all([execute(socket, request), execute(socket, request)]);
    assert.deepEqual(second, first);
    await runDone(events, first.run_id);
    const head = events.last;

    const retried = await execute(socket, request);
    assert.deepEqual(retried, first, 'a retry after the run names the same run');
    const got = await ack(socket, 'session:get', { session_id: id });
    assert.equal(got.session.head_seq, head, 'the retry logged nothing');
    assert.equal(got.session.status, 'idle');

    // Another message: the conversation holds the first message once.
    const next = await execute(socket, { session_id: id, content: 'next', client_msg_id: 'click-2' });
    assert.notEqual(next.run_id, first.run_id);
    await runDone(events, next.run_id);
    assert.equal(llm.requests.length, 2, 'the duplicates reached the provider never');
    assert.deepEqual(llm.requests[1].body.messages, [
      { role: 'user', content: 'double click' },
      { role: 'assistant', content: 'once' },
      { role: 'user', content: 'next' },
    ]);
    const users = events.events.filter((e) => e.type === 'message.user');
    assert.deepEqual(users.map((e) => e.data), [
      { message_id: first.message_id, content: 'double click', client_msg_id: 'click-1' },
      { message_id: next.message_id, content: 'next', client_msg_id: 'click-2' },
    ]);
    assert.equal(events.events.filter((e) => e.type === 'run.started').length, 2);
  });

  for (const transport of TRANSPORTS) {
    test(`agent:stop during a stalled provider stream keeps the partial text as incomplete and closes the provider connection, over ${transport}`, async (t) => {
      const { llm, socket, id } = await setup(t, { transport });
      const { events } = await subscribe(socket, id);
      llm.script('par', 'tial', STALL, ' never sent');

      const { run_id } = await execute(socket, { session_id: id, content: 'Talk slowly' });
      await waitFor(events, (e) => e.type === 'text.delta' && e.data.delta === 'tial', 'the second delta');
      const before = events.last;

      // How fast this is answered is measured by the benchmark, not asserted here.
      assert.deepEqual(await ack(socket, 'agent:stop', { session_id: id }), { ok: true, stopped: true });
      await runDone(events, run_id);
      const after = events.events.filter((e) => e.seq > before);
      assert.deepEqual(after.map((e) => e.type), ['message.completed', 'run.finished', 'status']);
      assert.equal(after[0].data.status, 'incomplete');
      assert.equal(after[0].data.content, 'partial');
      assert.equal(after[0].data.role, 'assistant');
      assert.equal(after[1].data.reason, 'stopped');
      assert.deepEqual(after[2].data, { status: 'idle' });
      assertContiguous(events.seqs(), 1, events.last);

      await withTimeout(llm.requests[0].closed, 5000, 'the provider connection closing');
      assert.equal(llm.requests[0].closedEarly, true, 'the server dropped the provider stream');
      assert.deepEqual(await ack(socket, 'agent:stop', { session_id: id }), { ok: true, stopped: false });

      const messages = await ack(socket, 'session:messages', { session_id: id });
      assert.deepEqual(messages.messages.map((m) => [m.role, m.content, m.status]), [
        ['assistant', 'partial', 'incomplete'],
        ['user', 'Talk slowly', 'complete'],
      ]);
      assert.equal((await ack(socket, 'session:get', { session_id: id })).session.status, 'idle');
    });
  }

  for (const transport of TRANSPORTS) {
    test(`a page reloaded mid-run subscribes after the last seq it saw and receives the rest of the run exactly once, over ${transport}`, async (t) => {
      const { server, llm, socket: first, id } = await setup(t, { transport });
      const seenBefore = (await subscribe(first, id)).events;
      llm.script('Hel', 'lo', STALL, ' wor', STALL, 'ld');

      const { run_id, message_id } = await execute(first, { session_id: id, content: 'Greet me' });
      await waitFor(seenBefore, (e) => e.type === 'text.delta' && e.data.delta === 'lo', 'the first deltas');
      const lastSeen = seenBefore.last;
      first.close();

      llm.release(); // ' wor' is sent while no page is open
      const reloaded = await aliceSocket(t, server, transport);
      const { events, answer } = await subscribe(reloaded, id, lastSeen);
      assert.ok(answer.head_seq >= lastSeen);
      llm.release(); // 'ld' and the end arrive live
      await runDone(events, run_id);

      assertContiguous(events.seqs(), lastSeen + 1, events.last, 'the events after the reload');
      assert.deepEqual(events.events.map((e) => e.type), ['text.delta', 'text.delta', ...COMPLETED_RUN.slice(4)]);
      assert.deepEqual(deltas(seenBefore.events), ['Hel', 'lo']);
      assert.deepEqual(deltas(events.events), [' wor', 'ld']);
      assert.equal(events.events.at(-3).data.content, 'Hello world');
      assert.equal(events.events.at(-2).data.reason, 'completed');
      assert.equal(seenBefore.events[0].data.message_id, message_id);
    });
  }

  test('the scripted model answers "You said: <message>" a word at a time', async (t) => {
    const { socket, id } = await setup(t, { scripted: true });
    const { events } = await subscribe(socket, id);
    const { run_id } = await execute(socket, { session_id: id, content: 'hi' });
    const finished = await runDone(events, run_id);

    assert.equal(finished.data.reason, 'completed');
    const pieces = deltas(events.events);
    assert.ok(pieces.length > 1, `several deltas: ${JSON.stringify(pieces)}`);
    assert.equal(pieces.join(''), 'You said: hi');
    const completed = events.events.find((e) => e.type === 'message.completed');
    assert.equal(completed.data.content, 'You said: hi');
    assertContiguous(events.seqs(), 1, events.last);
  });

  test('malformed requests and another user\'s session are refused without starting anything', async (t) => {
    const { server, llm, socket, id } = await setup(t);
    let disconnected = null;
    socket.on('disconnect', (reason) => (disconnected = reason));

    let message = assertAckError(await ack(socket, 'agent:execute', { session_id: id }), 'invalid_payload', 'no content');
    assert.match(message, /content/);
    message = assertAckError(
      await ack(socket, 'agent:execute', { session_id: id, content: 'hi', on_busy: 'sometimes' }),
      'invalid_payload',
      'an unknown on_busy',
    );
    assert.match(message, /on_busy/);
    message = assertAckError(await ack(socket, 'agent:stop', {}), 'invalid_payload', 'agent:stop without session_id');
    assert.match(message, /session_id/);

    // Bob's session: the same answer as session:get gives alice for it.
    const bob = await aliceSocket(t, server, 'websocket', 'tok-bob');
    const bobs = (await ack(bob, 'session:create', { title: 'bob only' })).session.id;
    const code = (await ack(socket, 'session:get', { session_id: bobs })).error?.code;
    assert.ok(['forbidden', 'not_found'].includes(code), `session:get of another user's session: ${code}`);
    assertAckError(await ack(socket, 'agent:execute', { session_id: bobs, content: 'hi' }), code, 'executing in bob\'s session');
    assertAckError(await ack(socket, 'agent:stop', { session_id: bobs }), code, 'stopping bob\'s session');
    const unknown = '01900000-0000-7000-8000-000000000000';
    assertAckError(await ack(socket, 'agent:execute', { session_id: unknown, content: 'hi' }), 'not_found', 'an unknown session');

    assert.equal(socket.connected, true, 'the socket stays connected');
    assert.equal(disconnected, null);
    assert.equal(llm.requests.length, 0, 'no run started');
    for (const [who, session] of [[socket, id], [bob, bobs]]) {
      const got = await ack(who, 'session:get', { session_id: session });
      assert.equal(got.session.head_seq, 0, 'nothing was logged');
      assert.equal(got.session.status, 'idle');
    }
  });
});
