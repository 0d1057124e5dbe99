// Text for people: one-line event summaries, times, JSON.

import MarkdownIt from 'markdown-it';

import type { AgentEvent, Progress } from './protocol';

/** Markdown without raw HTML: what a model writes cannot inject markup. */
const markdown = new MarkdownIt({ html: false, linkify: true, breaks: false });
const defaultLinkOpen =
  markdown.renderer.rules.link_open ??
  ((tokens, idx, options, _env, self) => self.renderToken(tokens, idx, options));
markdown.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet('target', '_blank');
  tokens[idx].attrSet('rel', 'noopener noreferrer');
  return defaultLinkOpen(tokens, idx, options, env, self);
};

export function renderMarkdown(text: string): string {
  return markdown.render(text);
}

/** `12:00:03.123`, in the reader's time zone. */
export function clock(ts: string): string {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return ts;
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A short "5 min ago" for lists. */
export function ago(ts: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - new Date(ts).getTime()) / 1000));
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(ts).toLocaleDateString();
}

/** Pretty JSON; a string that holds JSON is shown as that JSON. */
export function pretty(value: unknown): string {
  if (typeof value === 'string') {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2) ?? String(value);
}

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** One line of at most `max` characters: escapes and newlines made visible. */
export function oneLine(value: unknown, max = 140): string {
  const text = (typeof value === 'string' ? value : JSON.stringify(value) ?? '')
    .replace(ANSI, '')
    .replace(/\r?\n/g, '⏎')
    .replace(/[\x00-\x1f]/g, ' ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function shortId(id: unknown): string {
  return typeof id === 'string' ? id.slice(-8) : '';
}

/** `3/10 · tests`: a `progress` event's counts and message. */
export function progressText(d: Progress): string {
  const passing = typeof d.passing === 'number' ? d.passing : undefined;
  const total = typeof d.total === 'number' ? d.total : undefined;
  const counts = total !== undefined ? `${passing ?? 0}/${total}` : passing !== undefined ? String(passing) : '';
  return [counts, d.message ? String(d.message) : ''].filter(Boolean).join(' · ');
}

/** The rest of an event's line in the log, after its seq, time and type. */
export function summary(event: AgentEvent): string {
  switch (event.type) {
    case 'message.user':
      return oneLine(event.data.content);
    case 'run.started':
      return `run …${shortId(event.data.run_id)}`;
    case 'text.delta':
      return JSON.stringify(event.data.delta ?? '');
    case 'message.completed': {
      const d = event.data;
      return `${d.role ?? ''} ${d.status ?? ''}: ${oneLine(d.content ?? '', 100)}`;
    }
    case 'tool.call': {
      const d = event.data;
      return `${d.name} → ${d.target} ${oneLine(d.arguments ?? {}, 100)}`;
    }
    case 'tool.approval_requested':
      return `${event.data.name} waits for approval`;
    case 'tool.result':
      return `${event.data.status}: ${oneLine(event.data.output ?? '', 100)}`;
    case 'status':
      return String(event.data.status);
    case 'progress':
      return progressText(event.data);
    case 'output':
      return `${event.data.stream}: ${oneLine(event.data.data ?? '')}`;
    case 'info':
      return oneLine(event.data.message);
    case 'error':
      return `${event.data.code}: ${oneLine(event.data.message)}`;
    case 'run.finished': {
      const usage = event.data.usage;
      return `${event.data.reason}${usage?.total_tokens !== undefined ? ` · ${usage.total_tokens} tokens` : ''}`;
    }
    default:
      return oneLine(event.data);
  }
}

/** Whether an event's line opens to show more (`details`). */
export function hasDetails(event: AgentEvent): boolean {
  return event.type !== 'text.delta' && event.type !== 'status';
}

/** What an opened line shows: the part of `data` worth reading in full. */
export function details(event: AgentEvent): string {
  switch (event.type) {
    case 'tool.call':
    case 'tool.approval_requested':
      return pretty(event.data.arguments ?? {});
    case 'tool.result':
      return pretty(event.data.output ?? '');
    case 'message.completed':
    case 'message.user':
      return String(event.data.content ?? '');
    case 'output':
      return String(event.data.data ?? '').replace(ANSI, '');
    default:
      return pretty(event.data);
  }
}

/** The CSS class of an event type: `x.*` share one colour. */
export function typeClass(type: string): string {
  if (type.startsWith('x.')) return 'ev-x';
  return `ev-${type.replace(/[^a-z]+/g, '-')}`;
}
