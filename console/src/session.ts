// One open session: its live event log rendered four ways (conversation,
// event log, terminal, status), and the controls that steer it.
//
// Every event goes through `apply`, which renders it only when its `seq`
// is the next one: an event seen twice (a replay overlapping live events)
// is dropped, and a gap makes the view subscribe again after the last
// `seq` it rendered. Rendered events are stored (cache.ts) so that a
// reload starts from them.

import { AnsiUp } from 'ansi_up';

import type { EventCache } from './cache';
import { StickToBottom, append, h, replace, setText } from './dom';
import { clock, details, hasDetails, pretty, progressText, renderMarkdown, shortId, summary, typeClass } from './format';
import {
  RequestError,
  type AgentEvent,
  type Connection,
  type Heartbeat,
  type Progress,
  type Session,
  type SessionStatus,
  type ToolCall,
  type ToolResult,
} from './protocol';

const STATUS_TEXT: Record<SessionStatus, string> = {
  idle: 'Idle',
  running: 'Running',
  awaiting_tool: 'Waiting for a tool',
  awaiting_approval: 'Waiting for your approval',
  awaiting_input: 'Waiting for your answer',
};

const ASK_USER = 'ask_user_questions';

export interface SessionHost {
  /** The session's status changed (for the session list). */
  statusChanged(sessionId: string, status: SessionStatus): void;
  /** The stored log does not match the server's: open the session afresh. */
  reopen(sessionId: string): void;
}

interface AssistantMessage {
  body: HTMLElement;
  item: HTMLElement;
  text: string;
}

interface ToolCard {
  item: HTMLElement;
  name: string;
  target: ToolCall['target'];
  arguments: unknown;
  state: HTMLElement;
  actions: HTMLElement;
  needsApproval: boolean;
  approved: boolean;
  ended: boolean;
}

export class SessionView {
  readonly root: HTMLElement;
  readonly id: string;

  private lastSeq = 0;
  /** Until the first subscription is acknowledged, nothing is rendered. */
  private ready = false;
  /** Set once `open` has read this browser's stored events. */
  private loaded = false;
  private cached: AgentEvent[] = [];
  private early: AgentEvent[] = [];
  private subscribing = 0;
  private resyncing = false;
  private disposed = false;

  private status: SessionStatus;
  private readonly activeRuns = new Set<string>();
  private heartbeat: { elapsedMs: number; at: number } | null = null;
  private readonly messages = new Map<string, AssistantMessage>();
  private readonly calls = new Map<string, ToolCard>();
  private inbox: AgentEvent[] = [];
  private draining = false;
  /** Assistant messages whose text changed in the batch being applied. */
  private readonly dirty = new Set<AssistantMessage>();
  private readonly ansi = new AnsiUp();
  private readonly ticker: number;
  private draft: { content: string; clientMsgId: string } | null = null;

  private readonly statusBadge = h('span', { class: 'badge', role: 'status', 'aria-label': 'Session status' });
  private readonly working = h('span', { class: 'working', 'aria-live': 'polite' });
  private readonly stopButton: HTMLButtonElement;
  private readonly progress = h('div', { class: 'progress', hidden: true });
  private readonly flash = h('div', { class: 'flash', role: 'alert' });
  private readonly conversation = h('ol', { class: 'conversation', role: 'log', 'aria-label': 'Conversation' });
  private readonly eventLog = h('ol', { class: 'events', 'aria-label': 'Event log' });
  private readonly terminal = h('div', { class: 'terminal', role: 'log', 'aria-label': 'Terminal output', tabindex: 0 });
  private readonly input: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly busyHint = h('p', { class: 'hint', id: 'composer-hint' });
  private readonly scrolls: StickToBottom[];

