// Watch coalescing: identical client watches share one upstream watch on a member, events
// fan out with each client's own watch ID, and upstream watches move to another member,
// resuming from the last delivered revision, when their member fails. No sockets here: the
// hub talks to members through an UpstreamTransport and to clients through ClientSinks,
// which makes every rule below testable with fakes.
//
// Sharing rules:
// - Watches with the same key, range_end, filters, prev_kv, progress_notify, fragment and
//   auth token share an upstream watch when they start at revision 0 ("from now").
// - A watch with a start revision joins an existing shared watch if that watch has already
//   delivered everything before the start revision (the client is then shown only events at
//   or after it); otherwise it gets an upstream watch of its own, which replays history and
//   stays private for its lifetime.
// - Auth tokens partition sharing: a client never receives events through a watch that
//   another identity's permissions created.

import { encodeWatchResponse } from "@etcd-ts/api";
import {
  decodeWatchResponse,
  encodeWatchCancelRequest,
  encodeWatchCreateRequest,
  encodeWatchProgressRequest,
  keepEventsFrom,
  type WatchCreate,
  type WatchRequest,
  type WatchResponseView,
  withWatchId,
} from "../wire/etcd-messages.js";

/** What etcd answers when a client reuses a watch ID on one stream (mvcc.ErrWatcherDuplicateID). */
export const DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream";

export interface ClientSink {
  send(response: Buffer): void;
}

export interface UpstreamHandle {
  send(request: Buffer): void;
  close(): void;
}

export interface UpstreamTransport {
  /** The member to host a new upstream watch, avoiding `exclude`; undefined when none can. */
  pickMember(exclude: ReadonlySet<string>, load: ReadonlyMap<string, number>): string | undefined;
  /** Opens a Watch stream to a member with the given auth metadata. */
  open(
    memberId: string,
    auth: AuthMetadata,
    onMessage: (response: Buffer) => void,
    onClose: (failure: UpstreamFailure) => void,
  ): UpstreamHandle;
  /** Retry later (a member may come back); returns a cancel function. */
  schedule(delayMs: number, fn: () => void): () => void;
}

export interface UpstreamFailure {
  code: number;
  details: string;
  /** The failure is about the caller (auth), not the member: moving will not help. */
  final: boolean;
}

/** The auth metadata a client stream carried, forwarded on the upstream streams it shares. */
export interface AuthMetadata {
  token?: string;
  authorization?: string;
}

function authKey(auth: AuthMetadata): string {
  return `${auth.token ?? ""}\u0000${auth.authorization ?? ""}`;
}

interface ClientStream {
  readonly sink: ClientSink;
  /** The gateway's own stream (the Range cache's feed): not counted as a client's. */
  readonly internal: boolean;
  readonly auth: AuthMetadata;
  readonly watches: Map<number, ClientWatch>;
  nextWatchId: number;
  closed: boolean;
}

interface ClientWatch {
  readonly client: ClientStream;
  readonly id: number;
  readonly group: UpstreamWatch;
  /** Events below this revision are not shown (a late joiner's start revision). */
  readonly minRevision: number;
  /** Still waiting for the upstream watch's created answer. */
  awaitingCreated: boolean;
}

interface UpstreamWatch {
  /** Coalescing key; undefined for a private watch. */
  readonly shareKey: string | undefined;
  readonly create: WatchCreate;
  readonly auth: AuthMetadata;
  readonly clients: Set<ClientWatch>;
  stream: UpstreamStream | undefined;
  upstreamId: number | undefined;
  /** Every event at or below this revision has been delivered to the clients. */
  deliveredThrough: number;
  /** The upstream's created answer has arrived once (later creates are resumptions). */
  established: boolean;
  headerBytes: Uint8Array | undefined;
  midFragment: boolean;
  /** All clients left before the upstream created it: cancel as soon as it is. */
  abandoned: boolean;
  /**
   * Members whose stream failed it since its last create: not tried again until every member
   * has failed it, then only after the retry delay (moving at once between members that all
   * refuse, e.g. all down, would open streams as fast as connections are refused).
   */
  readonly failedOn: Set<string>;
}

interface ProgressAsk {
  readonly client: ClientStream;
  remaining: number;
  best: WatchResponseView | undefined;
}

