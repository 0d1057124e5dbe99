// PROTOCOL §4.5: tools. A JavaScript desktop gateway on /gateway registers
// tools, acknowledges `tool:call` and answers with `tool:result`; calls are
// redelivered after a reconnect (at least once); results are refused with
// not_found / forbidden / conflict / too_large / invalid_payload without
// changing anything; approvals (`tool:approval`), questions to the user
// (`ask_user_questions`, answered on /agent) and `agent:stop` while a call is
// pending. The model is the built-in scripted one: `/tool NAME {json}` makes
// it call NAME, then it answers `Tool <call_id> returned: <content>`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  TRANSPORTS,
  ack,
  assertAckError,
  assertContiguous,
  collectEvents,
  connect,
  startServer,
  transportOf,
  withTimeout,
} from './helpers.mjs';

const TOKENS = 'alice:tok-alice,bob:tok-bob';

const READ_FILE = {
  name: 'read_file',
  description: 'Reads a file of the workspace',
  parameters: {
    type: 'object',
    properties: {
      path: { type: 'string', minLength: 1, description: 'A path relative to the workspace' },
      max_bytes: { type: 'integer', minimum: 1 },
    },
    required: ['path'],
    additionalProperties: false,
  },
};

const RUN_COMMAND = {
  name: 'run_command',
  description: 'Runs a shell command in the workspace',
  parameters: {
    type: 'object',
    properties: { command: { type: 'string', minLength: 1 } },
    required: ['command'],
    additionalProperties: false,
  },
  requires_approval: true,
};

/** A server with the scripted model, alice's UI socket over `transport`, a session of hers and its events. */
async function setup(t, { transport = 'websocket' } = {}) {
  const server = await startServer({
    env: {
      SWITCHBOARD_API_TOKENS: TOKENS,
      SWITCHBOARD_LLM_PROVIDER: 'scripted',
      SWITCHBOARD_SCRIPTED_DELAY: '5ms',
    },
  });
  t.after(() => server.stop());
  const ui = await socketOf(t, server, '/agent', { transport });
  const created = await ack(ui, 'session:create', { title: 'tools' });
  assert.equal(created.ok, true, JSON.stringify(created));
  const id = created.session.id;
  const events = collectEvents(ui, id);
  const subscribed = await ack(ui, 'session:subscribe', { session_id: id });
  assert.equal(subscribed.ok, true, JSON.stringify(subscribed));
  return { server, ui, id, events };
}

async function socketOf(t, server, ns, { transport = 'websocket', token = 'tok-alice' } = {}) {
  const socket = await connect(server.url, ns, { transports: [transport], auth: { token } });
  t.after(() => socket.close());
  assert.equal(transportOf(socket), transport);
  return socket;
}

/**
 * A JS gateway on /gateway: records every `tool:call` in `calls` (listening
 * before it registers, since a call may follow the registration at once) and
 * acknowledges each one with `{ ok: true }` through the callback.
 * `waitForCall(n)` resolves with the n-th call (1-based) once it arrived.
 * With `tools`, registers them under `gatewayId` and checks the ack.
 */
async function startGateway(t, server, { transport = 'websocket', token = 'tok-alice', gatewayId = 'gw-1', tools } = {}) {
  const socket = await socketOf(t, server, '/gateway', { transport, token });
  const calls = [];
  const waiters = new Set();
  socket.on('tool:call', (call, callback) => {
    calls.push(call);
    if (typeof callback === 'function') callback({ ok: true });
    for (const waiter of waiters) waiter();
  });
  const gateway = {
    socket,
    calls,
    waitForCall(n = calls.length + 1, timeoutMs = 10_000) {
      if (calls.length >= n) return Promise.resolve(calls[n - 1]);
      let waiter;
      const arrived = new Promise((resolve) => {
        waiter = () => {
          if (calls.length >= n) {
            waiters.delete(waiter);
            resolve(calls[n - 1]);
          }
        };
        waiters.add(waiter);
      });
      return withTimeout(arrived, timeoutMs, `tool:call #${n} on the gateway (got ${calls.length})`).finally(() =>
        waiters.delete(waiter),
      );
    },
    async register(list = tools, id = gatewayId) {
      const answer = await ack(socket, 'gateway:register', { gateway_id: id, tools: list });
      assert.deepEqual(answer, { ok: true, registered: list.length }, 'gateway:register');
    },
    /** A request round-trip on /gateway: every event the server sent before its ack has arrived. */
    async roundTrip() {
      const answer = await ack(socket, 'auth:whoami', {});
      assert.equal(answer.ok, true, JSON.stringify(answer));
    },
  };
  if (tools) await gateway.register(tools, gatewayId);
  return gateway;
}

