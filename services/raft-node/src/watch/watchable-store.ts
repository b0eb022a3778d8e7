// etcd's watchable store: every watcher is either synced (it has seen every applied revision and
// receives new ones as they are applied) or unsynced (it is behind and catches up from the
// store's history in bounded rounds). A watcher whose stream is full is moved back to unsynced
// rather than buffered, so a slow client never stalls the apply path nor grows memory.
//
// Catch-up reads history in one pass per round, as etcd's syncWatchers does: the read is
// filtered by the round's watchers as it goes (only matching events are kept, so memory is
// bounded by the limit, not by how far behind the watchers are) and stops after
// maxEventsPerSync matching events. A round that advanced its watchers is followed at once by
// the next; the history read's own chunked, asynchronous iteration keeps the event loop free
// for applies and other streams meanwhile.
import { isEtcdError } from "@etcd-ts/api";
import type { Event } from "./events.js";
import type { RangeEnd } from "./interval-index.js";
import { Watcher, type WatcherOptions, type WatcherSink } from "./watcher.js";
import { WatcherGroup } from "./watcher-group.js";

/** What the watch layer needs from mvcc to catch watchers up. */
export interface EventHistory {
  /** Revisions below this one are gone; a watch starting there is answered with "compacted". */
  compactedRevision(): number;
  /**
   * The events of revisions `fromRevision..toRevision` (inclusive) whose key passes `matches`
   * (every key without it), in revision then sub-revision order; a DELETE's kv carries the
   * deletion revision as modRevision. With `withPrevKv`, each event whose key existed before
   * carries that previous version. With `limit`, stops once that many events are collected, at
   * the end of a revision (a revision is never split). Rejects with EtcdError("Compacted") when
   * `fromRevision` has been compacted meanwhile.
   */
  eventsBetween(fromRevision: number, toRevision: number, options: HistoryReadOptions): Promise<HistoryRead>;
}

export interface HistoryReadOptions {
  withPrevKv: boolean;
  /** Keys as latin1 strings (one char per byte), as watchers hold them. */
  matches?: (key: string) => boolean;
  limit?: number;
  /**
   * The ranges the round's watchers watch (every key `matches` passes is in one): a history
   * that can find their keys' revisions directly need not read the others'.
   */
  ranges?: readonly WatchedRange[];
}

/** A watcher's range as it holds it: no end, one key; a null end, every key from `key` on. */
export interface WatchedRange {
  key: string;
  end: RangeEnd | undefined;
}

export interface HistoryRead {
  events: Event[];
  /** Every revision below this one was read: `toRevision + 1` unless the read ended early (the limit, or a defragmentation waiting). */
  nextRevision: number;
}

