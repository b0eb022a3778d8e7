// The watch layer on the real store: mvcc's history as the catch-up source, and mvcc's apply
// notifications as the feed of synced watchers.
import type { MvccStore, Event as StoredEvent } from "../mvcc/mod.js";
import type { Event } from "./events.js";
import {
  type EventHistory,
  type HistoryRead,
  type HistoryReadOptions,
  WatchableStore,
  type WatchableStoreOptions,
  type WatchedRange,
} from "./watchable-store.js";

/** Every key: etcd's "\0" key with a "\0" range end. */
const ALL_KEYS = Buffer.from([0]);

/** mvcc's events always carry a kv; the generated type just cannot say so. */
function asWatchEvents(events: StoredEvent[]): Event[] {
  for (const event of events) {
    if (event.kv === undefined) throw new Error("mvcc delivered an event without a key-value");
  }
  return events as Event[];
}

/** mvcc's bounds of a watched range: an unbounded end is its empty string ("from key"). */
function keyBoundsOf(range: WatchedRange): { start: string; end: string | undefined } {
  return { start: range.key, end: range.end === null ? "" : range.end };
}

export class MvccEventHistory implements EventHistory {
  constructor(private readonly store: MvccStore) {}

  compactedRevision(): number {
    return this.store.compactRevision;
  }

  async eventsBetween(
    fromRevision: number,
    toRevision: number,
    options: HistoryReadOptions,
  ): Promise<HistoryRead> {
    // One consistent RocksDB view over all keys, filtered by the round's watcher group, so one
    // read serves every watcher of the round whatever ranges they watch.
    const result = await this.store.history({
      fromRevision,
      toRevision,
      key: ALL_KEYS,
      rangeEnd: ALL_KEYS,
      prevKv: options.withPrevKv,
      ...(options.matches === undefined ? {} : { matches: options.matches }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
      ...(options.ranges === undefined ? {} : { ranges: options.ranges.map(keyBoundsOf) }),
    });
    return { events: asWatchEvents(result.events), nextRevision: result.nextRevision };
  }
}

export interface ConnectedWatchableStore {
  watchable: WatchableStore;
  /** Stops the feed and the catch-up loop. */
  disconnect(): void;
}

/**
 * A WatchableStore fed by `store`: subscribed in the same tick as it reads the current revision,
 * so no revision falls between. prev_kv is requested from mvcc for every write, since any
 * watcher may want it (mvcc reads the previous versions in the applying batch).
 */
export function connectWatchableStore(
  store: MvccStore,
  options: Omit<WatchableStoreOptions, "history" | "currentRevision"> = {},
): ConnectedWatchableStore {
  const watchable = new WatchableStore({
    ...options,
    history: new MvccEventHistory(store),
    currentRevision: store.revision,
  });
  const unsubscribe = store.subscribe((txn) => watchable.notify(txn.revision, asWatchEvents(txn.events)), {
    prevKv: true,
  });
  watchable.start();
  return {
    watchable,
    disconnect: () => {
      unsubscribe();
      watchable.stop();
    },
  };
}