/** Resolves with the first event (seen or to come) matching `predicate`. */
async function waitFor(events, predicate, what, timeoutMs = 10_000) {
  for (;;) {
    const found = events.events.find(predicate);
    if (found) return found;
    await withTimeout(
      events.waitForSeq(events.last + 1, timeoutMs),
      timeoutMs,
      `${what}; got ${JSON.stringify(events.events.map((e) => e.type))}`,
    );
  }
}

const isStatus = (status) => (e) => e.type === 'status' && e.data.status === status;

/** After the run's `run.finished`, the closing `status idle`: the whole run is then in. */
async function runDone(events, runId) {
  const finished = await waitFor(
    events,
    (e) => e.type === 'run.finished' && e.data.run_id === runId,
    `run.finished of ${runId}`,
  );
  await events.waitForSeq(finished.seq + 1);
  const closing = events.events.find((e) => e.seq === finished.seq + 1);
  assert.deepEqual(closing.data, { status: 'idle' }, 'the run ends with status idle');
  assert.equal(closing.type, 'status');
  return finished;
}

async function execute(ui, id, content) {
  const answer = await ack(ui, 'agent:execute', { session_id: id, content });
  assert.equal(answer.ok, true, JSON.stringify(answer));
  return answer;
}

/**
 * Asserts that `events` hold, in this order (others may come between), an
 * event matching each of `steps` (`[what, predicate]`); returns them.
 */
function assertInOrder(events, steps) {
  const found = [];
  let from = 0;
  for (const [what, predicate] of steps) {
    const index = events.findIndex((e, i) => i >= from && predicate(e));
    assert.ok(
      index >= 0,
      `expected ${what} after position ${from}; events: ${JSON.stringify(events.map((e) => [e.seq, e.type, e.data?.status ?? e.data?.reason ?? '']))}`,
    );
    found.push(events[index]);
    from = index + 1;
  }
  return found;
}

/** The assistant's final text of the step after the tool result: its `message.completed` content and deltas. */
function lastAssistantText(events) {
  const completed = events.filter((e) => e.type === 'message.completed').at(-1);
  assert.ok(completed, 'an assistant message.completed');
  const deltas = events
    .filter((e) => e.type === 'text.delta' && e.data.message_id === completed.data.message_id)
    .map((e) => e.data.delta);
  assert.equal(deltas.join(''), completed.data.content, 'the deltas make the final content');
  return completed;
}

async function sessionOf(ui, id) {
  const got = await ack(ui, 'session:get', { session_id: id });
  assert.equal(got.ok, true, JSON.stringify(got));
  return got.session;
}