export interface SyncTimer {
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface WatchableStoreOptions {
  history: EventHistory;
  /** The revision already applied and durable when the store starts (nothing notified below it). */
  currentRevision: number;
  /** etcd's maxWatchersPerSync. */
  maxWatchersPerSync?: number;
  /**
   * Matching events per catch-up round, never splitting a revision (etcd's watchBatchMaxRevs
   * bounds its batches the same way, counted over the events that match its watchers).
   */
  maxEventsPerSync?: number;
  /** How long the background loop waits before retrying watchers it could not advance (full streams). */
  retryIntervalMs?: number;
  timer?: SyncTimer;
  onSyncError?: (error: unknown) => void;
}

const defaultTimer: SyncTimer = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class WatchableStore {
  private readonly synced = new WatcherGroup();
  private readonly unsynced = new WatcherGroup();
  private readonly history: EventHistory;
  private readonly maxWatchersPerSync: number;
  private readonly maxEventsPerSync: number;
  private readonly retryIntervalMs: number;
  private readonly timer: SyncTimer;
  private readonly onSyncError: (error: unknown) => void;
  /**
   * The last revision handed to notify(). History reads never go past it: mvcc may already
   * count a revision as current before its observer fires, and a watcher declared synced at a
   * revision it has not been notified of would miss it.
   */
  private notifiedRevision: number;
  private syncInFlight: Promise<number> | null = null;
  /** Whether the last round moved any watcher forward (then the next one runs at once). */
  private lastRoundAdvanced = false;
  private running = false;
  private timerHandle: unknown = null;
  private wakeRequested = false;
  private prevKvWatchers = 0;

  constructor(options: WatchableStoreOptions) {
    this.history = options.history;
    this.notifiedRevision = options.currentRevision;
    this.maxWatchersPerSync = options.maxWatchersPerSync ?? 512;
    this.maxEventsPerSync = options.maxEventsPerSync ?? 1000;
    this.retryIntervalMs = options.retryIntervalMs ?? 100;
    this.timer = options.timer ?? defaultTimer;
    this.onSyncError =
      options.onSyncError ?? ((error) => process.emitWarning(`watch catch-up failed: ${String(error)}`));
  }

  /** Whether any watcher asks for prev_kv (the store reads overwritten values only then). */
  wantsPrevKv(): boolean {
    return this.prevKvWatchers > 0;
  }

  /** The latest revision every synced watcher has been given. */
  get revision(): number {
    return this.notifiedRevision;
  }

  get syncedCount(): number {
    return this.synced.size;
  }

  get unsyncedCount(): number {
    return this.unsynced.size;
  }

  /**
   * Registers a watcher. `startRevision` 0 (or any future revision) makes it synced at once;
   * a past revision makes it unsynced until catch-up reaches the present. A start below the
   * compaction is reported by the first catch-up round, after the stream's "created" answer,
   * as etcd does.
   */
  watch(
    id: number,
    key: string,
    end: RangeEnd | undefined,
    startRevision: number,
    options: WatcherOptions,
    sink: WatcherSink,
  ): Watcher {
    const current = this.notifiedRevision;
    if (options.prevKv) this.prevKvWatchers++;
    if (startRevision === 0 || startRevision > current) {
      const watcher = new Watcher(id, key, end, Math.max(current + 1, startRevision), options, sink);
      watcher.state = "synced";
      this.synced.add(watcher);
      return watcher;
    }
    const watcher = new Watcher(id, key, end, startRevision, options, sink);
    this.unsynced.add(watcher);
    this.wake();
    return watcher;
  }

  cancel(watcher: Watcher): void {
    if (watcher.state === "canceled") return;
    if (watcher.options.prevKv) this.prevKvWatchers--;
    if (watcher.state === "synced") this.synced.delete(watcher);
    else if (watcher.state === "unsynced") this.unsynced.delete(watcher);
    watcher.state = "canceled";
  }

  /**
   * Feeds one applied revision's events (called by mvcc's observer once the revision is
   * durable, in revision order). Runs on the apply path: it matches events through the synced
   * group's indexes and queues responses, and never waits.
   */
  notify(revision: number, events: readonly Event[], prevKvsAttached = true): void {
    if (revision <= this.notifiedRevision) {
      throw new Error(`watch notify out of order: revision ${revision} after ${this.notifiedRevision}`);
    }
    this.notifiedRevision = revision;
    if (this.synced.size === 0 || events.length === 0) return;

    const withoutPrevKv = new PrevKvStripper();
    let fellBehind = false;
    const deliver = (watcher: Watcher, matched: Event[]) => {
      const events = watcher.filter(watcher.options.prevKv ? matched : withoutPrevKv.strip(matched));
      // Events read without prev_kv (no prev_kv watcher when they were applied) cannot serve
      // one: catch-up reads them again from history, prev_kv included.
      const needsHistory = watcher.options.prevKv && !prevKvsAttached && events.length > 0;
      if (needsHistory || (events.length > 0 && !watcher.sink.deliverEvents(watcher, events, revision))) {
        this.synced.delete(watcher);
        watcher.state = "unsynced";
        watcher.minRevision = revision;
        this.unsynced.add(watcher);
        fellBehind = true;
        return;
      }
      watcher.minRevision = revision + 1;
    };

    if (events.length === 1) {
      // The common case (a put or a single delete): no per-watcher batch to build, and every
      // watcher shares one events array. Watchers are collected first because delivery may move
      // them out of the group being iterated.
      const matched: Watcher[] = [];
      this.synced.forEachWatching(events[0].kv.key.toString("latin1"), (watcher) => {
        if (watcher.minRevision <= revision) matched.push(watcher);
      });
      const shared = [events[0]];
      for (const watcher of matched) deliver(watcher, shared);
    } else {
      const batches = new Map<Watcher, Event[]>();
      for (const event of events) {
        this.synced.forEachWatching(event.kv.key.toString("latin1"), (watcher) => {
          // A watch created with a future start revision waits for it.
          if (watcher.minRevision > revision) return;
          const batch = batches.get(watcher);
          if (batch === undefined) batches.set(watcher, [event]);
          else batch.push(event);
        });
      }
      for (const [watcher, matched] of batches) deliver(watcher, matched);
    }
    if (fellBehind) this.wake();
  }

  /** Whether every given watcher is synced (a progress notification may then be sent). */
  allSynced(watchers: Iterable<Watcher>): boolean {
    for (const watcher of watchers) if (watcher.state !== "synced") return false;
    return true;
  }

  /**
   * After the state machine is replaced by a snapshot the history may have jumped (or moved
   * under watchers); every synced watcher re-checks it through catch-up, as etcd's Restore does.
   */
  restored(currentRevision: number): void {
    this.notifiedRevision = currentRevision;
    for (const watcher of [...this.synced]) {
      this.synced.delete(watcher);
      watcher.state = "unsynced";
      this.unsynced.add(watcher);
    }
    this.wake();
  }

  /**
   * One catch-up round: up to maxWatchersPerSync unsynced watchers whose streams have room,
   * history read from the oldest of them toward the present until maxEventsPerSync events
   * match. Rounds never overlap; a call during a round returns that round. Resolves to the
   * number of watchers still unsynced.
   */
  syncOnce(): Promise<number> {
    if (this.syncInFlight === null) {
      this.syncInFlight = this.syncRound().finally(() => {
        this.syncInFlight = null;
      });
    }
    return this.syncInFlight;
  }

  /** Starts the background catch-up loop. */
  start(): void {
    this.running = true;
    this.wake();
  }

  stop(): void {
    this.running = false;
    if (this.timerHandle !== null) this.timer.clearTimeout(this.timerHandle);
    this.timerHandle = null;
  }

  /** Asks the background loop for a round now (new unsynced watcher, a stream drained). */
  wake(): void {
    if (!this.running) return;
    if (this.syncInFlight !== null) {
      this.wakeRequested = true;
      return;
    }
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timerHandle !== null) this.timer.clearTimeout(this.timerHandle);
    this.timerHandle = this.timer.setTimeout(() => {
      this.timerHandle = null;
      void this.loopOnce();
    }, delayMs);
  }