  constructor(
    session: Session,
    private readonly conn: Connection,
    private readonly cache: EventCache,
    private readonly host: SessionHost,
  ) {
    this.id = session.id;
    this.status = session.status;
    // Classes for the 16 named colours (styles.css gives them readable
    // shades on the terminal's background); 256 and true colours inline.
    this.ansi.use_classes = true;

    this.stopButton = h('button', { type: 'button', class: 'danger', hidden: true, onclick: () => this.stop() }, 'Stop');
    this.input = h('textarea', {
      id: 'message',
      name: 'message',
      rows: 3,
      placeholder: 'Message the agent — Enter sends, Shift+Enter adds a line',
      'aria-describedby': 'composer-hint',
      onkeydown: (e: Event) => {
        const key = e as KeyboardEvent;
        if (key.key === 'Enter' && !key.shiftKey && !key.isComposing) {
          key.preventDefault();
          void this.send();
        }
      },
    });
    this.sendButton = h('button', { type: 'submit', class: 'primary' }, 'Send');
    const composer = h(
      'form',
      {
        class: 'composer',
        'aria-label': 'Send a message',
        onsubmit: (e: Event) => {
          e.preventDefault();
          void this.send();
        },
      },
      h('label', { for: 'message', class: 'visually-hidden' }, 'Message'),
      this.input,
      this.sendButton,
      this.busyHint,
    );

    this.root = h(
      'article',
      { class: 'session', 'aria-labelledby': 'session-title' },
      h(
        'header',
        { class: 'session-head' },
        h('div', { class: 'session-name' },
          h('h2', { id: 'session-title' }, session.title || 'Untitled session'),
          h('code', { class: 'session-id', title: 'Session id' }, session.id),
        ),
        h('div', { class: 'session-state' }, this.statusBadge, this.working, this.stopButton),
        this.progress,
      ),
      this.flash,
      h(
        'div',
        { class: 'panes' },
        h('section', { class: 'pane chat', 'aria-label': 'Conversation and message box' }, this.conversation, composer),
        h(
          'div',
          { class: 'side' },
          h('section', { class: 'pane', 'aria-labelledby': 'terminal-title' },
            h('h3', { id: 'terminal-title' }, 'Terminal'),
            this.terminal,
          ),
          h('section', { class: 'pane', 'aria-labelledby': 'events-title' },
            h('h3', { id: 'events-title' }, 'Event log'),
            h('div', { class: 'scroll', tabindex: 0, 'aria-label': 'Event log, one line per event' }, this.eventLog),
          ),
        ),
      ),
    );
    this.scrolls = [this.conversation, this.terminal, this.eventLog.parentElement!].map((el) => new StickToBottom(el));
    this.ticker = window.setInterval(() => this.showStatus(), 1000);
    this.showStatus();
  }

  /** Loads what this browser rendered before, then subscribes after it. */
  async open(): Promise<void> {
    this.cached = await this.cache.load(this.id);
    this.loaded = true;
    this.resume();
  }

  /** (Re)subscribes after the last rendered event: on open and on every reconnect. */
  resume(): void {
    if (this.disposed || !this.loaded || !this.conn.connected) return;
    const after = this.ready ? this.lastSeq : (this.cached.at(-1)?.seq ?? 0);
    void this.subscribe(after);
  }

  /**
   * Stops rendering. `unsubscribe: false` when the same session opens
   * again at once: an unsubscribe handled after the new subscribe would
   * cancel it.
   */
  dispose({ unsubscribe = true } = {}): void {
    this.disposed = true;
    window.clearInterval(this.ticker);
    if (unsubscribe && this.conn.connected) {
      this.conn.request('session:unsubscribe', { session_id: this.id }).catch(() => {});
    }
  }

