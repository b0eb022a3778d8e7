// One gRPC Watch stream: create/cancel/progress requests in, WatchResponse objects out, in the
// order etcd's serverWatchStream produces them. The gRPC layer only translates: it feeds
// requests to this object and writes out what next() yields, pausing while its socket is full.
import { EtcdError } from "@etcd-ts/api";
import type { Event } from "./events.js";
import { fragmentResponse } from "./fragment.js";
import type { RangeEnd } from "./interval-index.js";
import {
  INVALID_WATCH_ID,
  type WatchCreateRequest,
  WatchFilter,
  type WatchResponse,
  watchResponse,
} from "./watch-response.js";
import type { WatchableStore } from "./watchable-store.js";
import type { Watcher, WatcherSink } from "./watcher.js";

/** etcd's mvcc errors, sent as cancel_reason of a refused create. */
export const WATCH_RANGE_EMPTY = "mvcc: watcher range is empty";
export const WATCH_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream";

/** etcd's default --max-request-bytes (1.5 MiB) plus its gRPC overhead allowance. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1.5 * 1024 * 1024 + 512;

export interface ProgressTimer {
  setInterval(callback: () => void, intervalMs: number): unknown;
  clearInterval(handle: unknown): void;
}

export interface WatchStreamOptions {
  /**
   * Event responses queued before watchers fall back to catch-up: etcd's chanBufLen (128), to
   * which the stream adds one per watcher it holds. etcd drains its channel from another
   * goroutine while notifying; here notify runs to completion first, so one revision reaching
   * every watcher of a crowded stream would otherwise overflow it by itself.
   */
  maxPendingEventResponses?: number;
  /** Limit used to fragment responses of watches created with fragment=true. */
  maxResponseBytes?: number;
  /** etcd's --experimental-watch-progress-notify-interval (10 min); 0 disables the timer. */
  progressIntervalMs?: number;
  timer?: ProgressTimer;
  /** Source of the interval's jitter (up to a tenth), so streams opened together spread out. */
  random?: () => number;
}

