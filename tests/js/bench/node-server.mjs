// The reference the benchmarks compare Switchboard with: what a user would
// otherwise write, a plain Node socket.io 4 server doing the same room
// broadcast, without persistence, authentication beyond a token compare, or
// limits. `examples/bench` starts it (`node tests/js/bench/node-server.mjs`)
// and drives it exactly as it drives Switchboard:
//
// - Socket.IO namespace `/agent`, `auth.token` checked against BENCH_TOKEN;
//   `session:subscribe {session_id}` joins the session's room and acks
//   `{ok: true}`.
// - `POST /v1/sessions` answers `{session: {id}}`; `POST /v1/sessions/:id/events` with
//   `{events: [...]}` numbers each event and broadcasts it to the room as
//   `agent:event` ({session_id, seq, type, data}), then answers `{ok: true}`.
//
// It prints `{"message":"listening","addr":"127.0.0.1:PORT"}` on stderr once
// it listens, the line Switchboard's JSON log prints.

import http from "node:http";
import { randomUUID } from "node:crypto";
import { Server } from "socket.io";

const token = process.env.BENCH_TOKEN ?? "bench-token";
const heads = new Map();

const server = http.createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.headers.authorization !== `Bearer ${token}`) {
    return reply(401, { code: "unauthorized" });
  }
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    if (req.method === "POST" && req.url === "/v1/sessions") {
      const id = randomUUID();
      heads.set(id, 0);
      return reply(201, { session: { id } });
    }
    const append = /^\/v1\/sessions\/([^/]+)\/events$/.exec(req.url);
    if (req.method === "POST" && append && heads.has(append[1])) {
      const sessionId = append[1];
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return reply(400, { code: "bad_request" });
      }
      const room = agent.to(sessionId);
      let seq = heads.get(sessionId);
      for (const event of body.events ?? []) {
        seq += 1;
        room.emit("agent:event", { session_id: sessionId, seq, type: event.type, data: event.data });
      }
      heads.set(sessionId, seq);
      return reply(200, { ok: true, last_seq: seq });
    }
    reply(404, { code: "not_found" });
  });
});

// connectTimeout: long enough for the benchmark's connections that open no
// namespace (as the benchmark sets SWITCHBOARD_CONNECT_TIMEOUT).
const io = new Server(server, { serveClient: false, connectTimeout: 600_000 });
const agent = io.of("/agent");
agent.use((socket, next) => {
  if (socket.handshake.auth?.token === token) return next();
  next(new Error("unauthorized"));
});
agent.on("connection", (socket) => {
  socket.on("session:subscribe", (payload, ack) => {
    const sessionId = payload?.session_id;
    if (typeof ack !== "function") return;
    if (!heads.has(sessionId)) return ack({ ok: false, error: { code: "not_found" } });
    socket.join(sessionId);
    ack({ ok: true, head_seq: heads.get(sessionId) });
  });
});

server.listen(0, "127.0.0.1", () => {
  const { port } = server.address();
  process.stderr.write(`${JSON.stringify({ message: "listening", addr: `127.0.0.1:${port}` })}\n`);
});
