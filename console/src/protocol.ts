// The wire protocol as the console uses it (PROTOCOL.md): types, and a
// connection to the `/agent` namespace with the official socket.io-client.

import { io, type Socket } from 'socket.io-client';

import type { Event } from './generated/Event';

// Sessions, events and heartbeats are typed from the server's own
// definitions (`src/generated/`, written by `cargo test` from the Rust
// types: do not edit them by hand).
export type { Event } from './generated/Event';
export type { Heartbeat } from './generated/Heartbeat';
export type { Progress } from './generated/Progress';
export type { Session } from './generated/Session';
export type { SessionStatus } from './generated/SessionStatus';
export type { ToolCall } from './generated/ToolCall';
export type { ToolResult } from './generated/ToolResult';

/** The `agent:event` envelope: an event, and where it sits in the log. */
export type AgentEvent = {
  session_id: string;
  seq: number;
  run_id?: string | null;
  ts: string;
} & Event;

export interface Lagged {
  session_id: string;
  last_seq: number;
}

/** A refused request: the ack's `error`, or `timeout` when none came. */
export class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Why a handshake was refused, with what to do about it. */
export const REJECTIONS: Record<string, string> = {
  missing_credentials: 'The server needs a token to let you in.',
  invalid_token: 'The server did not accept this token: it is malformed, its signature is wrong, or it is not a configured API token.',
  expired_token: 'This token has expired.',
  wrong_audience: 'This token was issued for another audience than this server accepts.',
  wrong_issuer: 'This token was issued by another issuer than this server accepts.',
};

export type ConnectionState =
  | { kind: 'connected' }
  | { kind: 'reconnecting'; attempt: number; detail: string }
  | { kind: 'rejected'; reason: string; message: string };

const REQUEST_TIMEOUT_MS = 15_000;

/**
 * One connection to `/agent`. socket.io-client reconnects on its own after
 * a network drop or a server restart; a refused handshake ends it.
 */
export class Connection {
  readonly socket: Socket;

  constructor(token: string | null, onState: (state: ConnectionState) => void) {
    this.socket = io('/agent', {
      auth: (cb) => cb(token ? { token } : {}),
      // WebSocket first, long-polling when it cannot connect: no upgrade
      // from polling to race with a refused handshake or a quick sign-out.
      transports: ['websocket', 'polling'],
      tryAllTransports: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5_000,
    });
    const socket = this.socket;
    let attempt = 0;
    socket.on('connect', () => {
      attempt = 0;
      onState({ kind: 'connected' });
    });
    socket.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return;
      onState({ kind: 'reconnecting', attempt, detail: reason });
      // The server closed this socket itself (it may be restarting):
      // socket.io-client leaves that to the application.
      if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 1_000);
    });
    socket.on('connect_error', (err: Error) => {
      const refused = /^unauthorized: (\w+)$/.exec(err.message);
      if (refused) {
        onState({ kind: 'rejected', reason: refused[1], message: err.message });
      } else if (!socket.active) {
        onState({ kind: 'rejected', reason: 'refused', message: err.message });
      } else {
        attempt += 1;
        onState({ kind: 'reconnecting', attempt, detail: err.message });
      }
    });
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** Sends a request and resolves with its successful ack. */
  async request<T = Record<string, unknown>>(event: string, payload: object): Promise<T> {
    let ack: any;
    try {
      ack = await this.socket.timeout(REQUEST_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      throw new RequestError('timeout', `the server did not answer ${event} within 15 s`);
    }
    if (ack && ack.ok === true) return ack as T;
    const error = ack?.error ?? { code: 'internal', message: 'malformed acknowledgement' };
    throw new RequestError(error.code, error.message);
  }

  close(): void {
    this.socket.removeAllListeners();
    this.socket.disconnect();
  }
}
