// Text for people: one-line event summaries, times, JSON.

import MarkdownIt from 'markdown-it';

import type { AgentEvent } from './protocol';

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
export function progressText(d: Record<string, unknown>): string {
  const passing = typeof d.passing === 'number' ? d.passing : undefined;
  const total = typeof d.total === 'number' ? d.total : undefined;
  const counts = total !== undefined ? `${passing ?? 0}/${total}` : passing !== undefined ? String(passing) : '';
  return [counts, d.message ? String(d.message) : ''].filter(Boolean).join(' · ');
}

/** The rest of an event's line in the log, after its seq, time and type. */
export function summary(event: AgentEvent): string {
  const d = event.data ?? {};
  switch (event.type) {
    case 'message.user':
      return oneLine(d.content);
    case 'run.started':
      return `run …${shortId(d.run_id)}`;
    case 'text.delta':
      return JSON.stringify(d.delta ?? '');
    case 'message.completed':
      return `${d.role ?? ''} ${d.status ?? ''}: ${oneLine(d.content ?? '', 100)}`;
    case 'tool.call':
      return `${d.name} → ${d.target} ${oneLine(d.arguments ?? {}, 100)}`;
    case 'tool.approval_requested':
      return `${d.name} waits for approval`;
    case 'tool.result':
      return `${d.status}: ${oneLine(d.output ?? '', 100)}`;
    case 'status':
      return String(d.status);
    case 'progress':
      return progressText(d);
    case 'output':
      return `${d.stream}: ${oneLine(d.data ?? '')}`;
    case 'info':
      return oneLine(d.message);
    case 'error':
      return `${d.code}: ${oneLine(d.message)}`;
    case 'run.finished': {
      const usage = d.usage as { total_tokens?: number } | undefined;
      return `${d.reason}${usage?.total_tokens !== undefined ? ` · ${usage.total_tokens} tokens` : ''}`;
    }
    default:
      return oneLine(d);
  }
}

/** Whether an event's line opens to show more (`details`). */
export function hasDetails(event: AgentEvent): boolean {
  return event.type !== 'text.delta' && event.type !== 'status';
}

/** What an opened line shows: the part of `data` worth reading in full. */
export function details(event: AgentEvent): string {
  const d = event.data ?? {};
  switch (event.type) {
    case 'tool.call':
    case 'tool.approval_requested':
      return pretty(d.arguments ?? {});
    case 'tool.result':
      return pretty(d.output ?? '');
    case 'message.completed':
    case 'message.user':
      return String(d.content ?? '');
    case 'output':
      return String(d.data ?? '').replace(ANSI, '');
    default:
      return pretty(d);
  }
}

/** The CSS class of an event type: `x.*` share one colour. */
export function typeClass(type: string): string {
  if (type.startsWith('x.')) return 'ev-x';
  return `ev-${type.replace(/[^a-z]+/g, '-')}`;
}
