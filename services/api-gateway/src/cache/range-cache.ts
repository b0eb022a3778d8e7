// A cache of Range answers at the current revision, kept current by one watch over the whole
// key space. Pure: the watch feed (range-cache-feed.ts) and the unary path call in; no sockets.
//
// Why serving from it is safe:
// - An answer at header revision Rr reflects every write up to Rr. It is stored only when
//   Rr >= watchedRevision: every later write then reaches the watch after the answer was
//   stored, and removes it. An older answer could have missed a write the watch already
//   delivered, so it is refused. An entry still present therefore shows the store as it is
//   at max(Rr, watchedRevision).
// - Serializable reads, read-your-writes through this gateway: once a write is acknowledged
//   at W, an answer older than W may predate it, and its invalidation may still be on the
//   way. Such an answer is served only once the watch has delivered W
//   (max(Rr, watchedRevision) >= W).
// - Linearizable reads: the caller first obtains a read revision R from a read barrier
//   (read-barrier.ts: a linearizable read the leader confirmed, sent after this read
//   arrived), so every write acknowledged to anyone before the read began is at or below R.
//   The entry is served only when max(Rr, watchedRevision) >= R, with that revision in its
//   header, as a member reading at that revision would answer.
// - Nothing is stored or served while the watch is not established; losing it clears all.

import { type CacheableRange, peekCacheableRange, withHeaderRevision } from "../wire/etcd-messages.js";

export interface RangeCacheOptions {
  maxEntries: number;
  maxBytes: number;
  /**
   * The largest single answer taken (default: maxBytes). A full list of tens of MB would push
   * out everything else, and is relayed to its client as it arrives instead of being kept.
   */
  maxEntryBytes?: number;
  /** Range (not single-key) entries are scanned on every event: keep them few. */
  maxRangeEntries: number;
}

export const DEFAULT_RANGE_CACHE_OPTIONS: RangeCacheOptions = {
  maxEntries: 10_000,
  maxBytes: 64 * 1024 * 1024,
  maxEntryBytes: 8 * 1024 * 1024,
  maxRangeEntries: 256,
};

/** A cacheable request, from the lookup that missed to the offer of its answer. */
export interface RangeCacheTicket {
  /** The RangeRequest bytes as latin1: identical requests, identical answers. */
  readonly id: string;
  readonly range: CacheableRange;
}

interface Entry {
  readonly id: string;
  readonly range: CacheableRange;
  readonly response: Buffer;
  readonly revision: number;
  readonly bytes: number;
  /** RangeCache.sets when the entry last went to the back of `entries` (touch). */
  order: number;
}

// Map slots, the entry object and the strings' headers: a rough, fixed charge per entry.
const ENTRY_OVERHEAD_BYTES = 200;
const POOL_BYTES = 8 * 1024;

export class RangeCache {
  /** Every event at or below this revision has been applied to invalidation. */
  watchedRevision = 0;
  /** The cache's watch is established. */
  live = false;
  /** The highest revision of a write this gateway has acknowledged to a client. */
  floor = 0;

  hits = 0;
  misses = 0;
  invalidations = 0;

  /** Every entry, least recently used first (roughly: see touch). */
  private readonly entries = new Map<string, Entry>();
  /** Entries set into `entries` so far (added or moved to the back). */
  private sets = 0;
  private readonly singleKey = new Map<string, Set<Entry>>();
  private readonly ranges = new Set<Entry>();
  private bytes = 0;
  /** Linearizable reads waiting for the watch to deliver their read revision. */
  private deliveryWaiters: { revision: number; resolve: () => void }[] = [];

  constructor(private readonly options: RangeCacheOptions = DEFAULT_RANGE_CACHE_OPTIONS) {}