  private async loopOnce(): Promise<void> {
    if (!this.running || this.unsynced.size === 0) return;
    let after = this.unsynced.size;
    this.wakeRequested = false;
    this.lastRoundAdvanced = false;
    try {
      after = await this.syncOnce();
    } catch (error) {
      this.onSyncError(error);
    }
    if (!this.running || after === 0) return;
    // Progress made, or something changed during the round: go again at once (the timer
    // yields to applies and I/O in between); otherwise (every stream full) wait for a drain
    // or the retry interval.
    this.schedule(this.lastRoundAdvanced || this.wakeRequested ? 0 : this.retryIntervalMs);
  }

  private async syncRound(): Promise<number> {
    const current = this.notifiedRevision;
    const compacted = this.history.compactedRevision();
    const chosen: Watcher[] = [];
    let fromRevision = Number.POSITIVE_INFINITY;
    for (const watcher of this.unsynced) {
      if (chosen.length >= this.maxWatchersPerSync) break;
      if (watcher.minRevision < compacted) {
        this.unsynced.delete(watcher);
        watcher.state = "canceled";
        if (watcher.options.prevKv) this.prevKvWatchers--;
        watcher.sink.deliverCompacted(watcher, compacted);
        continue;
      }
      if (watcher.minRevision > current) {
        // Only after restored(): the watcher is already ahead of the restored history.
        this.unsynced.delete(watcher);
        watcher.state = "synced";
        this.synced.add(watcher);
        continue;
      }
      if (!watcher.sink.hasRoom()) continue;
      chosen.push(watcher);
      fromRevision = Math.min(fromRevision, watcher.minRevision);
    }
    if (chosen.length === 0) return this.unsynced.size;

    const group = new WatcherGroup();
    for (const watcher of chosen) group.add(watcher);
    const withPrevKv = chosen.some((watcher) => watcher.options.prevKv);

    let history: Event[];
    let toRevision: number;
    try {
      const read = await this.history.eventsBetween(fromRevision, current, {
        withPrevKv,
        matches: (key) => group.watches(key),
        limit: this.maxEventsPerSync,
        ranges: chosen,
      });
      history = read.events;
      toRevision = Math.min(current, read.nextRevision - 1);
    } catch (error) {
      // Compacted while reading: the next round answers the affected watchers.
      if (isEtcdError(error, "Compacted")) {
        this.lastRoundAdvanced = true;
        return this.unsynced.size;
      }
      throw error;
    }

    const batches = new Map<Watcher, Event[]>();
    for (const event of history) {
      group.forEachWatching(event.kv.key.toString("latin1"), (watcher) => {
        if (event.kv.modRevision < watcher.minRevision) return;
        const batch = batches.get(watcher);
        if (batch === undefined) batches.set(watcher, [event]);
        else batch.push(event);
      });
    }

    const compactedAfterRead = this.history.compactedRevision();
    const withoutPrevKv = new PrevKvStripper();
    for (const watcher of chosen) {
      // Canceled, or compacted past it while reading (the read may then have missed rows).
      if (watcher.state !== "unsynced" || watcher.minRevision < compactedAfterRead) continue;
      const matched = batches.get(watcher);
      if (matched !== undefined) {
        const events = watcher.filter(watcher.options.prevKv ? matched : withoutPrevKv.strip(matched));
        // The header says how far this answer reaches; a chunk ends before the present, and a
        // client resuming from it must not skip what the next chunk brings.
        if (events.length > 0 && !watcher.sink.deliverEvents(watcher, events, toRevision)) continue;
      }
      // A watcher starting beyond this chunk keeps its own start.
      if (toRevision + 1 > watcher.minRevision) this.lastRoundAdvanced = true;
      watcher.minRevision = Math.max(watcher.minRevision, toRevision + 1);
      if (watcher.minRevision > this.notifiedRevision) {
        this.unsynced.delete(watcher);
        watcher.state = "synced";
        this.synced.add(watcher);
      }
    }
    return this.unsynced.size;
  }
}

/** Copies of events without prevKv, made once per event however many watchers receive it. */
class PrevKvStripper {
  private readonly copies = new Map<Event, Event>();
  /** Watchers handed the same shared array get the same stripped array back. */
  private readonly strippedArrays = new Map<Event[], Event[]>();

  strip(events: Event[]): Event[] {
    const cached = this.strippedArrays.get(events);
    if (cached !== undefined) return cached;
    const stripped = this.stripUncached(events);
    this.strippedArrays.set(events, stripped);
    return stripped;
  }

  private stripUncached(events: Event[]): Event[] {
    let result: Event[] | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i];
      if (event.prevKv === undefined) {
        result?.push(event);
        continue;
      }
      if (result === undefined) result = events.slice(0, i);
      let copy = this.copies.get(event);
      if (copy === undefined) {
        copy = { type: event.type, kv: event.kv };
        this.copies.set(event, copy);
      }
      result.push(copy);
    }
    return result ?? events;
  }
}