interface UpstreamStream {
  readonly memberId: string;
  readonly authKey: string;
  readonly handle: UpstreamHandle;
  /** Creates sent and not yet answered, in order: etcd answers them in order on a stream. */
  readonly pendingCreates: UpstreamWatch[];
  readonly watches: Map<number, UpstreamWatch>;
  readonly progressAsks: ProgressAsk[];
  lastHeader: Uint8Array | undefined;
  closed: boolean;
  idleCheckPending: boolean;
}

/**
 * An upstream stream left without watches is closed after this long: streams are per auth
 * token, and tokens come and go (each etcdctl run authenticates anew).
 */
export const IDLE_UPSTREAM_STREAM_MS = 30_000;

export interface WatchHubStats {
  clientWatches: number;
  upstreamWatches: number;
  upstreamStreams: number;
}

export class WatchHub {
  private readonly shared = new Map<string, UpstreamWatch>();
  private readonly streams = new Map<string, UpstreamStream>();
  private readonly homeless = new Set<UpstreamWatch>();
  private cancelRetry: (() => void) | undefined;
  private clientWatchCount = 0;

  constructor(
    private readonly transport: UpstreamTransport,
    private readonly onStats: (stats: WatchHubStats) => void = () => {},
  ) {}

  openClient(sink: ClientSink, auth: AuthMetadata, options: { internal?: boolean } = {}): ClientStream {
    return {
      sink,
      auth,
      internal: options.internal ?? false,
      watches: new Map(),
      nextWatchId: 0,
      closed: false,
    };
  }

  onClientRequest(client: ClientStream, request: WatchRequest): void {
    if (client.closed) return;
    switch (request.kind) {
      case "create":
        this.createWatch(client, request.create);
        break;
      case "cancel":
        this.cancelWatch(client, request.watchId);
        break;
      case "progress":
        this.requestProgress(client);
        break;
      case "empty":
        break;
    }
    this.publishStats();
  }

  /** The client stream ended: its watches go, upstream watches with them when unshared. */
  closeClient(client: ClientStream): void {
    if (client.closed) return;
    client.closed = true;
    for (const watch of client.watches.values()) this.detach(watch);
    client.watches.clear();
    for (const stream of this.streams.values()) {
      for (let i = stream.progressAsks.length - 1; i >= 0; i--) {
        if (stream.progressAsks[i]!.client === client) stream.progressAsks.splice(i, 1);
      }
    }
    this.publishStats();
  }

  stats(): WatchHubStats {
    let upstreamWatches = this.homeless.size;
    for (const s of this.streams.values()) upstreamWatches += s.watches.size + s.pendingCreates.length;
    return { clientWatches: this.clientWatchCount, upstreamWatches, upstreamStreams: this.streams.size };
  }

  /** Members currently hosting upstream watch streams (operations, tests). */
  upstreamMembers(): string[] {
    return [...new Set([...this.streams.values()].map((s) => s.memberId))];
  }

  /** Closes every upstream stream (gateway shutdown). */
  close(): void {
    this.cancelRetry?.();
    for (const stream of this.streams.values()) {
      stream.closed = true;
      stream.handle.close();
    }
    this.streams.clear();
  }

  // -------------------------------------------------------------------------------------
  // Client requests
  // -------------------------------------------------------------------------------------

