// Keeps a RangeCache current through one gateway-internal watch over the whole key space,
// held in the WatchHub like a client's: the hub moves it to another member without gaps
// when its member fails, so only a cancellation (compaction, refusal) loses it.

import type { WatchHub } from "../watch/watch-hub.js";
import { decodeWatchResponse, type WatchCreate, watchEventKey } from "../wire/etcd-messages.js";
import type { RangeCache, RangeCacheTicket } from "./range-cache.js";

const WHOLE_KEY_SPACE: WatchCreate = {
  key: Buffer.from([0]),
  rangeEnd: Buffer.from([0]),
  startRevision: 0,
  progressNotify: true,
  filters: [],
  prevKv: false,
  watchId: 0,
  fragment: false,
};

/** After losing the watch, how long before asking again (a refusal would repeat at once). */
export const REWATCH_DELAY_MS = 1_000;

type HubClient = ReturnType<WatchHub["openClient"]>;

export class RangeCacheFeed {
  private client: HubClient | undefined;
  private rewatchAt = 0;
  /** The highest event revision of a fragmented response still being received. */
  private fragmentThrough = 0;
  private closed = false;
  private authEnabled = false;
  private authKnownAsOf = 0;

  constructor(
    readonly cache: RangeCache,
    private readonly hub: WatchHub,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The request's ticket when the cache may answer it. The first one starts the watch:
   * a gateway nobody sends serializable reads to holds no watch on the members.
   */
  ticketFor(request: Buffer, carriesAuth: boolean): RangeCacheTicket | undefined {
    if (this.authEnabled) return undefined;
    const ticket = this.cache.ticketFor(request, carriesAuth);
    if (ticket !== undefined && this.client === undefined) this.watch();
    return ticket;
  }

  /** Whether the feed holds its watch in the hub (established or not yet). */
  get watching(): boolean {
    return this.client !== undefined;
  }

  /**
   * With auth on, an answer may only go to a caller allowed to read it, which only a member
   * can tell: the cache empties, drops its watch and answers nothing until auth is off again.
   * `asOf` is when that was observed: an AuthStatus probe sent before this gateway forwarded an
   * AuthEnable must not turn the cache back on (its "off" is older than what we know).
   */
  setAuthEnabled(enabled: boolean, asOf: number = this.now()): void {
    if (asOf < this.authKnownAsOf) return;
    this.authKnownAsOf = asOf;
    if (enabled === this.authEnabled) return;
    this.authEnabled = enabled;
    if (enabled) this.unwatch();
  }

  close(): void {
    this.closed = true;
    this.unwatch();
  }

  private watch(): void {
    if (this.closed || this.authEnabled || this.now() < this.rewatchAt) return;
    const client: HubClient = this.hub.openClient(
      {
        // The hub may answer from inside onClientRequest (a shared watch already running).
        send: (response) => {
          if (this.client === client) this.onResponse(response);
        },
      },
      {},
      { internal: true },
    );
    this.client = client;
    this.fragmentThrough = 0;
    this.hub.onClientRequest(client, { kind: "create", create: WHOLE_KEY_SPACE });
  }

  private unwatch(): void {
    this.cache.goNotLive();
    const client = this.client;
    if (client === undefined) return;
    this.client = undefined;
    this.hub.closeClient(client);
  }

  private onResponse(raw: Buffer): void {
    const view = decodeWatchResponse(raw);
    if (view.canceled || (view.created && view.header === undefined)) {
      this.unwatch();
      this.rewatchAt = this.now() + REWATCH_DELAY_MS;
      return;
    }
    if (view.created) {
      // A watch from "now" sees every event after its created header's revision.
      this.cache.goLive(view.header!.revision);
      return;
    }
    if (!this.cache.live) return;
    for (const span of view.events) {
      this.cache.invalidate(watchEventKey(raw, span));
      if (span.modRevision > this.fragmentThrough) this.fragmentThrough = span.modRevision;
    }
    if (view.fragment) return;
    // With events, the last event's revision: etcd's header can run ahead of a catch-up
    // batch (a resumed watch more than 1000 revisions behind). Without, a progress
    // notification, which etcd sends only to synced watchers: its header is delivered.
    const through = view.events.length > 0 ? this.fragmentThrough : (view.header?.revision ?? 0);
    this.fragmentThrough = 0;
    this.cache.advance(through);
  }
}
