import type { Event } from "./events.js";
import type { RangeEnd } from "./interval-index.js";

/**
 * Where a watcher's output goes: its WatchStream. Delivery never blocks; a full stream answers
 * false and the store moves the watcher back to catch-up from history instead of waiting.
 */
export interface WatcherSink {
  /** Whether an event response would be accepted now; catch-up skips watchers that would fail. */
  hasRoom(): boolean;
  /** Queues events for the watcher; false (and nothing queued) when the stream is full. */
  deliverEvents(watcher: Watcher, events: Event[], revision: number): boolean;
  /** The watcher's start revision has been compacted away: it is canceled. */
  deliverCompacted(watcher: Watcher, compactRevision: number): void;
}

export interface WatcherOptions {
  prevKv: boolean;
  noPut: boolean;
  noDelete: boolean;
}

/** Where a watcher is: each state is one membership in the store's bookkeeping. */
export type WatcherState = "synced" | "unsynced" | "canceled";

export class Watcher {
  state: WatcherState = "unsynced";

  /**
   * @param key first key watched, as a latin1 string (one char per byte)
   * @param end end of the range (exclusive); `undefined` for a single key, `null` for every key
   *   from `key` on
   * @param minRevision the lowest revision not yet delivered
   */
  constructor(
    readonly id: number,
    readonly key: string,
    readonly end: RangeEnd | undefined,
    public minRevision: number,
    readonly options: WatcherOptions,
    readonly sink: WatcherSink,
  ) {}

  matches(key: string): boolean {
    if (this.end === undefined) return key === this.key;
    return key >= this.key && (this.end === null || key < this.end);
  }

  /** Applies NOPUT/NODELETE; etcd sends nothing at all when filters leave no event. */
  filter(events: Event[]): Event[] {
    const { noPut, noDelete } = this.options;
    if (!noPut && !noDelete) return events;
    return events.filter((event) => (event.type === 0 ? !noPut : !noDelete));
  }
}