const defaultTimer: ProgressTimer = {
  setInterval: (callback, intervalMs) => setInterval(callback, intervalMs).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

export class WatchStream implements WatcherSink {
  private readonly watchers = new Map<number, Watcher>();
  /** For progress_notify watchers: true when nothing was sent to it since the last tick. */
  private readonly idleSinceTick = new Map<number, boolean>();
  private readonly fragmenting = new Set<number>();
  private readonly basePending: number;
  private readonly maxResponseBytes: number;
  private readonly timer: ProgressTimer;
  private readonly progressHandle: unknown = null;
  private nextWatchId = 0;
  private queue: WatchResponse[] = [];
  /**
   * Whether each queued response counts against maxPendingEventResponses (event and progress
   * answers, not control ones): beside the queue rather than in a wrapper object per response.
   */
  private queueBounded: boolean[] = [];
  private queueHead = 0;
  private boundedPending = 0;
  private waiter: ((response: WatchResponse | undefined) => void) | null = null;
  /** A consumer that polls (the gRPC layer): told when the queue stops being empty. */
  private readable: (() => void) | null = null;
  private closed = false;

  constructor(
    private readonly store: WatchableStore,
    options: WatchStreamOptions = {},
  ) {
    this.basePending = options.maxPendingEventResponses ?? 128;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.timer = options.timer ?? defaultTimer;
    const interval = options.progressIntervalMs ?? 10 * 60 * 1000;
    if (interval > 0) {
      const jitter = Math.floor((options.random ?? Math.random)() * (interval / 10));
      this.progressHandle = this.timer.setInterval(() => this.tickProgress(), interval + jitter);
    }
  }

  get watchCount(): number {
    return this.watchers.size;
  }

  /** Responses waiting for the consumer. */
  get pendingCount(): number {
    return this.queue.length - this.queueHead;
  }

  // ---- requests ----

  create(request: WatchCreateRequest): void {
    if (this.closed) return;
    const revision = this.store.revision;
    const target = this.resolveTarget(request);
    if (typeof target === "string") {
      this.refuseCreate(target);
      return;
    }
    const { id, key, end } = target;
    // "created" is queued before the store can produce anything for this watcher.
    this.pushControl(watchResponse({ revision, watchId: id, created: true }));
    const options = {
      prevKv: request.prevKv,
      noPut: request.filters.includes(WatchFilter.NOPUT),
      noDelete: request.filters.includes(WatchFilter.NODELETE),
    };
    if (request.progressNotify) this.idleSinceTick.set(id, true);
    if (request.fragment) this.fragmenting.add(id);
    const watcher = this.store.watch(id, key, end, request.startRevision, options, this);
    this.watchers.set(id, watcher);
  }

  /** Answers a create etcd's way when it is refused (bad range, permission denied...). */
  refuseCreate(reason: string): void {
    if (this.closed) return;
    this.pushControl(
      watchResponse({
        revision: this.store.revision,
        watchId: INVALID_WATCH_ID,
        created: true,
        canceled: true,
        cancelReason: reason,
      }),
    );
  }

  /** The watch ID and key range a create asks for, or the reason etcd would refuse it. */
  private resolveTarget(
    request: WatchCreateRequest,
  ): { id: number; key: string; end: RangeEnd | undefined } | string {
    if (request.startRevision < 0) return new EtcdError("Compacted").message;
    // etcd's conventions: an empty key means the smallest key (\0); an empty range_end a single
    // key; a range_end of \0 every key from `key` on.
    const key = request.key.length === 0 ? "\0" : request.key.toString("latin1");
    let end: RangeEnd | undefined;
    if (request.rangeEnd.length === 0) end = undefined;
    else if (request.rangeEnd.length === 1 && request.rangeEnd[0] === 0) end = null;
    else {
      end = request.rangeEnd.toString("latin1");
      if (key >= end) return WATCH_RANGE_EMPTY;
    }
    let id = request.watchId;
    if (id === 0) {
      while (this.watchers.has(this.nextWatchId)) this.nextWatchId++;
      id = this.nextWatchId++;
    } else if (this.watchers.has(id)) {
      return WATCH_DUPLICATE_ID;
    }
    return { id, key, end };
  }

  /** Unknown IDs are ignored, as etcd does. */
  cancel(watchId: number): void {
    const watcher = this.watchers.get(watchId);
    if (watcher === undefined || this.closed) return;
    this.forget(watcher);
    this.pushControl(watchResponse({ revision: this.store.revision, watchId, canceled: true }));
  }

  /**
   * A WatchProgressRequest: answered (watch ID -1, current revision) only when every watcher
   * of the stream is synced, because the revision promises that nothing at or below it is
   * still on its way. Otherwise nothing is sent, as in etcd; the client asks again.
   */
  requestProgress(): void {
    if (this.closed || this.watchers.size === 0) return;
    if (!this.store.allSynced(this.watchers.values())) return;
    this.pushBounded(watchResponse({ revision: this.store.revision, watchId: INVALID_WATCH_ID }));
  }

  /**
   * The periodic progress_notify check: a watcher that got nothing since the previous tick is
   * told the current revision, if it is synced.
   */
  tickProgress(): void {
    if (this.closed) return;
    for (const [id, idle] of this.idleSinceTick) {
      const watcher = this.watchers.get(id);
      if (idle && watcher !== undefined && watcher.state === "synced") {
        this.pushBounded(watchResponse({ revision: this.store.revision, watchId: id }));
      }
      this.idleSinceTick.set(id, true);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.progressHandle !== null) this.timer.clearInterval(this.progressHandle);
    for (const watcher of this.watchers.values()) this.store.cancel(watcher);
    this.watchers.clear();
    this.queue = [];
    this.queueBounded = [];
    this.queueHead = 0;
    this.boundedPending = 0;
    const waiter = this.waiter;
    this.waiter = null;
    this.readable = null;
    waiter?.(undefined);
  }

  // ---- responses, consumer side ----

  /** The next response if one is ready. */
  poll(): WatchResponse | undefined {
    if (this.queueHead >= this.queue.length) return undefined;
    const response = this.queue[this.queueHead]!;
    const bounded = this.queueBounded[this.queueHead]!;
    this.queueHead++;
    if (this.queueHead === this.queue.length) {
      // Emptied: start again at the front (the arrays keep their storage).
      this.queue.length = 0;
      this.queueBounded.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueBounded = this.queueBounded.slice(this.queueHead);
      this.queueHead = 0;
    }
    if (bounded) this.releaseSlot();
    return response;
  }

  /** Waits for the next response; undefined once the stream is closed. One reader at a time. */
  next(): Promise<WatchResponse | undefined> {
    const ready = this.poll();
    if (ready !== undefined || this.closed) return Promise.resolve(ready);
    if (this.waiter !== null) throw new Error("WatchStream.next() called while another call is waiting");
    if (this.readable !== null) throw new Error("WatchStream.next() on a stream read through onReadable()");
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /**
   * Polling instead of next(): `listener` runs (synchronously, from whatever queued the
   * response: often the apply path, so it must only schedule work) each time a response lands
   * in an empty queue. The consumer then polls until undefined; a consumer that stops early (a
   * full socket) polls again on its own, since a non-empty queue does not call it again.
   */
  onReadable(listener: () => void): void {
    if (this.waiter !== null) throw new Error("WatchStream.onReadable() while next() is waiting");
    this.readable = listener;
    if (this.pendingCount > 0) listener();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchResponse> {
    for (;;) {
      const response = await this.next();
      if (response === undefined) return;
      yield response;
    }
  }

  // ---- WatcherSink, called by the store ----

  hasRoom(): boolean {
    return !this.closed && this.boundedPending < this.maxPending;
  }

  private get maxPending(): number {
    return this.basePending + this.watchers.size;
  }

  deliverEvents(watcher: Watcher, events: Event[], revision: number): boolean {
    if (!this.hasRoom()) return false;
    if (this.idleSinceTick.has(watcher.id)) this.idleSinceTick.set(watcher.id, false);
    // A literal rather than watchResponse(): this runs once per watcher per applied event.
    const response: WatchResponse = {
      revision,
      watchId: watcher.id,
      created: false,
      canceled: false,
      compactRevision: 0,
      cancelReason: "",
      fragment: false,
      events,
    };
    if (!this.fragmenting.has(watcher.id)) {
      this.pushBounded(response);
      return true;
    }
    // One logical answer: its fragments take one slot and are never separated.
    const pieces = fragmentResponse(response, this.maxResponseBytes);
    for (let i = 0; i < pieces.length - 1; i++) this.push(pieces[i]!, false);
    this.pushBounded(pieces[pieces.length - 1]);
    return true;
  }

  deliverCompacted(watcher: Watcher, compactRevision: number): void {
    this.forget(watcher);
    // etcd's compaction answer carries no header revision (its mvcc leaves it 0).
    this.pushControl(watchResponse({ revision: 0, watchId: watcher.id, canceled: true, compactRevision }));
  }

  // ---- internals ----

  private forget(watcher: Watcher): void {
    this.store.cancel(watcher);
    this.watchers.delete(watcher.id);
    this.idleSinceTick.delete(watcher.id);
    this.fragmenting.delete(watcher.id);
  }

  /** Control answers (created, canceled) are never dropped; the client's requests bound them. */
  private pushControl(response: WatchResponse): void {
    this.push(response, false);
  }

  private pushBounded(response: WatchResponse): void {
    if (!this.hasRoom()) return;
    this.boundedPending++;
    this.push(response, true);
  }

  private push(response: WatchResponse, bounded: boolean): void {
    const waiter = this.waiter;
    if (waiter !== null && this.queueHead >= this.queue.length) {
      this.waiter = null;
      if (bounded) this.releaseSlot();
      waiter(response);
      return;
    }
    this.queue.push(response);
    this.queueBounded.push(bounded);
    if (this.readable !== null && this.queue.length - this.queueHead === 1) this.readable();
  }

  private releaseSlot(): void {
    const wasFull = this.boundedPending >= this.maxPending;
    this.boundedPending--;
    // Watchers parked in catch-up because this stream was full can move again.
    if (wasFull) this.store.wake();
  }
}
