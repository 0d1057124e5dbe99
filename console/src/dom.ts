// A small helper for building DOM trees without a framework: the console's
// views are append-mostly (an event log), so they update the DOM in place.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/**
 * `h('button', { class: 'primary', onclick: stop }, 'Stop')`.
 * Attributes named `on…` with a function value become event listeners;
 * `true` sets a boolean attribute, `false`/`null`/`undefined` leaves it out.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else if (value !== false && value !== null && value !== undefined) {
      el.setAttribute(name, String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replaces every child of `parent`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** Sets `el`'s text, and leaves the DOM alone when it is already that. */
export function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Keeps a scrollable element pinned to its bottom while content is added,
 * unless the reader scrolled up: call `before()` ahead of a change and
 * `after()` once it is made.
 */
export class StickToBottom {
  private pinned = true;
  constructor(private readonly el: HTMLElement) {}
  before(): void {
    const { scrollTop, scrollHeight, clientHeight } = this.el;
    this.pinned = scrollHeight - scrollTop - clientHeight < 24;
  }
  after(): void {
    if (this.pinned) this.el.scrollTop = this.el.scrollHeight;
  }
}