  private async subscribe(afterSeq: number): Promise<void> {
    const attempt = ++this.subscribing;
    let ack: { session: Session; head_seq: number; truncated?: boolean; first_seq?: number };
    try {
      ack = await this.conn.request('session:subscribe', { session_id: this.id, after_seq: afterSeq });
    } catch (error) {
      if (this.disposed || attempt !== this.subscribing) return;
      if (error instanceof RequestError && error.code === 'conflict' && afterSeq > 0) {
        // The server's log is shorter than what this browser rendered: it
        // is another database. Start over from the server's log.
        await this.cache.clear(this.id);
        this.host.reopen(this.id);
        return;
      }
      this.showError(`Could not open the session: ${describe(error)}`);
      return;
    }
    if (this.disposed || attempt !== this.subscribing) return;
    this.showError(null);
    if (!this.ready) {
      this.ready = true;
      this.applyAll(this.cached, false);
      this.cached = [];
      if (ack.truncated && ack.first_seq !== undefined && ack.first_seq - 1 > this.lastSeq) {
        this.notice('info', `Events before #${ack.first_seq} were removed by the server's retention.`);
        this.lastSeq = ack.first_seq - 1;
      }
      if (this.lastSeq === 0) this.setStatus(ack.session.status);
      const early = this.early;
      this.early = [];
      this.applyAll(early, true);
    }
  }

  /**
   * An `agent:event` of this session, live or replayed. Events are rendered
   * in batches, at most one a frame: a replay of thousands of events lays
   * the page out once per batch, not once per event.
   */
  receive(event: AgentEvent): void {
    if (!this.ready) {
      this.early.push(event);
      return;
    }
    this.inbox.push(event);
    if (this.draining) return;
    this.draining = true;
    const drain = () => {
      if (!this.draining || this.disposed) return;
      this.draining = false;
      const events = this.inbox;
      this.inbox = [];
      this.applyAll(events, true);
    };
    requestAnimationFrame(drain);
    // Hidden tabs get no animation frames.
    setTimeout(drain, 100);
  }

  receiveHeartbeat(beat: Heartbeat): void {
    this.heartbeat = { elapsedMs: beat.elapsed_ms, at: performance.now() };
    this.setStatus(beat.status);
  }

  /** `session:lagged`: the server dropped this subscriber; catch up from the log. */
  lagged(): void {
    void this.subscribe(this.lastSeq);
  }

  /**
   * Applies a batch of events. Markdown is rendered once per batch for each
   * message whose text changed, however many deltas the batch held.
   */
  private applyAll(events: AgentEvent[], store: boolean): void {
    if (!events.length) return;
    for (const stick of this.scrolls) stick.before();
    for (const event of events) this.apply(event, store);
    for (const message of this.dirty) message.body.innerHTML = renderMarkdown(message.text);
    this.dirty.clear();
    for (const stick of this.scrolls) stick.after();
    this.showStatus();
  }

  private apply(event: AgentEvent, store: boolean): void {
    if (event.seq <= this.lastSeq) return;
    if (event.seq !== this.lastSeq + 1) {
      if (!this.resyncing) {
        this.resyncing = true;
        void this.subscribe(this.lastSeq).finally(() => (this.resyncing = false));
      }
      return;
    }
    this.lastSeq = event.seq;
    if (store) this.cache.put(event);
    this.heartbeat = null;
    this.logLine(event);
    this.render(event);
  }

  private logLine(event: AgentEvent): void {
    const line = h(
      'span',
      { class: 'line' },
      h('span', { class: 'seq' }, `#${event.seq}`),
      h('time', { datetime: event.ts }, clock(event.ts)),
      h('span', { class: 'type' }, event.type),
      h('span', { class: 'sum' }, summary(event)),
    );
    const item = h('li', { class: typeClass(event.type), 'data-seq': event.seq });
    if (!hasDetails(event)) {
      append(item, line);
    } else {
      // A button rather than <details>, whose shadow tree per line makes
      // styling a log of thousands of lines slow; the data is laid out
      // only when the line is opened.
      const toggle: HTMLButtonElement = h('button', {
        type: 'button',
        class: 'toggle',
        'aria-expanded': 'false',
        onclick: () => {
          const open = toggle.getAttribute('aria-expanded') === 'true';
          toggle.setAttribute('aria-expanded', String(!open));
          if (open) item.querySelector('pre')?.remove();
          else append(item, h('pre', null, details(event)));
        },
      }, line);
      append(item, toggle);
    }
    this.eventLog.appendChild(item);
  }