  private createWatch(client: ClientStream, create: WatchCreate): void {
    let id = create.watchId;
    if (id !== 0 && client.watches.has(id)) {
      client.sink.send(
        encodeWatchResponse({
          headerBytes: this.currentHeader(),
          watchId: -1,
          created: true,
          canceled: true,
          cancelReason: DUPLICATE_WATCH_ID,
        }),
      );
      return;
    }
    if (id === 0) {
      while (client.watches.has(client.nextWatchId)) client.nextWatchId++;
      id = client.nextWatchId++;
    }

    const shareKey = shareKeyOf(create, client.auth);
    let group = this.shared.get(shareKey);
    let minRevision = 0;
    if (group !== undefined && !group.midFragment && !group.abandoned) {
      if (create.startRevision > 0) {
        // Joinable only if nothing the client asked for has gone by already.
        if (group.established && create.startRevision > group.deliveredThrough)
          minRevision = create.startRevision;
        else group = undefined;
      }
    } else {
      group = undefined;
    }
    if (group === undefined) {
      group = {
        shareKey: create.startRevision === 0 ? shareKey : undefined,
        create: { ...create, watchId: 0 },
        auth: client.auth,
        clients: new Set(),
        stream: undefined,
        upstreamId: undefined,
        deliveredThrough: create.startRevision > 0 ? create.startRevision - 1 : 0,
        established: false,
        headerBytes: undefined,
        midFragment: false,
        abandoned: false,
        failedOn: new Set(),
      };
      if (group.shareKey !== undefined) this.shared.set(group.shareKey, group);
      this.place(group, group.failedOn);
    }
    const watch: ClientWatch = { client, id, group, minRevision, awaitingCreated: !group.established };
    group.clients.add(watch);
    client.watches.set(id, watch);
    if (!client.internal) this.clientWatchCount++;
    if (group.established) {
      client.sink.send(encodeWatchResponse({ headerBytes: group.headerBytes, watchId: id, created: true }));
    }
  }

  private cancelWatch(client: ClientStream, id: number): void {
    const watch = client.watches.get(id);
    // etcd stays silent when asked to cancel a watch the stream does not have.
    if (watch === undefined) return;
    client.watches.delete(id);
    const header = watch.group.headerBytes ?? watch.group.stream?.lastHeader;
    this.detach(watch);
    client.sink.send(encodeWatchResponse({ headerBytes: header, watchId: id, canceled: true }));
  }

  private requestProgress(client: ClientStream): void {
    const streams = new Set<UpstreamStream>();
    for (const w of client.watches.values()) if (w.group.stream !== undefined) streams.add(w.group.stream);
    if (streams.size === 0) {
      const stream = this.streamFor(client.auth, new Set());
      if (stream === undefined) return;
      streams.add(stream);
    }
    const ask: ProgressAsk = { client, remaining: streams.size, best: undefined };
    for (const s of streams) {
      s.progressAsks.push(ask);
      s.handle.send(encodeWatchProgressRequest());
    }
  }

  private detach(watch: ClientWatch): void {
    const group = watch.group;
    if (!group.clients.delete(watch)) return;
    if (!watch.client.internal) this.clientWatchCount--;
    if (group.clients.size > 0) return;
    if (group.shareKey !== undefined && this.shared.get(group.shareKey) === group)
      this.shared.delete(group.shareKey);
    this.homeless.delete(group);
    const stream = group.stream;
    if (stream === undefined) return;
    if (group.upstreamId === undefined) {
      group.abandoned = true;
    } else {
      stream.watches.delete(group.upstreamId);
      if (!stream.closed) stream.handle.send(encodeWatchCancelRequest(group.upstreamId));
      this.closeWhenIdle(stream);
    }
  }

  private closeWhenIdle(stream: UpstreamStream): void {
    if (stream.idleCheckPending || stream.closed) return;
    stream.idleCheckPending = true;
    this.transport.schedule(IDLE_UPSTREAM_STREAM_MS, () => {
      stream.idleCheckPending = false;
      const idle =
        stream.watches.size === 0 && stream.pendingCreates.length === 0 && stream.progressAsks.length === 0;
      if (!idle || stream.closed) return;
      stream.closed = true;
      stream.handle.close();
      for (const [key, s] of this.streams) if (s === stream) this.streams.delete(key);
      this.publishStats();
    });
  }

  // -------------------------------------------------------------------------------------
  // Upstream
  // -------------------------------------------------------------------------------------

  /** Puts a watch on a member's stream: a first create, or a resumption after a failure. */
  private place(group: UpstreamWatch, exclude: Set<string>): void {
    const stream = this.streamFor(group.auth, exclude);
    if (stream === undefined) {
      group.stream = undefined;
      this.homeless.add(group);
      this.scheduleRetry();
      return;
    }
    this.homeless.delete(group);
    group.stream = stream;
    group.upstreamId = undefined;
    const create: WatchCreate = group.established
      ? { ...group.create, startRevision: group.deliveredThrough + 1 }
      : group.create;
    stream.pendingCreates.push(group);
    stream.handle.send(encodeWatchCreateRequest(create));
  }

