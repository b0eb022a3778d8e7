// Keeps a RangeCache current through one gateway-internal watch over the whole key space,
// held in the WatchHub like a client's: the hub moves it to another member without gaps
// when its member fails, so only a cancellation (compaction, refusal) loses it.

import type { TokenClaims } from "@etcd-ts/api";
import type { AuthMetadata, WatchHub } from "../watch/watch-hub.js";
import { decodeWatchResponse, type WatchCreate, watchEventKey } from "../wire/etcd-messages.js";
import type { RangeCache, RangeCacheTicket } from "./range-cache.js";
import { ReadPermissions } from "./read-permissions.js";

/**
 * Who sends a Range: undefined without a token; with one, its claims when the gateway verified
 * it (a JWT naming a published key), undefined when only a member can tell (a simple token).
 */
export type RangeCaller = { readonly claims: TokenClaims | undefined } | undefined;

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
  /** Under auth: what each user was found allowed to read (and root), at the newest auth revision. */
  readonly permissions = new ReadPermissions();
  /**
   * A token for the cache's own watch while auth is on (the gateway's --range-cache-user, who
   * must be able to read every key: root). Absent: with auth on, the cache is off.
   */
  authenticate: (() => Promise<string>) | undefined;
  /** A token is being obtained for the watch (one at a time). */
  private authenticating = false;

  constructor(
    readonly cache: RangeCache,
    private readonly hub: WatchHub,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The request's ticket when the cache may answer it or take its answer. The first one starts
   * the watch: a gateway nobody sends serializable reads to holds no watch on the members.
   * Without auth, only calls without a token (the answer does not depend on who asks). With
   * auth, only serializable reads of a verified JWT's caller, and only when the cache can hold a
   * watch of its own (`authenticate`); whether this caller may be shown the cached answer is
   * then `lookup`'s question.
   */
  ticketFor(request: Buffer, caller: RangeCaller): RangeCacheTicket | undefined {
    if (this.authEnabled) {
      if (caller?.claims === undefined || this.authenticate === undefined) return undefined;
      this.permissions.observe(caller.claims.revision);
    } else if (caller !== undefined) {
      return undefined;
    }
    const ticket = this.cache.ticketFor(request, false);
    if (ticket === undefined) return undefined;
    // A linearizable read's barrier probe carries no token: under auth a member would refuse it.
    if (this.authEnabled && !ticket.range.serializable) return undefined;
    if (this.client === undefined) this.watch();
    return ticket;
  }

  /** The cached answer to a serializable read with this ticket, if `caller` may be shown it. */
  lookup(ticket: RangeCacheTicket, caller: RangeCaller): Buffer | undefined {
    if (
      this.authEnabled &&
      (caller?.claims === undefined || !this.permissions.permits(caller.claims, ticket.range))
    ) {
      this.cache.misses++;
      return undefined;
    }
    return this.cache.lookup(ticket);
  }

  /**
   * A member answered the ticket's request at header revision `revision`: under auth, it found
   * the caller allowed to read the range. The answer is the same for every caller allowed to.
   */
  answered(ticket: RangeCacheTicket, caller: RangeCaller, response: Buffer, revision: number): void {
    if (this.authEnabled) {
      if (caller?.claims === undefined) return;
      this.permissions.granted(caller.claims, ticket.range);
    }
    this.cache.offer(ticket, response, revision);
  }

  /** The auth store is known to have reached `revision` (an AuthStatus answer, a refused old token). */
  authRevisionSeen(revision: number): void {
    this.permissions.observe(revision);
  }

  /** An auth change went through this gateway: no cached answer under auth until it settles. */
  authChangeAcknowledged(): void {
    this.permissions.changeAcknowledged();
  }

  /** The revision the member that applied an acknowledged change reads now (undefined: unknown). */
  authChangeSettled(revision: number | undefined): void {
    this.permissions.changeSettled(revision);
  }

  /** An auth change may have been applied (a call whose outcome is unknown). */
  authChanged(): void {
    this.permissions.changed();
  }

  /** Whether the feed holds its watch in the hub (established or not yet). */
  get watching(): boolean {
    return this.client !== undefined;
  }

  /**
   * With auth on, an answer may only go to a caller allowed to read it (`lookup`), and the
   * tokenless watch is refused: the cache empties, drops its watch and starts again with one
   * authenticated as --range-cache-user, or stays off without it. Turning auth off starts over
   * too (nothing learnt under auth carries over). `asOf` is when that was observed: an
   * AuthStatus probe sent before this gateway forwarded an AuthEnable must not turn the cache
   * back on (its "off" is older than what we know).
   */
  setAuthEnabled(enabled: boolean, asOf: number = this.now()): void {
    if (asOf < this.authKnownAsOf) return;
    this.authKnownAsOf = asOf;
    if (enabled === this.authEnabled) return;
    this.authEnabled = enabled;
    this.permissions.reset();
    this.unwatch();
  }

  close(): void {
    this.closed = true;
    this.unwatch();
  }

  private watch(): void {
    if (this.closed || this.authenticating || this.now() < this.rewatchAt) return;
    if (!this.authEnabled) {
      this.openWatch({});
      return;
    }
    const authenticate = this.authenticate;
    if (authenticate === undefined) return;
    // Each (re-)created watch authenticates anew: the last token may have expired or gone old.
    this.authenticating = true;
    authenticate().then(
      (token) => {
        this.authenticating = false;
        if (!this.closed && this.authEnabled && this.client === undefined) this.openWatch({ token });
      },
      () => {
        this.authenticating = false;
        this.rewatchAt = this.now() + REWATCH_DELAY_MS;
      },
    );
  }

  private openWatch(auth: AuthMetadata): void {
    const client: HubClient = this.hub.openClient(
      {
        // The hub may answer from inside onClientRequest (a shared watch already running).
        send: (response) => {
          if (this.client === client) this.onResponse(response);
        },
      },
      auth,
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
