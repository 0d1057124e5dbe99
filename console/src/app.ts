// The console's shell: signing in, the connection, the session list, and
// which session is open (`#/s/<id>` in the address).

import { EventCache } from './cache';
import { h, replace } from './dom';
import { ago } from './format';
import {
  Connection,
  REJECTIONS,
  type AgentEvent,
  type ConnectionState,
  type Heartbeat,
  type Lagged,
  type Session,
  type SessionStatus,
} from './protocol';
import { SessionView, describe } from './session';

const TOKEN_KEY = 'switchboard.token';
const PAGE_SIZE = 50;

function newTokenHelp(): HTMLElement {
  return h(
    'p',
    null,
    'To get a new token, restart ',
    h('code', null, 'switchboard serve --dev'),
    ' and open the Console URL it prints (it carries a fresh token), or ask the server\'s operator for one (',
    h('code', null, 'switchboard token --user <you>'),
    ').',
  );
}

export class App {
  private token: string | null = null;
  private conn: Connection | null = null;
  private cache: EventCache | null = null;
  private view: SessionView | null = null;
  private sessions: Session[] = [];
  private nextBefore: string | null = null;
  private shown = false;

  private readonly indicator = h('span', { class: 'conn', role: 'status', 'aria-live': 'polite' });
  private readonly who = h('span', { class: 'who-am-i' });
  private readonly list = h('ul', { class: 'session-list' });
  private readonly more = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => this.loadSessions(true) }, 'Older sessions');
  private readonly listError = h('p', { class: 'flash', role: 'alert', hidden: true });
  private readonly main = h('main', { id: 'main', tabindex: -1 });

  constructor(private readonly root: HTMLElement) {}

  start(): void {
    this.token = this.tokenFromUrl() ?? localStorage.getItem(TOKEN_KEY);
    window.addEventListener('hashchange', () => {
      // A Console URL opened in this tab changes only the fragment.
      const token = this.tokenFromUrl();
      if (token) {
        this.token = token;
        this.closeSession();
        this.shown = false;
        this.connect();
      } else {
        this.route();
      }
    });
    // Without a token, try anyway: a cookie, or a server without authentication.
    this.connect();
  }

  /**
   * `#token=…` (the URL `serve --dev` prints): browsers never send the
   * fragment to the server. Keeps the token and drops it from the address.
   */
  private tokenFromUrl(): string | null {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    if (!token) return null;
    localStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname + location.search);
    return token;
  }

  private connect(): void {
    this.conn?.close();
    const conn = new Connection(this.token, (state) => this.connectionChanged(conn, state));
    this.conn = conn;
    this.setIndicator('connecting', 'Connecting…');
    if (!this.shown) {
      // Until the server answers (it may be down: the client keeps trying).
      replace(this.root, h('div', { class: 'sign-in-page' }, h('div', { class: 'sign-in' }, h('h1', null, 'Switchboard'), h('p', null, this.indicator))));
    }
    conn.socket.on('agent:event', (event: AgentEvent) => {
      if (event?.session_id === this.view?.id) this.view!.receive(event);
    });
    conn.socket.on('agent:heartbeat', (beat: Heartbeat) => {
      if (beat?.session_id === this.view?.id) this.view!.receiveHeartbeat(beat);
    });
    conn.socket.on('session:lagged', (lagged: Lagged) => {
      if (lagged?.session_id === this.view?.id) this.view!.lagged();
    });
  }

  private async connectionChanged(conn: Connection, state: ConnectionState): Promise<void> {
    if (conn !== this.conn) return;
    switch (state.kind) {
      case 'reconnecting':
        this.setIndicator('offline', state.attempt > 0 ? `Reconnecting… (attempt ${state.attempt})` : 'Reconnecting…');
        break;
      case 'rejected':
        conn.close();
        this.conn = null;
        this.signIn(state.reason, state.message);
        break;
      case 'connected':
        this.setIndicator('online', 'Connected');
        if (!this.shown) await this.showShell();
        void this.loadSessions(false);
        this.view?.resume();
        break;
    }
  }

  private setIndicator(kind: string, text: string): void {
    this.indicator.className = `conn conn-${kind}`;
    this.indicator.textContent = text;
  }

  // --- signing in -------------------------------------------------------

  private signIn(reason: string | null, message?: string): void {
    this.closeSession();
    this.shown = false;
    const hadToken = this.token !== null;
    if (reason && reason !== 'missing_credentials') localStorage.removeItem(TOKEN_KEY);
    const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: false });
    const problem =
      reason && (hadToken || reason !== 'missing_credentials')
        ? h(
            'div',
            { class: 'flash', role: 'alert' },
            h('p', null, h('strong', null, `Sign-in failed: ${reason}. `), REJECTIONS[reason] ?? `The server refused the connection (${message}).`),
            newTokenHelp(),
          )
        : null;
    const form = h(
      'form',
      {
        class: 'sign-in',
        'aria-labelledby': 'sign-in-title',
        onsubmit: (e: Event) => {
          e.preventDefault();
          const token = input.value.trim();
          if (!token) return;
          this.token = token;
          localStorage.setItem(TOKEN_KEY, token);
          this.connect();
        },
      },
      h('h1', { id: 'sign-in-title' }, 'Switchboard'),
      h('p', null, 'Sign in with a token to watch and steer your agent sessions.'),
      problem,
      h('label', { for: 'token' }, 'Token'),
      input,
      h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
      problem ? null : h('p', { class: 'hint' }, h('code', null, 'switchboard serve --dev'), ' prints a Console URL that signs you in.'),
    );
    replace(this.root, h('div', { class: 'sign-in-page' }, form));
    input.focus();
  }

  private async signOut(): Promise<void> {
    this.token = null;
    localStorage.removeItem(TOKEN_KEY);
    this.conn?.close();
    this.conn = null;
    this.closeSession();
    this.cache?.close();
    this.cache = null;
    await EventCache.wipe();
    this.signIn(null);
  }

  // --- the shell ----------------------------------------------------------

  private async showShell(): Promise<void> {
    this.shown = true;
    this.cache ??= await EventCache.open();
    const title = h('input', { id: 'new-title', name: 'title', type: 'text', placeholder: 'Title (optional)', maxlength: 200 });
    const create = h(
      'form',
      {
        class: 'new-session',
        'aria-label': 'New session',
        onsubmit: async (e: Event) => {
          e.preventDefault();
          const payload = title.value.trim() ? { title: title.value.trim() } : {};
          try {
            const { session } = await this.conn!.request<{ session: Session }>('session:create', payload);
            title.value = '';
            this.sessions = [session, ...this.sessions.filter((s) => s.id !== session.id)];
            this.renderList();
            location.hash = `#/s/${session.id}`;
          } catch (error) {
            this.showListError(`Could not create a session: ${describe(error)}`);
          }
        },
      },
      h('label', { for: 'new-title', class: 'visually-hidden' }, 'Title of the new session'),
      title,
      h('button', { type: 'submit', class: 'primary' }, 'New session'),
    );
    replace(
      this.root,
      h('a', { class: 'skip', href: '#main' , onclick: (e: Event) => { e.preventDefault(); this.main.focus(); } }, 'Skip to the session'),
      h(
        'header',
        { class: 'top' },
        h('span', { class: 'brand' }, 'Switchboard'),
        this.indicator,
        h('span', { class: 'spacer' }),
        this.who,
        h('button', { type: 'button', class: 'link', onclick: () => this.signOut() }, 'Sign out'),
      ),
      h(
        'div',
        { class: 'layout' },
        h('nav', { class: 'sidebar', 'aria-labelledby': 'sessions-title' }, h('h2', { id: 'sessions-title' }, 'Sessions'), create, this.listError, this.list, this.more),
        this.main,
      ),
    );
    void this.whoAmI();
    this.route();
  }

  private async whoAmI(): Promise<void> {
    try {
      const response = await fetch('/v1/whoami', {
        headers: this.token ? { Authorization: `Bearer ${this.token}` } : {},
      });
      if (response.ok) this.who.textContent = (await response.json()).user_id;
    } catch {
      // Only a label.
    }
  }

  private async loadSessions(older: boolean): Promise<void> {
    if (!this.conn) return;
    try {
      const payload: Record<string, unknown> = { limit: PAGE_SIZE };
      if (older && this.nextBefore) payload.before = this.nextBefore;
      const page = await this.conn.request<{ sessions: Session[]; next_before?: string }>('session:list', payload);
      const known = new Set(older ? this.sessions.map((s) => s.id) : []);
      const fresh = page.sessions.filter((s) => !known.has(s.id));
      this.sessions = older ? [...this.sessions, ...fresh] : page.sessions;
      this.nextBefore = page.next_before ?? null;
      this.showListError(null);
      this.renderList();
    } catch (error) {
      this.showListError(`Could not list sessions: ${describe(error)}`);
    }
  }

  private showListError(text: string | null): void {
    this.listError.textContent = text ?? '';
    this.listError.hidden = !text;
  }

  private renderList(): void {
    const current = this.view?.id;
    replace(
      this.list,
      ...this.sessions.map((s) =>
        h(
          'li',
          null,
          h(
            'a',
            { href: `#/s/${s.id}`, 'aria-current': s.id === current ? 'page' : null, 'data-session-id': s.id },
            h('span', { class: 'title' }, s.title || 'Untitled session'),
            h(
              'span',
              { class: 'meta' },
              h('time', { datetime: s.updated_at }, ago(s.updated_at)),
              s.status === 'idle' ? null : h('span', { class: `state status-${s.status}` }, s.status.replace('_', ' ')),
            ),
          ),
        ),
      ),
    );
    if (!this.sessions.length) this.list.appendChild(h('li', { class: 'empty' }, 'No sessions yet.'));
    this.more.hidden = !this.nextBefore;
  }

  private statusChanged(sessionId: string, status: SessionStatus): void {
    const session = this.sessions.find((s) => s.id === sessionId);
    if (session && session.status !== status) {
      session.status = status;
      this.renderList();
    }
  }

  // --- the open session ------------------------------------------------------

  private route(): void {
    if (!this.shown) return;
    const match = /^#\/s\/([0-9a-fA-F-]{36})$/.exec(location.hash);
    const id = match?.[1] ?? null;
    if (id === this.view?.id) return;
    void this.open(id);
  }

  private closeSession(options?: { unsubscribe: boolean }): void {
    this.view?.dispose(options);
    this.view = null;
  }

  private async open(id: string | null, { again = false } = {}): Promise<void> {
    this.closeSession({ unsubscribe: !again });
    this.renderList();
    if (!id || !this.conn) {
      replace(this.main, this.welcome());
      return;
    }
    let session: Session;
    try {
      ({ session } = await this.conn.request<{ session: Session }>('session:get', { session_id: id }));
    } catch (error) {
      replace(this.main, h('div', { class: 'flash', role: 'alert' }, `Could not open session ${id}: ${describe(error)}`));
      return;
    }
    if (location.hash !== `#/s/${id}`) return; // another session was chosen meanwhile
    const view = new SessionView(session, this.conn, this.cache!, {
      statusChanged: (sid, status) => this.statusChanged(sid, status),
      reopen: (sid) => {
        if (this.view?.id === sid) void this.open(sid, { again: true });
      },
    });
    this.view = view;
    replace(this.main, view.root);
    this.renderList();
    await view.open();
  }

  private welcome(): HTMLElement {
    return h(
      'section',
      { class: 'welcome', 'aria-labelledby': 'welcome-title' },
      h('h2', { id: 'welcome-title' }, 'No session open'),
      h('p', null, 'Create a session or pick one from the list. Each session is a conversation with the agent, with its full event log.'),
      h('p', null, 'To give the agent tools on your machine, run the example gateway from a clone of Switchboard, with your token:'),
      h('pre', null, `SWITCHBOARD_TOKEN=<your token> cargo run --release --example gateway -- --url ${location.origin} --root .`),
    );
  }
}