  private render(event: AgentEvent): void {
    switch (event.type) {
      case 'message.user':
        this.add(h('li', { class: 'msg user' }, h('div', { class: 'who' }, 'You'), h('div', { class: 'body plain' }, String(event.data.content ?? ''))));
        break;
      case 'run.started':
        if (typeof event.data.run_id === 'string') this.activeRuns.add(event.data.run_id);
        break;
      case 'text.delta': {
        const message = this.assistant(String(event.data.message_id));
        message.text += String(event.data.delta ?? '');
        this.dirty.add(message);
        break;
      }
      case 'message.completed': {
        const d = event.data;
        if (d.role !== 'assistant') break;
        const content = String(d.content ?? '');
        if (!content && !this.messages.has(String(d.message_id))) break;
        const message = this.assistant(String(d.message_id));
        message.text = content;
        message.item.classList.remove('streaming');
        message.body.removeAttribute('aria-busy');
        if (d.status === 'incomplete') {
          append(message.item, h('div', { class: 'cut' }, 'cut short'));
        }
        this.dirty.add(message);
        break;
      }
      case 'tool.call':
        this.toolCall(event.data);
        break;
      case 'tool.approval_requested': {
        const card = this.calls.get(String(event.data.call_id));
        if (card) card.needsApproval = true;
        this.refreshCalls();
        break;
      }
      case 'tool.result':
        this.toolResult(event.data);
        break;
      case 'status':
        this.setStatus(event.data.status);
        break;
      case 'progress':
        this.showProgress(event.data);
        break;
      case 'output':
        this.output(event.seq, event.data.stream === 'stderr' ? 'stderr' : 'stdout', String(event.data.data ?? ''));
        break;
      case 'info':
        this.notice('info', String(event.data.message ?? ''));
        break;
      case 'error':
        this.notice('error', `${event.data.code}: ${event.data.message}`);
        break;
      case 'run.finished': {
        const d = event.data;
        this.activeRuns.delete(String(d.run_id));
        for (const message of this.messages.values()) {
          message.item.classList.remove('streaming');
          message.body.removeAttribute('aria-busy');
        }
        const ending: Record<string, string> = {
          stopped: 'The run was stopped.',
          interrupted: 'The run was interrupted.',
          error: 'The run ended with an error.',
        };
        const text = ending[String(d.reason)];
        if (text) this.notice(d.reason === 'error' ? 'error' : 'info', text);
        break;
      }
    }
  }

  /**
   * Appends terminal output. Text goes into blocks that end at a line
   * break: a new chunk joins the last block only when that block's line is
   * unfinished, so appending lays out one small block, not the whole
   * terminal's text.
   */
  private output(seq: number, stream: 'stdout' | 'stderr', data: string): void {
    const chunk = h('span', { class: stream, 'data-seq': seq });
    chunk.innerHTML = this.ansi.ansi_to_html(data);
    let block = this.terminal.lastElementChild as HTMLElement | null;
    if (!block || block.dataset.open !== 'true') {
      block = h('div', { class: 'block' });
      this.terminal.appendChild(block);
    }
    block.appendChild(chunk);
    block.dataset.open = String(!data.endsWith('\n'));
  }

  private add(item: HTMLElement): void {
    this.conversation.appendChild(item);
  }

  private notice(kind: 'info' | 'error', text: string): void {
    this.add(h('li', { class: `notice ${kind}` }, text));
  }

  private assistant(messageId: string): AssistantMessage {
    let message = this.messages.get(messageId);
    if (!message) {
      const body = h('div', { class: 'body markdown', 'aria-busy': 'true' });
      const item = h('li', { class: 'msg assistant streaming', 'data-message-id': messageId }, h('div', { class: 'who' }, 'Assistant'), body);
      message = { body, item, text: '' };
      this.messages.set(messageId, message);
      this.add(item);
    }
    return message;
  }