describe('tools on /gateway and /agent', () => {
  for (const transport of TRANSPORTS) {
    test(`a JS gateway registers read_file, acknowledges the tool:call and answers it; the UI sees the whole tool step, over ${transport}`, async (t) => {
      const { server, ui, id, events } = await setup(t);
      const gateway = await startGateway(t, server, { transport, tools: [READ_FILE] });

      const { run_id } = await execute(ui, id, '/tool read_file {"path": "Cargo.toml"}');
      const call = await gateway.waitForCall(1);
      assert.deepEqual(Object.keys(call).sort(), ['arguments', 'call_id', 'name', 'run_id', 'session_id']);
      assert.equal(typeof call.call_id, 'string');
      assert.ok(call.call_id.length > 0);
      assert.equal(call.session_id, id);
      assert.equal(call.run_id, run_id, 'tool:call names the run acknowledged by agent:execute');
      assert.equal(call.name, 'read_file');
      assert.deepEqual(call.arguments, { path: 'Cargo.toml' });

      // The UI saw the call and the session waits for the gateway.
      await waitFor(events, isStatus('awaiting_tool'), 'status awaiting_tool');
      assert.equal((await sessionOf(ui, id)).status, 'awaiting_tool');

      const output = '[package]\nname = "switchboard"';
      assert.deepEqual(await ack(gateway.socket, 'tool:result', { call_id: call.call_id, output }), { ok: true });
      const finished = await runDone(events, run_id);

      const all = events.events;
      assertContiguous(events.seqs(), 1, all.length);
      for (const e of all) {
        assert.equal(e.session_id, id);
        assert.equal(e.run_id, run_id, `${e.type} names the run`);
      }
      const [toolCall, , result, , completed] = assertInOrder(all, [
        ['tool.call', (e) => e.type === 'tool.call'],
        ['status awaiting_tool', isStatus('awaiting_tool')],
        ['tool.result', (e) => e.type === 'tool.result'],
        ['status running', isStatus('running')],
        ['the answer', (e) => e.type === 'message.completed' && e.data.content.startsWith('Tool ')],
        ['run.finished', (e) => e.type === 'run.finished'],
        ['status idle', isStatus('idle')],
      ]);
      assert.deepEqual(toolCall.data, {
        call_id: call.call_id,
        name: 'read_file',
        arguments: { path: 'Cargo.toml' },
        target: 'gateway',
      });
      assert.deepEqual(result.data, { call_id: call.call_id, status: 'success', output });
      assert.equal(lastAssistantText(all), completed);
      assert.equal(completed.data.role, 'assistant');
      assert.equal(completed.data.status, 'complete');
      assert.equal(completed.data.content, `Tool ${call.call_id} returned: ${output}`);
      assert.equal(finished.data.reason, 'completed');
      assert.equal(all.filter((e) => e.type === 'tool.call').length, 1);
      assert.equal(all.filter((e) => e.type === 'tool.result').length, 1);
      assert.equal(all.filter((e) => e.type === 'run.finished').length, 1);

      assert.equal(gateway.calls.length, 1, 'one tool:call');
      const session = await sessionOf(ui, id);
      assert.equal(session.status, 'idle');
      assert.equal(session.head_seq, all.length);

      // The conversation stored: the user's message, the assistant's call, the tool's answer, the final answer.
      const messages = await ack(ui, 'session:messages', { session_id: id });
      assert.equal(messages.ok, true, JSON.stringify(messages));
      const oldestFirst = [...messages.messages].reverse();
      assert.deepEqual(oldestFirst.map((m) => m.role), ['user', 'assistant', 'tool', 'assistant']);
      assert.equal(oldestFirst[2].tool_call_id, call.call_id);
      assert.equal(oldestFirst[2].content, output);
      assert.equal(oldestFirst[3].content, completed.data.content);
      assert.equal(gateway.socket.connected, true);
    });
  }

  test('a registration with an invalid JSON Schema is refused with invalid_payload naming the field, and changes nothing', async (t) => {
    const { server, ui, id, events } = await setup(t);
    const gateway = await startGateway(t, server);
    const answer = await ack(gateway.socket, 'gateway:register', {
      gateway_id: 'gw-1',
      tools: [{ name: 'read_file', description: 'Reads a file', parameters: { type: 'bogus' } }],
    });
    const message = assertAckError(answer, 'invalid_payload', 'a schema of type "bogus"');
    assert.match(message, /tools\[0\]\.parameters/);
    const second = await ack(gateway.socket, 'gateway:register', {
      gateway_id: 'gw-1',
      tools: [READ_FILE, { ...RUN_COMMAND, parameters: { type: 'object', properties: { command: { type: 'bogus' } } } }],
    });
    assert.match(assertAckError(second, 'invalid_payload', 'the second tool\'s bad schema'), /tools\[1\]\.parameters/);
    assert.equal(gateway.socket.connected, true, 'the socket stays connected');

    // Nothing was registered: the model's call finds no such tool and the gateway gets nothing.
    const { run_id } = await execute(ui, id, '/tool read_file {"path": "Cargo.toml"}');
    await runDone(events, run_id);
    const [call, result] = assertInOrder(events.events, [
      ['tool.call', (e) => e.type === 'tool.call'],
      ['tool.result', (e) => e.type === 'tool.result'],
    ]);
    assert.equal(call.data.target, 'server', 'no gateway offers read_file');
    assert.equal(result.data.status, 'error');
    await gateway.roundTrip();
    assert.deepEqual(gateway.calls, []);

    // A valid registration on the same socket works.
    await gateway.register([READ_FILE]);
  });

  for (const [transport, secondId] of [...TRANSPORTS.map((tr) => [tr, 'gw-1']), ['websocket', 'gw-2']]) {
    test(`a call its gateway received but never answered is delivered again to a new gateway connection (gateway_id ${secondId}), over ${transport}`, async (t) => {
      const { server, ui, id, events } = await setup(t);
      const first = await startGateway(t, server, { transport, gatewayId: 'gw-1', tools: [READ_FILE] });

      const { run_id } = await execute(ui, id, '/tool read_file {"path": "src/main.rs"}');
      const call = await first.waitForCall(1);
      await waitFor(events, isStatus('awaiting_tool'), 'status awaiting_tool');
      const disconnected = new Promise((resolve) => first.socket.once('disconnect', resolve));
      first.socket.close(); // acknowledged, never answered
      await disconnected;

      const second = await startGateway(t, server, { transport, gatewayId: secondId, tools: [READ_FILE] });
      const again = await second.waitForCall(1);
      assert.deepEqual(again, call, 'the same call, with the same call_id, session, run, name and arguments');
      assert.equal((await sessionOf(ui, id)).status, 'awaiting_tool', 'the run still waits');

      assert.deepEqual(await ack(second.socket, 'tool:result', { call_id: call.call_id, output: 'fn main() {}' }), { ok: true });
      await runDone(events, run_id);
      const results = events.events.filter((e) => e.type === 'tool.result');
      assert.deepEqual(results.map((e) => e.data), [{ call_id: call.call_id, status: 'success', output: 'fn main() {}' }]);
      assert.equal(lastAssistantText(events.events).data.content, `Tool ${call.call_id} returned: fn main() {}`);
      assert.equal(events.events.at(-2).data.reason, 'completed');
      // At least once: any further delivery is still the same call.
      for (const c of second.calls) assert.equal(c.call_id, call.call_id);

      const head = events.last;
      const late = await ack(second.socket, 'tool:result', { call_id: call.call_id, output: 'a second answer' });
      assertAckError(late, 'conflict', 'a second tool:result for the same call');
      const session = await sessionOf(ui, id);
      assert.equal(session.head_seq, head, 'the refused result logged nothing');
      assert.equal(session.status, 'idle');
    });
  }

  for (const transport of TRANSPORTS) {
    test(`refused tool:results on /gateway (not_found, forbidden, too_large, invalid_payload) leave the call waiting, and a valid one is then accepted, over ${transport}`, async (t) => {
      const { server, ui, id, events } = await setup(t);
      const gateway = await startGateway(t, server, { transport, tools: [READ_FILE] });
      let disconnected = null;
      gateway.socket.on('disconnect', (reason) => (disconnected = reason));

      const { run_id } = await execute(ui, id, '/tool read_file {"path": "README.md"}');
      const call = await gateway.waitForCall(1);
      const waiting = await waitFor(events, isStatus('awaiting_tool'), 'status awaiting_tool');
      assert.equal((await sessionOf(ui, id)).head_seq, waiting.seq);

      let message = assertAckError(
        await ack(gateway.socket, 'tool:result', { call_id: 'call_0000000000000000000000000000000', output: 'x' }),
        'not_found',
        'an unknown call_id',
      );
      assert.equal(typeof message, 'string');

      const bob = await startGateway(t, server, { transport: 'websocket', token: 'tok-bob', gatewayId: 'bob-gw', tools: [READ_FILE] });
      message = assertAckError(
        await ack(bob.socket, 'tool:result', { call_id: call.call_id, output: 'bob was here' }),
        'forbidden',
        'bob answering alice\'s call',
      );
      assert.ok(!message.includes('README.md'), `the refusal says nothing of alice's call: ${message}`);

      const huge = 'x'.repeat(1024 * 1024 + 1);
      message = assertAckError(
        await ack(gateway.socket, 'tool:result', { call_id: call.call_id, output: huge }),
        'too_large',
        'an output of 1 MiB + 1 byte',
      );
      assert.match(message, /output/);

      message = assertAckError(
        await ack(gateway.socket, 'tool:result', { output: 'no call id' }),
        'invalid_payload',
        'a tool:result without call_id',
      );
      assert.match(message, /call_id/);
      message = assertAckError(
        await ack(gateway.socket, 'tool:result', { call_id: 42, output: 'x' }),
        'invalid_payload',
        'a numeric call_id',
      );
      assert.match(message, /call_id/);

      assert.equal(gateway.socket.connected, true, 'the gateway stays connected');
      assert.equal(disconnected, null);
      const session = await sessionOf(ui, id);
      assert.equal(session.status, 'awaiting_tool', 'the call still waits');
      assert.equal(session.head_seq, waiting.seq, 'no refusal logged anything');
      assert.equal(events.events.filter((e) => e.type === 'tool.result').length, 0);
      await bob.roundTrip();
      assert.deepEqual(bob.calls, [], 'bob\'s gateway never gets alice\'s call');

      const output = { lines: ['# Switchboard'], truncated: false };
      assert.deepEqual(await ack(gateway.socket, 'tool:result', { call_id: call.call_id, output }), { ok: true });
      await runDone(events, run_id);
      const result = events.events.find((e) => e.type === 'tool.result');
      assert.deepEqual(result.data, { call_id: call.call_id, status: 'success', output });
      assert.equal(
        lastAssistantText(events.events).data.content,
        `Tool ${call.call_id} returned: ${JSON.stringify(output)}`,
        'a JSON output reaches the model as its JSON text',
      );
      assertContiguous(events.seqs(), 1, events.last);
    });
  }

  for (const transport of TRANSPORTS) {
    test(`a tool that requires approval reaches the gateway only once the UI approves it, over ${transport}`, async (t) => {
      const { server, ui, id, events } = await setup(t, { transport });
      const gateway = await startGateway(t, server, { tools: [READ_FILE, RUN_COMMAND] });

      const { run_id } = await execute(ui, id, '/tool run_command {"command": "git status"}');
      const requested = await waitFor(events, (e) => e.type === 'tool.approval_requested', 'tool.approval_requested');
      const callId = requested.data.call_id;
      assert.deepEqual(requested.data, { call_id: callId, name: 'run_command', arguments: { command: 'git status' } });
      await waitFor(events, isStatus('awaiting_approval'), 'status awaiting_approval');
      const [toolCall] = assertInOrder(events.events, [
        ['tool.call', (e) => e.type === 'tool.call'],
        ['tool.approval_requested', (e) => e.type === 'tool.approval_requested'],
      ]);
      assert.deepEqual(toolCall.data, { call_id: callId, name: 'run_command', arguments: { command: 'git status' }, target: 'gateway' });
      assert.equal((await sessionOf(ui, id)).status, 'awaiting_approval');

      // Not delivered before the decision: a round-trip on /gateway brings nothing.
      await gateway.roundTrip();
      assert.deepEqual(gateway.calls, [], 'no tool:call before approval');
      // The gateway cannot answer it before approval either (PROTOCOL leaves the code open).
      const early = await ack(gateway.socket, 'tool:result', { call_id: callId, output: 'too early' });
      assert.equal(early.ok, false, `a result for a call waiting for approval: ${JSON.stringify(early)}`);
      assert.equal((await sessionOf(ui, id)).status, 'awaiting_approval', 'the early result changed nothing');

      assert.deepEqual(await ack(ui, 'tool:approval', { session_id: id, call_id: callId, decision: 'approve' }), { ok: true });
      const call = await gateway.waitForCall(1);
      assert.deepEqual(call, { call_id: callId, session_id: id, run_id, name: 'run_command', arguments: { command: 'git status' } });
      assertAckError(
        await ack(ui, 'tool:approval', { session_id: id, call_id: callId, decision: 'deny' }),
        'conflict',
        'a second decision',
      );

      assert.deepEqual(await ack(gateway.socket, 'tool:result', { call_id: callId, output: 'nothing to commit' }), { ok: true });
      await runDone(events, run_id);
      const [, , result] = assertInOrder(events.events, [
        ['status awaiting_approval', isStatus('awaiting_approval')],
        ['status awaiting_tool', isStatus('awaiting_tool')],
        ['tool.result', (e) => e.type === 'tool.result'],
        ['run.finished', (e) => e.type === 'run.finished'],
      ]);
      assert.deepEqual(result.data, { call_id: callId, status: 'success', output: 'nothing to commit' });
      assert.equal(lastAssistantText(events.events).data.content, `Tool ${callId} returned: nothing to commit`);
      assert.equal(events.events.at(-2).data.reason, 'completed');
      assert.equal(gateway.calls.length, 1);
      assertContiguous(events.seqs(), 1, events.last);
    });
  }

  test('a denied call never reaches the gateway and the model gets "[denied] <reason>"', async (t) => {
    const { server, ui, id, events } = await setup(t);
    const gateway = await startGateway(t, server, { tools: [RUN_COMMAND] });

    const { run_id } = await execute(ui, id, '/tool run_command {"command": "rm -rf build"}');
    const requested = await waitFor(events, (e) => e.type === 'tool.approval_requested', 'tool.approval_requested');
    await waitFor(events, isStatus('awaiting_approval'), 'status awaiting_approval');
    const callId = requested.data.call_id;

    // Someone else's decision: bob cannot deny alice's call.
    const bobUi = await socketOf(t, server, '/agent', { token: 'tok-bob' });
    const bobs = await ack(bobUi, 'tool:approval', { session_id: id, call_id: callId, decision: 'approve' });
    assert.ok(['forbidden', 'not_found'].includes(bobs.error?.code), `bob's approval: ${JSON.stringify(bobs)}`);
    assert.match(
      assertAckError(await ack(ui, 'tool:approval', { session_id: id, call_id: callId, decision: 'maybe' }), 'invalid_payload', 'an unknown decision'),
      /decision/,
    );
    assert.equal((await sessionOf(ui, id)).status, 'awaiting_approval', 'refused decisions change nothing');

    const reason = 'not on my machine';
    assert.deepEqual(await ack(ui, 'tool:approval', { session_id: id, call_id: callId, decision: 'deny', reason }), { ok: true });
    await runDone(events, run_id);
    const result = events.events.find((e) => e.type === 'tool.result');
    assert.deepEqual(result.data, { call_id: callId, status: 'denied', output: reason });
    const text = lastAssistantText(events.events).data.content;
    assert.ok(text.includes(`[denied] ${reason}`), `the model saw the denial: ${text}`);
    assert.equal(text, `Tool ${callId} returned: [denied] ${reason}`);
    assert.equal(events.events.at(-2).data.reason, 'completed');
    assertContiguous(events.seqs(), 1, events.last);

    await gateway.roundTrip();
    assert.deepEqual(gateway.calls, [], 'a denied call is never sent to the gateway');
    assertAckError(
      await ack(gateway.socket, 'tool:result', { call_id: callId, output: 'ran anyway' }),
      'conflict',
      'a result for a denied call',
    );
  });

  test('ask_user_questions waits for the owner\'s answer on /agent; another user cannot answer', async (t) => {
    const { server, ui, id, events } = await setup(t);

    const { run_id } = await execute(ui, id, '/ask Which file? | Why?');
    const asked = await waitFor(events, (e) => e.type === 'tool.call', 'tool.call');
    const callId = asked.data.call_id;
    assert.deepEqual(asked.data, {
      call_id: callId,
      name: 'ask_user_questions',
      arguments: { questions: ['Which file?', 'Why?'] },
      target: 'user',
    });
    const waiting = await waitFor(events, isStatus('awaiting_input'), 'status awaiting_input');
    const session = await sessionOf(ui, id);
    assert.equal(session.status, 'awaiting_input');
    assert.equal(session.head_seq, waiting.seq);

    const bobUi = await socketOf(t, server, '/agent', { token: 'tok-bob' });
    assertAckError(
      await ack(bobUi, 'tool:result', { session_id: id, call_id: callId, output: 'bob answers' }),
      'forbidden',
      'bob answering alice\'s question',
    );
    assert.match(
      assertAckError(await ack(ui, 'tool:result', { session_id: id, output: 'no call id' }), 'invalid_payload', 'an answer without call_id'),
      /call_id/,
    );
    assert.equal((await sessionOf(ui, id)).head_seq, waiting.seq, 'the refusals logged nothing');

    const answer = 'src/main.rs, because the build fails';
    assert.deepEqual(await ack(ui, 'tool:result', { session_id: id, call_id: callId, output: answer }), { ok: true });
    await runDone(events, run_id);
    assertInOrder(events.events, [
      ['tool.call', (e) => e.type === 'tool.call'],
      ['status awaiting_input', isStatus('awaiting_input')],
      ['tool.result', (e) => e.type === 'tool.result'],
      ['status running', isStatus('running')],
      ['run.finished', (e) => e.type === 'run.finished'],
    ]);
    const result = events.events.find((e) => e.type === 'tool.result');
    assert.deepEqual(result.data, { call_id: callId, status: 'success', output: answer });
    const text = lastAssistantText(events.events).data.content;
    assert.equal(text, `Tool ${callId} returned: ${answer}`);
    assert.equal(events.events.at(-2).data.reason, 'completed');
    assertContiguous(events.seqs(), 1, events.last);

    assertAckError(
      await ack(ui, 'tool:result', { session_id: id, call_id: callId, output: 'again' }),
      'conflict',
      'a second answer',
    );
  });

  for (const transport of TRANSPORTS) {
    test(`agent:stop while a gateway call is pending cancels it; the gateway's late result gets conflict, over ${transport}`, async (t) => {
      const { server, ui, id, events } = await setup(t);
      const gateway = await startGateway(t, server, { transport, tools: [READ_FILE] });

      const { run_id } = await execute(ui, id, '/tool read_file {"path": "big.log"}');
      const call = await gateway.waitForCall(1);
      const waiting = await waitFor(events, isStatus('awaiting_tool'), 'status awaiting_tool');

      assert.deepEqual(await ack(ui, 'agent:stop', { session_id: id }), { ok: true, stopped: true });
      const finished = await runDone(events, run_id);
      assert.equal(finished.data.reason, 'stopped');
      const after = events.events.filter((e) => e.seq > waiting.seq);
      assert.deepEqual(after.map((e) => e.type), ['tool.result', 'run.finished', 'status']);
      assert.equal(after[0].data.call_id, call.call_id);
      assert.equal(after[0].data.status, 'cancelled');
      assertContiguous(events.seqs(), 1, events.last);

      const late = await ack(gateway.socket, 'tool:result', { call_id: call.call_id, output: 'too late' });
      assertAckError(late, 'conflict', 'a result after the run was stopped');
      const session = await sessionOf(ui, id);
      assert.equal(session.status, 'idle');
      assert.equal(session.head_seq, events.last, 'the late result logged nothing');

      // The conversation stays valid: the cancelled call has its tool message, and the next run works.
      const next = await execute(ui, id, 'hello again');
      await runDone(events, next.run_id);
      assert.equal(lastAssistantText(events.events).data.content, 'You said: hello again');
      const messages = await ack(ui, 'session:messages', { session_id: id });
      const tool = messages.messages.find((m) => m.role === 'tool');
      assert.equal(tool?.tool_call_id, call.call_id);
    });
  }
});