  get size(): number {
    return this.entries.size;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  /**
   * The request's ticket when its answer may come from or go into the cache; undefined
   * when it must reach a member untouched: at a past revision, or made with auth metadata
   * (the answer depends on the caller's permissions).
   */
  ticketFor(request: Buffer, carriesAuth: boolean): RangeCacheTicket | undefined {
    if (carriesAuth) return undefined;
    const range = peekCacheableRange(request);
    if (range === undefined) return undefined;
    return { id: request.toString("latin1"), range };
  }

  /** The cached answer to a serializable read, if any (counted as a hit or a miss). */
  lookup(ticket: RangeCacheTicket): Buffer | undefined {
    const entry = this.live ? this.entries.get(ticket.id) : undefined;
    if (entry === undefined || Math.max(entry.revision, this.watchedRevision) < this.floor) {
      this.misses++;
      return undefined;
    }
    this.touch(entry);
    this.hits++;
    return entry.response;
  }

  /** Whether an answer to the ticket's request is held (a linearizable read then asks for R). */
  holds(ticket: RangeCacheTicket): boolean {
    return this.live && this.entries.has(ticket.id);
  }

  /**
   * The cached answer to a linearizable read whose read barrier returned `readRevision`, with
   * the revision it shows in its header; undefined (a miss) when the entry is gone or the
   * watch has not yet delivered `readRevision`.
   */
  lookupLinearizable(ticket: RangeCacheTicket, readRevision: number): Buffer | undefined {
    const entry = this.live ? this.entries.get(ticket.id) : undefined;
    const shows = entry === undefined ? 0 : Math.max(entry.revision, this.watchedRevision);
    if (entry === undefined || shows < readRevision) {
      this.misses++;
      return undefined;
    }
    this.touch(entry);
    this.hits++;
    return shows === entry.revision ? entry.response : withHeaderRevision(entry.response, shows);
  }

  /**
   * Resolves once the watch has delivered `revision` (at once if it has), or when the watch is
   * lost: the caller looks again either way.
   */
  delivered(revision: number): Promise<void> {
    if (!this.live || this.watchedRevision >= revision) return Promise.resolve();
    return new Promise((resolve) => this.deliveryWaiters.push({ revision, resolve }));
  }

  /** The largest answer the cache takes; a larger one is never kept for it. */
  get maxEntryBytes(): number {
    return Math.min(this.options.maxEntryBytes ?? this.options.maxBytes, this.options.maxBytes);
  }

  /** A member's successful answer to a ticket's request, at header revision `revision`. */
  offer(ticket: RangeCacheTicket, response: Buffer, revision: number): boolean {
    if (!this.live || revision < this.watchedRevision) return false;
    const isRange = ticket.range.rangeEnd !== "";
    const previous = this.entries.get(ticket.id);
    if (previous !== undefined) {
      if (previous.revision >= revision) return false;
      this.remove(previous);
    }
    if (isRange && this.ranges.size >= this.options.maxRangeEntries) return false;
    // A view into a much larger buffer (a socket read) would keep all of it alive,
    // unaccounted for; Node's 8 KiB allocation pool is shared anyway.
    const owned =
      response.buffer.byteLength > Math.max(POOL_BYTES, 2 * response.length)
        ? Buffer.from(response)
        : response;
    const bytes = owned.length + 2 * (ticket.id.length + ticket.range.key.length) + ENTRY_OVERHEAD_BYTES;
    if (bytes > this.maxEntryBytes) return false;
    const entry: Entry = { id: ticket.id, range: ticket.range, response: owned, revision, bytes, order: 0 };
    entry.order = ++this.sets;
    this.entries.set(entry.id, entry);
    this.bytes += bytes;
    if (isRange) {
      this.ranges.add(entry);
    } else {
      let sameKey = this.singleKey.get(entry.range.key);
      if (sameKey === undefined) {
        sameKey = new Set();
        this.singleKey.set(entry.range.key, sameKey);
      }
      sameKey.add(entry);
    }
    this.evictOverBounds();
    return true;
  }

  /** A write this gateway acknowledged to a client, at header revision `revision`. */
  acknowledgeWrite(revision: number): void {
    if (revision > this.floor) this.floor = revision;
  }

  /** The watch is established: events after `revision` will all be delivered. */
  goLive(revision: number): void {
    this.clear();
    this.live = true;
    this.watchedRevision = revision;
  }

  /** The watch is gone: nothing can be invalidated any more, so nothing may be kept. */
  goNotLive(): void {
    this.clear();
    this.live = false;
    this.watchedRevision = 0;
    this.wakeDeliveryWaiters();
  }

  /** A watch event on `key` (latin1): every entry whose range holds it goes. */
  invalidate(key: string): void {
    const sameKey = this.singleKey.get(key);
    if (sameKey !== undefined) {
      this.invalidations += sameKey.size;
      for (const entry of sameKey) this.remove(entry);
    }
    for (const entry of this.ranges) {
      if (!rangeHolds(entry.range, key)) continue;
      this.invalidations++;
      this.remove(entry);
    }
  }

  /** The watch has delivered every event at or below `revision`. */
  advance(revision: number): void {
    if (revision <= this.watchedRevision) return;
    this.watchedRevision = revision;
    if (this.deliveryWaiters.length > 0) this.wakeDeliveryWaiters();
  }

  private wakeDeliveryWaiters(): void {
    const waiting = this.deliveryWaiters;
    this.deliveryWaiters = [];
    for (const waiter of waiting) {
      if (!this.live || waiter.revision <= this.watchedRevision) waiter.resolve();
      else this.deliveryWaiters.push(waiter);
    }
  }

  /**
   * A hit moves its entry to the back of the eviction order, unless it is in the newer half
   * already (fewer than size/2 entries set after it): a hot entry is then moved once per
   * size/2 other sets, not on every hit (a Map delete and set per cached read was 5% of the
   * gateway's time answering one key from here). Eviction order only: which entries may be
   * served is not touched by this.
   */
  private touch(entry: Entry): void {
    if (this.sets - entry.order < this.entries.size / 2) return;
    this.entries.delete(entry.id);
    entry.order = ++this.sets;
    this.entries.set(entry.id, entry);
  }

  private clear(): void {
    this.entries.clear();
    this.singleKey.clear();
    this.ranges.clear();
    this.bytes = 0;
  }

  private remove(entry: Entry): void {
    if (this.entries.get(entry.id) !== entry) return;
    this.entries.delete(entry.id);
    this.bytes -= entry.bytes;
    if (entry.range.rangeEnd !== "") {
      this.ranges.delete(entry);
      return;
    }
    const sameKey = this.singleKey.get(entry.range.key);
    sameKey?.delete(entry);
    if (sameKey?.size === 0) this.singleKey.delete(entry.range.key);
  }

  private evictOverBounds(): void {
    for (const oldest of this.entries.values()) {
      if (this.entries.size <= this.options.maxEntries && this.bytes <= this.options.maxBytes) return;
      this.remove(oldest);
    }
  }
}

/**
 * etcd's range rules: an empty range_end is the key alone; "\0" is every key >= key (so
 * key "\0" with range_end "\0" is every key); otherwise [key, range_end).
 */
export function rangeHolds(range: Pick<CacheableRange, "key" | "rangeEnd">, key: string): boolean {
  if (range.rangeEnd === "") return key === range.key;
  if (range.rangeEnd === "\u0000") return key >= range.key;
  return key >= range.key && key < range.rangeEnd;
}