  private toolCall(d: ToolCall): void {
    const callId = String(d.call_id);
    const state = h('span', { class: 'badge' }, d.target === 'user' ? 'question' : 'called');
    const actions = h('div', { class: 'actions' });
    const item = h(
      'li',
      { class: 'tool', 'data-call-id': callId },
      h('div', { class: 'tool-head' },
        h('span', { class: 'tool-name' }, String(d.name)),
        h('span', { class: 'target' }, `→ ${d.target}`),
        state,
        h('code', { class: 'call-id' }, `…${shortId(callId)}`),
      ),
      h('details', { class: 'args' }, h('summary', null, 'Arguments'), h('pre', null, pretty(d.arguments ?? {}))),
      actions,
    );
    this.calls.set(callId, {
      item,
      name: String(d.name),
      target: d.target,
      arguments: d.arguments,
      state,
      actions,
      needsApproval: false,
      approved: false,
      ended: false,
    });
    this.add(item);
    this.refreshCalls();
  }

  private toolResult(d: ToolResult): void {
    const card = this.calls.get(String(d.call_id));
    const result = h('details', { class: `result ${d.status}` }, h('summary', null, `Result: ${d.status}`), h('pre', null, pretty(d.output ?? '')));
    if (!card) {
      this.add(h('li', { class: 'tool' }, result));
      return;
    }
    card.ended = true;
    card.state.textContent = String(d.status);
    card.state.className = `badge result-${d.status}`;
    replace(card.actions);
    card.item.appendChild(result);
  }

  /** Shows Approve/Deny and question forms on the calls that wait for them. */
  private refreshCalls(): void {
    for (const [callId, card] of this.calls) {
      if (card.ended) continue;
      const wantsApproval = card.needsApproval && !card.approved && this.status === 'awaiting_approval';
      const wantsAnswers = card.name === ASK_USER && card.target === 'user';
      const shown = card.actions.dataset.kind ?? '';
      const kind = wantsApproval ? 'approval' : wantsAnswers ? 'questions' : '';
      if (kind === shown) continue;
      card.actions.dataset.kind = kind;
      if (card.needsApproval && !card.approved) card.state.textContent = 'needs approval';
      replace(card.actions, kind === 'approval' ? this.approvalForm(callId, card) : kind === 'questions' ? this.questionForm(callId, card) : null);
    }
  }

  private approvalForm(callId: string, card: ToolCard): HTMLElement {
    const reason = h('input', { type: 'text', name: 'reason', placeholder: 'Reason (optional)', 'aria-label': `Reason for denying ${card.name}` });
    const decide = async (decision: 'approve' | 'deny', button: HTMLButtonElement) => {
      for (const b of form.querySelectorAll('button')) b.disabled = true;
      try {
        const payload: Record<string, string> = { session_id: this.id, call_id: callId, decision };
        if (decision === 'deny' && reason.value.trim()) payload.reason = reason.value.trim();
        await this.conn.request('tool:approval', payload);
        if (decision === 'approve') {
          card.approved = true;
          card.state.textContent = 'approved';
          replace(card.actions);
          card.actions.dataset.kind = '';
        }
      } catch (error) {
        this.showError(`Could not ${decision} ${card.name}: ${describe(error)}`);
        for (const b of form.querySelectorAll('button')) b.disabled = false;
        button.focus();
      }
    };
    const approve: HTMLButtonElement = h('button', { type: 'button', class: 'primary', onclick: () => decide('approve', approve) }, 'Approve');
    const deny: HTMLButtonElement = h('button', { type: 'button', class: 'danger', onclick: () => decide('deny', deny) }, 'Deny');
    const form = h('div', { class: 'approval', role: 'group', 'aria-label': `Approve or deny ${card.name}` },
      h('p', null, `The agent wants to run `, h('strong', null, card.name), '.'),
      approve, deny, reason,
    );
    return form;
  }

