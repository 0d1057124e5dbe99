// The events the console has rendered, kept per session in IndexedDB, so
// that a reload renders them again without asking the server and
// subscribes after the last one: every line once, none lost.

import type { AgentEvent } from './protocol';

const DB_NAME = 'switchboard-console';
const STORE = 'events';

function promised<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

const FLUSH_MS = 100;

function later(task: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, FLUSH_MS)).then(task);
}

function range(sessionId: string): IDBKeyRange {
  return IDBKeyRange.bound([sessionId, 0], [sessionId, Number.MAX_SAFE_INTEGER]);
}

export class EventCache {
  private pending: AgentEvent[] = [];
  private flushing: Promise<void> | null = null;

  private constructor(private readonly db: IDBDatabase | null) {}

  /** Opens the cache; without IndexedDB, a cache that keeps nothing. */
  static async open(): Promise<EventCache> {
    try {
      const request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = () => {
        request.result.createObjectStore(STORE, { keyPath: ['session_id', 'seq'] });
      };
      return new EventCache(await promised(request));
    } catch (error) {
      console.warn('IndexedDB is unavailable; a reload will replay sessions from the server', error);
      return new EventCache(null);
    }
  }

  /** Deletes everything every session left (signing out). */
  static async wipe(): Promise<void> {
    try {
      await promised(indexedDB.deleteDatabase(DB_NAME));
    } catch {
      // Nothing was stored.
    }
  }

  /**
   * The stored events of a session, oldest first, up to the first gap: the
   * events after it are asked of the server again.
   */
  async load(sessionId: string): Promise<AgentEvent[]> {
    if (!this.db) return [];
    const tx = this.db.transaction(STORE, 'readonly');
    const all = (await promised(tx.objectStore(STORE).getAll(range(sessionId)))) as AgentEvent[];
    let end = 0;
    while (end < all.length && (end === 0 || all[end].seq === all[end - 1].seq + 1)) end += 1;
    return all.slice(0, end);
  }

  /**
   * Stores an event. Writes are batched, one transaction at most every
   * FLUSH_MS: events not yet written when the page goes are asked of the
   * server again after a reload.
   */
  put(event: AgentEvent): void {
    if (!this.db) return;
    this.pending.push(event);
    this.flushing ??= later(() => this.flush());
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      const tx = this.db!.transaction(STORE, 'readwrite');
      const store = tx.objectStore(STORE);
      for (const event of batch) store.put(event);
      await done(tx);
    } catch (error) {
      console.warn('could not store events; a reload will replay them from the server', error);
    } finally {
      this.flushing = null;
      if (this.pending.length) this.flushing = later(() => this.flush());
    }
  }

  close(): void {
    this.db?.close();
  }

  /** Forgets a session (its log on the server no longer matches). */
  async clear(sessionId: string): Promise<void> {
    if (!this.db) return;
    this.pending = this.pending.filter((e) => e.session_id !== sessionId);
    const tx = this.db.transaction(STORE, 'readwrite');
    tx.objectStore(STORE).delete(range(sessionId));
    await done(tx);
  }
}
