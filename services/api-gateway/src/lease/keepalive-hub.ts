// Lease keep-alive coalescing: every client LeaseKeepAlive stream is multiplexed onto one
// upstream stream (to the leader, which owns lease expiry). Per lease ID at most one
// keep-alive is in flight upstream, and an answer younger than `reuseWindowMs` answers
// further requests without asking again; every client that asked gets the answer.
//
// A reused answer reports the TTL left since the member renewed (rounded down to whole
// seconds), never more: the lease really does expire no earlier than the client is told.

import type { ClientSink, UpstreamHandle } from "../watch/watch-hub.js";
import {
  decodeKeepAliveResponse,
  encodeKeepAliveRequest,
  encodeKeepAliveResponse,
  type KeepAliveResponseView,
} from "../wire/etcd-messages.js";

export interface KeepAliveTransport {
  /** Opens a LeaseKeepAlive stream to the member that should renew leases (the leader). */
  open(onMessage: (response: Buffer) => void, onClose: (details: string) => void): UpstreamHandle | undefined;
  schedule(delayMs: number, fn: () => void): () => void;
  now(): number;
}

export interface KeepAliveClient {
  readonly sink: ClientSink;
  readonly waitingFor: Set<bigint>;
  closed: boolean;
}

interface LeaseState {
  /** Clients waiting for the answer, with how many requests each sent (each is answered). */
  readonly waiters: Map<KeepAliveClient, number>;
  inFlight: boolean;
  answer: KeepAliveResponseView | undefined;
  answeredAt: number;
}

export interface KeepAliveStats {
  received: number;
  sentUpstream: number;
  answeredFromRecent: number;
}

export class KeepAliveHub {
  private readonly leases = new Map<bigint, LeaseState>();
  private upstream: UpstreamHandle | undefined;
  private reopenCancel: (() => void) | undefined;
  private closed = false;
  private sinceSweep = 0;
  readonly stats: KeepAliveStats = { received: 0, sentUpstream: 0, answeredFromRecent: 0 };

  constructor(
    private readonly transport: KeepAliveTransport,
    private readonly reuseWindowMs: number,
  ) {}

  openClient(sink: ClientSink): KeepAliveClient {
    return { sink, waitingFor: new Set(), closed: false };
  }

  onClientRequest(client: KeepAliveClient, leaseId: bigint): void {
    if (client.closed) return;
    this.stats.received++;
    if (++this.sinceSweep >= 1024) this.sweep();
    let lease = this.leases.get(leaseId);
    if (lease === undefined) {
      lease = { waiters: new Map(), inFlight: false, answer: undefined, answeredAt: 0 };
      this.leases.set(leaseId, lease);
    }
    const recent = this.recentAnswer(lease);
    if (recent !== undefined) {
      this.stats.answeredFromRecent++;
      client.sink.send(recent);
      return;
    }
    lease.waiters.set(client, (lease.waiters.get(client) ?? 0) + 1);
    client.waitingFor.add(leaseId);
    if (!lease.inFlight) this.sendUpstream(leaseId, lease);
  }

  closeClient(client: KeepAliveClient): void {
    client.closed = true;
    for (const id of client.waitingFor) this.leases.get(id)?.waiters.delete(client);
    client.waitingFor.clear();
  }

  /** Moves the upstream stream (the leader changed); in-flight keep-alives are re-sent. */
  rehome(): void {
    const old = this.upstream;
    this.upstream = undefined;
    old?.close();
    this.resendInFlight();
  }

  close(): void {
    this.closed = true;
    this.reopenCancel?.();
    this.upstream?.close();
    this.upstream = undefined;
  }

  private recentAnswer(lease: LeaseState): Buffer | undefined {
    if (lease.answer === undefined || lease.answer.ttl <= 0) return undefined;
    const elapsedMs = this.transport.now() - lease.answeredAt;
    if (elapsedMs >= this.reuseWindowMs) return undefined;
    const ttl = Math.floor((lease.answer.ttl * 1000 - elapsedMs) / 1000);
    if (ttl <= 0) return undefined;
    return encodeKeepAliveResponse({ ...lease.answer, ttl });
  }

  private sendUpstream(leaseId: bigint, lease: LeaseState): void {
    lease.inFlight = true;
    const upstream = this.ensureUpstream();
    if (upstream === undefined) return; // re-sent when a stream opens
    this.stats.sentUpstream++;
    upstream.send(encodeKeepAliveRequest(leaseId));
  }

  private ensureUpstream(): UpstreamHandle | undefined {
    if (this.upstream !== undefined || this.closed) return this.upstream;
    let handle: UpstreamHandle | undefined;
    handle = this.transport.open(
      (raw) => this.onUpstreamMessage(raw),
      () => {
        if (this.upstream !== handle) return;
        this.upstream = undefined;
        this.scheduleReopen();
      },
    );
    this.upstream = handle;
    if (handle === undefined) this.scheduleReopen();
    return handle;
  }

  private scheduleReopen(): void {
    if (this.reopenCancel !== undefined || this.closed) return;
    this.reopenCancel = this.transport.schedule(100, () => {
      this.reopenCancel = undefined;
      this.resendInFlight();
    });
  }

  private resendInFlight(): void {
    for (const [id, lease] of this.leases) {
      if (lease.inFlight || lease.waiters.size > 0) this.sendUpstream(id, lease);
    }
  }

  private onUpstreamMessage(raw: Buffer): void {
    const view = decodeKeepAliveResponse(raw);
    const lease = this.leases.get(view.id);
    if (lease === undefined) return;
    lease.inFlight = false;
    lease.answer = view;
    lease.answeredAt = this.transport.now();
    for (const [client, requests] of lease.waiters) {
      client.waitingFor.delete(view.id);
      for (let i = 0; i < requests; i++) client.sink.send(raw);
    }
    lease.waiters.clear();
  }

  private sweep(): void {
    this.sinceSweep = 0;
    const now = this.transport.now();
    for (const [id, lease] of this.leases) {
      if (!lease.inFlight && lease.waiters.size === 0 && now - lease.answeredAt >= this.reuseWindowMs) {
        this.leases.delete(id);
      }
    }
  }
}