  private questionForm(callId: string, card: ToolCard): HTMLElement {
    const args = (card.arguments ?? {}) as { questions?: unknown };
    const questions = Array.isArray(args.questions) ? args.questions.map(String) : [];
    const fields = questions.map((question, i) => {
      const id = `answer-${shortId(callId)}-${i}`;
      return { question, input: h('textarea', { id, rows: 2, required: true }), id };
    });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Send answers');
    const form = h(
      'form',
      {
        class: 'questions',
        'aria-label': 'Answer the agent\'s questions',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          submit.disabled = true;
          const output = fields.map((f) => `${f.question} ${f.input.value.trim()}`).join('\n');
          try {
            await this.conn.request('tool:result', { session_id: this.id, call_id: callId, output });
          } catch (error) {
            this.showError(`Could not send the answers: ${describe(error)}`);
            submit.disabled = false;
          }
        },
      },
      ...fields.map((f) => h('div', { class: 'field' }, h('label', { for: f.id }, f.question), f.input)),
      submit,
    );
    return form;
  }

  private setStatus(status: SessionStatus): void {
    if (!(status in STATUS_TEXT) || status === this.status) return;
    this.status = status;
    this.host.statusChanged(this.id, status);
    this.refreshCalls();
    this.showStatus();
  }

  private get busy(): boolean {
    return this.activeRuns.size > 0 || this.status !== 'idle';
  }

  /**
   * Also runs every second (the "still working" counter): it writes only
   * what changed, since any write lays out the page again.
   */
  private showStatus(): void {
    setText(this.statusBadge, STATUS_TEXT[this.status] ?? this.status);
    if (this.statusBadge.className !== `badge status-${this.status}`) this.statusBadge.className = `badge status-${this.status}`;
    if (this.stopButton.hidden !== !this.busy) this.stopButton.hidden = !this.busy;
    setText(this.busyHint, this.busy ? 'A run is active: sending a message interrupts it.' : '');
    let working = '';
    if (this.busy && this.heartbeat) {
      const seconds = Math.floor((this.heartbeat.elapsedMs + performance.now() - this.heartbeat.at) / 1000);
      working = `still working… ${seconds} s`;
    }
    setText(this.working, working);
  }

  private showProgress(d: Progress): void {
    const passing = typeof d.passing === 'number' ? d.passing : undefined;
    const total = typeof d.total === 'number' ? d.total : undefined;
    const bar = h('progress', { 'aria-label': 'Progress' });
    if (total !== undefined && total > 0) {
      bar.max = total;
      bar.value = Math.min(passing ?? 0, total);
    }
    replace(this.progress, bar, h('span', null, progressText(d)));
    this.progress.hidden = false;
  }

  private showError(text: string | null): void {
    this.flash.textContent = text ?? '';
    this.flash.hidden = !text;
  }

  private async stop(): Promise<void> {
    this.stopButton.disabled = true;
    try {
      await this.conn.request('agent:stop', { session_id: this.id });
    } catch (error) {
      this.showError(`Could not stop the run: ${describe(error)}`);
    } finally {
      this.stopButton.disabled = false;
    }
  }

  /**
   * Sends the message box. A retry of the same text after a failure reuses
   * its `client_msg_id`, so the server runs it once even if the first try
   * arrived.
   */
  private async send(): Promise<void> {
    const content = this.input.value.trim();
    if (!content || this.sendButton.disabled) return;
    if (this.draft?.content !== content) this.draft = { content, clientMsgId: crypto.randomUUID() };
    this.sendButton.disabled = true;
    try {
      await this.conn.request('agent:execute', {
        session_id: this.id,
        content,
        client_msg_id: this.draft.clientMsgId,
      });
      this.draft = null;
      if (this.input.value.trim() === content) this.input.value = '';
      this.showError(null);
    } catch (error) {
      this.showError(`Could not send the message: ${describe(error)}`);
    } finally {
      this.sendButton.disabled = false;
    }
  }
}

export function describe(error: unknown): string {
  if (error instanceof RequestError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}