  private streamFor(auth: AuthMetadata, exclude: Set<string>): UpstreamStream | undefined {
    const key = authKey(auth);
    const load = new Map<string, number>();
    for (const s of this.streams.values())
      load.set(s.memberId, (load.get(s.memberId) ?? 0) + s.watches.size + s.pendingCreates.length);
    const memberId = this.transport.pickMember(exclude, load);
    if (memberId === undefined) return undefined;
    const streamKey = `${memberId}\u0000${key}`;
    let stream = this.streams.get(streamKey);
    if (stream === undefined) {
      const created: UpstreamStream = {
        memberId,
        authKey: key,
        pendingCreates: [],
        watches: new Map(),
        progressAsks: [],
        lastHeader: undefined,
        closed: false,
        idleCheckPending: false,
        handle: this.transport.open(
          memberId,
          auth,
          (response) => this.onUpstreamMessage(created, response),
          (failure) => this.onUpstreamClosed(created, failure),
        ),
      };
      stream = created;
      this.streams.set(streamKey, stream);
    }
    return stream;
  }

  private onUpstreamMessage(stream: UpstreamStream, raw: Buffer): void {
    if (stream.closed) return;
    const view = decodeWatchResponse(raw);
    if (view.headerBytes !== undefined) stream.lastHeader = view.headerBytes;

    if (view.created) {
      const group = stream.pendingCreates.shift();
      if (group !== undefined) this.onCreated(stream, group, view);
      return;
    }
    if (view.watchId === -1 && !view.canceled) {
      this.onProgress(stream, view);
      return;
    }
    const group = stream.watches.get(view.watchId);
    if (group === undefined) return;
    if (view.canceled) {
      // The member ended the watch (compaction, or a reason of its own): tell every client.
      stream.watches.delete(view.watchId);
      this.endGroup(group, view);
      this.closeWhenIdle(stream);
      return;
    }
    this.deliver(group, raw, view);
  }

  private onCreated(stream: UpstreamStream, group: UpstreamWatch, view: WatchResponseView): void {
    if (view.canceled || view.watchId === -1) {
      // Creation refused (bad range, permission, future compaction...): pass etcd's answer on.
      this.endGroup(group, view);
      return;
    }
    if (group.abandoned || group.clients.size === 0) {
      stream.handle.send(encodeWatchCancelRequest(view.watchId));
      this.closeWhenIdle(stream);
      return;
    }
    group.upstreamId = view.watchId;
    group.failedOn.clear();
    stream.watches.set(view.watchId, group);
    if (view.headerBytes !== undefined) group.headerBytes = view.headerBytes;
    if (!group.established) {
      group.established = true;
      if (group.create.startRevision === 0) group.deliveredThrough = view.header?.revision ?? 0;
    }
    for (const watch of group.clients) {
      if (!watch.awaitingCreated) continue;
      watch.awaitingCreated = false;
      watch.client.sink.send(
        encodeWatchResponse({ headerBytes: group.headerBytes, watchId: watch.id, created: true }),
      );
    }
  }

  private deliver(group: UpstreamWatch, raw: Buffer, view: WatchResponseView): void {
    if (view.headerBytes !== undefined) group.headerBytes = view.headerBytes;
    let body = raw;
    let events = view.events;
    // After a resumption, never repeat what clients already have.
    if (events.length > 0 && events[0]!.modRevision <= group.deliveredThrough) {
      const trimmed = keepEventsFrom(raw, view, group.deliveredThrough + 1);
      if (trimmed !== undefined) {
        body = trimmed;
        events = events.filter((e) => e.modRevision > group.deliveredThrough);
        if (events.length === 0) return;
      }
    }
    const bodyView = body === raw ? view : decodeWatchResponse(body);
    // Clients on different streams often hold the same watch ID (each stream counts from
    // 0): encode each ID once per response, not once per client.
    const byId = new Map<number, Buffer>();
    for (const watch of group.clients) {
      if (watch.awaitingCreated) continue;
      if (watch.minRevision > 0 && events.length > 0 && events[0]!.modRevision < watch.minRevision) {
        const kept = keepEventsFrom(body, bodyView, watch.minRevision);
        if (kept !== undefined) {
          const keptView = decodeWatchResponse(kept);
          if (keptView.events.length > 0)
            watch.client.sink.send(withWatchId(keptView.withoutWatchId, watch.id));
          continue;
        }
      }
      let addressed = byId.get(watch.id);
      if (addressed === undefined) {
        addressed = withWatchId(bodyView.withoutWatchId, watch.id);
        byId.set(watch.id, addressed);
      }
      watch.client.sink.send(addressed);
    }
    group.midFragment = view.fragment;
    if (!view.fragment) {
      const last = events.length > 0 ? events[events.length - 1]!.modRevision : 0;
      // A response without events is a progress notification: etcd sends those only to
      // watchers that are synced, so its header revision is fully delivered.
      const through = events.length > 0 ? last : (view.header?.revision ?? 0);
      if (through > group.deliveredThrough) group.deliveredThrough = through;
    }
  }

  private endGroup(group: UpstreamWatch, view: WatchResponseView): void {
    if (group.shareKey !== undefined && this.shared.get(group.shareKey) === group)
      this.shared.delete(group.shareKey);
    for (const watch of group.clients) {
      watch.client.watches.delete(watch.id);
      if (!watch.client.internal) this.clientWatchCount--;
      // A refused first create reaches etcd clients as etcd sent it (watch ID -1).
      const id = view.created && !group.established ? -1 : watch.id;
      watch.client.sink.send(
        encodeWatchResponse({
          headerBytes: view.headerBytes ?? group.headerBytes,
          watchId: id,
          created: view.created && !group.established,
          canceled: true,
          compactRevision: view.compactRevision,
          cancelReason: view.cancelReason,
        }),
      );
    }
    group.clients.clear();
    this.publishStats();
  }

  private onProgress(stream: UpstreamStream, view: WatchResponseView): void {
    const ask = stream.progressAsks.shift();
    if (ask === undefined) return;
    if (ask.best === undefined || (view.header?.revision ?? 0) < (ask.best.header?.revision ?? 0))
      ask.best = view;
    if (--ask.remaining === 0 && !ask.client.closed) {
      ask.client.sink.send(encodeWatchResponse({ headerBytes: ask.best.headerBytes, watchId: -1 }));
    }
  }

  private onUpstreamClosed(stream: UpstreamStream, failure: UpstreamFailure): void {
    if (stream.closed) return;
    stream.closed = true;
    for (const [key, s] of this.streams) if (s === stream) this.streams.delete(key);
    for (const ask of stream.progressAsks) ask.remaining--;
    const groups = [...stream.pendingCreates, ...stream.watches.values()].filter(
      (g) => g.clients.size > 0 && !g.abandoned,
    );
    for (const group of groups) {
      if (failure.final) {
        this.endGroup(group, {
          watchId: 0,
          created: false,
          canceled: true,
          compactRevision: 0,
          cancelReason: failure.details,
          fragment: false,
          header: undefined,
          headerBytes: group.headerBytes,
          events: [],
          withoutWatchId: Buffer.alloc(0),
        });
      } else {
        group.midFragment = false;
        group.failedOn.add(stream.memberId);
        this.place(group, group.failedOn);
      }
    }
    this.publishStats();
  }

  private scheduleRetry(): void {
    if (this.cancelRetry !== undefined) return;
    this.cancelRetry = this.transport.schedule(200, () => {
      this.cancelRetry = undefined;
      for (const group of [...this.homeless]) {
        if (group.clients.size === 0) continue;
        group.failedOn.clear();
        this.place(group, group.failedOn);
      }
    });
  }

  /** The last response header a member sent on any upstream stream (for answers the hub makes itself). */
  currentHeader(): Uint8Array | undefined {
    for (const s of this.streams.values()) if (s.lastHeader !== undefined) return s.lastHeader;
    return undefined;
  }

  private publishStats(): void {
    this.onStats(this.stats());
  }
}

/** Identical watches share; the key covers every field that changes what a watch sees. */
export function shareKeyOf(create: WatchCreate, auth: AuthMetadata): string {
  const filters = [...new Set(create.filters)].sort((a, b) => a - b).join(",");
  return [
    create.key.toString("base64"),
    create.rangeEnd.toString("base64"),
    filters,
    create.prevKv ? 1 : 0,
    create.progressNotify ? 1 : 0,
    create.fragment ? 1 : 0,
    authKey(auth),
  ].join("|");
}
