// Knows the members, which one leads, which answer and how fast. Seeds come from
// --endpoints; the rest is learnt from Cluster.MemberList. Each refresh probes every member
// with Maintenance.Status (its own ID, the leader it follows, a round-trip sample); failures
// seen by the proxy trigger a refresh at once instead of waiting for the next tick.

import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { ClusterSnapshot, MemberState } from "../routing/member-selection.js";
import { decodeAuthStatus, decodeMemberListResponse, decodeStatusResponse } from "../wire/etcd-messages.js";
import { MemberChannel } from "./member-channel.js";
import { addressFromClientUrl, type UpstreamTls } from "./upstream-client.js";

const STATUS_PATH = "/etcdserverpb.Maintenance/Status";
const AUTH_STATUS_PATH = "/etcdserverpb.Auth/AuthStatus";
const MEMBER_LIST_PATH = "/etcdserverpb.Cluster/MemberList";
const EMPTY = Buffer.alloc(0);

export interface ClusterTrackerOptions {
  seeds: string[];
  refreshIntervalMs: number;
  probeTimeoutMs: number;
  logger: Logger;
  /** Dial members over TLS (https client URLs); absent: plaintext. */
  upstreamTls?: UpstreamTls | undefined;
}

interface Endpoint {
  address: string;
  /** Our HTTP/2 client: every call and stream to the member, the tracker's probes too. */
  channel: MemberChannel;
  /** Learnt from its own Status answer. */
  memberId: string | undefined;
  isLearner: boolean;
  healthy: boolean;
  latencyMs: number;
  /** Listed by MemberList (or a seed): dropped from the pool when neither. */
  listed: boolean;
  seed: boolean;
  /** Probes in a row that timed out (a busy member is slow, not gone). */
  slowProbes: number;
}

/** Timed-out probes in a row after which a member that still accepts connections counts as down. */
const SLOW_PROBES_BEFORE_DOWN = 3;

export function memberIdHex(id: bigint): string {
  return id.toString(16);
}

export class ClusterTracker {
  private readonly endpoints = new Map<string, Endpoint>();
  private current: ClusterSnapshot = { members: [], leaderId: undefined };
  /** Whether auth was enabled at the last AuthStatus answer. */
  private authEnabled = false;
  private authEnabledAsOf = 0;
  /** The auth revision at the last AuthStatus answer. */
  private authRevision = 0;
  /** One peer URL per listed member (the published JWT keys are listed there). */
  private peers: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private closed = false;
  /** Raft term of the known leader: an announcement older than it is stale. */
  private leaderTerm = -1;
  /** When the last announcement was applied (performance.now()). */
  private announcedAt = Number.NEGATIVE_INFINITY;
  private readonly listeners = new Set<(snapshot: ClusterSnapshot) => void>();
  clusterId: bigint = 0n;

  constructor(private readonly options: ClusterTrackerOptions) {
    for (const seed of options.seeds) this.addEndpoint(seed, true);
  }

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshIntervalMs);
    this.timer.unref();
  }

  snapshot(): ClusterSnapshot {
    return this.current;
  }

  /** Called with each new snapshot (leader or membership changes re-route coalesced streams). */
  onChange(listener: (snapshot: ClusterSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** One peer URL per member of the last MemberList answer. */
  peerUrls(): readonly string[] {
    return this.peers;
  }

  channelFor(memberId: string): MemberChannel | undefined {
    for (const ep of this.endpoints.values()) if (ep.memberId === memberId) return ep.channel;
    return undefined;
  }

  /** Stop choosing a member the proxy just failed to reach, until a probe says it is back. */
  markDown(memberId: string): void {
    let changed = false;
    for (const ep of this.endpoints.values()) {
      if (ep.memberId === memberId && ep.healthy) {
        ep.healthy = false;
        changed = true;
      }
    }
    if (changed) this.publish(this.current.leaderId);
  }

  /**
   * A member announced it was elected (a NATS event): route to it now instead of at the next
   * probe, then probe to confirm. Ignored when older than the leader known, or for another cluster.
   */
  leaderAnnounced(memberId: string, term: number, clusterId: string): void {
    if (this.closed || term <= this.leaderTerm) return;
    if (this.clusterId !== 0n && memberIdHex(this.clusterId) !== clusterId) return;
    const ep = [...this.endpoints.values()].find((e) => e.memberId === memberId && e.listed);
    if (ep === undefined) {
      // A member this gateway has not learnt yet: MemberList will name it.
      void this.refresh();
      return;
    }
    this.leaderTerm = term;
    this.announcedAt = performance.now();
    ep.healthy = true;
    ep.slowProbes = 0;
    this.options.logger.info({ leader: memberId, term }, "leader changed (announced)");
    this.publish(memberId);
    void this.refresh();
  }

  /** Refresh now; concurrent requests share one refresh (plus one more if asked meanwhile). */
  refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.refreshing !== undefined) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.refreshAgain = false;
          await this.refreshOnce();
        } while (this.refreshAgain && !this.closed);
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const ep of this.endpoints.values()) ep.channel.close();
    this.endpoints.clear();
  }

  private addEndpoint(address: string, seed: boolean): Endpoint {
    let ep = this.endpoints.get(address);
    if (ep === undefined) {
      ep = {
        address,
        channel: new MemberChannel(address, this.options.upstreamTls),
        memberId: undefined,
        isLearner: false,
        healthy: false,
        latencyMs: Number.POSITIVE_INFINITY,
        listed: true,
        seed,
        slowProbes: 0,
      };
      this.endpoints.set(address, ep);
    }
    return ep;
  }

  private async refreshOnce(): Promise<void> {
    const startedAt = performance.now();
    const leaders = new Map<string, number>();
    const answered = new Set<string>();
    await this.probe([...this.endpoints.values()], leaders, answered);
    const before = new Set(this.endpoints.keys());
    await this.refreshMembership();
    // Members just learnt from MemberList are probed now, not a refresh period later.
    const discovered = [...this.endpoints.values()].filter((ep) => !before.has(ep.address));
    if (discovered.length > 0) await this.probe(discovered, leaders, answered);
    // Members can briefly disagree during an election: trust the highest term.
    let leaderId: string | undefined;
    let bestTerm = -1;
    for (const [id, term] of leaders) {
      if (term > bestTerm) {
        leaderId = id;
        bestTerm = term;
      }
    }
    const announced = this.current.leaderId;
    if (
      bestTerm < this.leaderTerm &&
      announced !== undefined &&
      (startedAt < this.announcedAt || !answered.has(announced)) &&
      [...this.endpoints.values()].some((ep) => ep.memberId === announced && ep.healthy)
    ) {
      // A leader announced at a newer term than any probe saw: probes sent before the
      // announcement, or answered only by followers that have not heard from it yet (it was
      // slow, not down). Terms only grow, so keep it.
      leaderId = announced;
    } else if (leaders.size === 0 && [...this.endpoints.values()].some((ep) => ep.healthy)) {
      // Nobody answered in time, but nobody is known to be down either: keep what we knew.
      leaderId = this.current.leaderId;
    } else {
      this.leaderTerm = bestTerm;
    }
    await this.refreshAuthStatus();
    if (leaderId !== this.current.leaderId) this.options.logger.info({ leader: leaderId }, "leader changed");
    this.publish(leaderId);
  }

  private async probe(
    endpoints: Endpoint[],
    leaders: Map<string, number>,
    answered: Set<string>,
  ): Promise<void> {
    await Promise.all(
      endpoints.map(async (ep) => {
        const started = performance.now();
        try {
          const raw = await this.call(ep.channel, STATUS_PATH);
          const status = decodeStatusResponse(raw);
          const rtt = performance.now() - started;
          ep.slowProbes = 0;
          ep.memberId = memberIdHex(status.header.memberId);
          answered.add(ep.memberId);
          ep.isLearner = status.isLearner;
          ep.latencyMs = Number.isFinite(ep.latencyMs) ? ep.latencyMs * 0.7 + rtt * 0.3 : rtt;
          // A member without a leader cannot serve linearizable reads or writes.
          ep.healthy = status.leader !== 0n;
          if (status.header.clusterId !== 0n) this.clusterId = status.header.clusterId;
          if (status.leader !== 0n) {
            const id = memberIdHex(status.leader);
            leaders.set(id, Math.max(leaders.get(id) ?? 0, status.raftTerm));
          }
        } catch (err) {
          // Unreachable is down at once; slow (deadline exceeded on a loaded machine) only
          // after several probes in a row, or one busy moment would stop all writes.
          const unreachable = (err as grpc.ServiceError).code === grpc.status.UNAVAILABLE;
          ep.slowProbes = unreachable ? SLOW_PROBES_BEFORE_DOWN : ep.slowProbes + 1;
          if (ep.slowProbes >= SLOW_PROBES_BEFORE_DOWN) {
            if (ep.healthy) {
              this.options.logger.warn(
                { member: ep.memberId, address: ep.address, err: String(err) },
                "member probe failed",
              );
            }
            ep.healthy = false;
          }
        }
      }),
    );
  }

  /** Whether auth is on (the serializable cache must not answer then); unknown keeps the last. */
  private async refreshAuthStatus(): Promise<void> {
    for (const ep of [...this.endpoints.values()].filter((e) => e.healthy)) {
      try {
        const asOf = Date.now();
        const status = decodeAuthStatus(await this.call(ep.channel, AUTH_STATUS_PATH));
        this.authEnabled = status.enabled;
        this.authRevision = Math.max(this.authRevision, status.revision);
        this.authEnabledAsOf = asOf;
        return;
      } catch {
        // Try the next healthy member.
      }
    }
  }

  private async refreshMembership(): Promise<void> {
    const healthy = [...this.endpoints.values()].filter((ep) => ep.healthy);
    for (const ep of healthy) {
      try {
        const { members } = decodeMemberListResponse(await this.call(ep.channel, MEMBER_LIST_PATH));
        const listedAddresses = new Set<string>();
        this.peers = members.flatMap((m) => m.peerURLs.slice(0, 1));
        for (const m of members) {
          // A member added but not yet started has no client URLs: nothing to dial.
          const address = m.clientURLs
            .map((url) => addressFromClientUrl(url, this.options.upstreamTls !== undefined))
            .find((a) => a !== undefined);
          if (address === undefined) continue;
          listedAddresses.add(address);
          const known = this.endpoints.get(address);
          if (known === undefined) {
            this.options.logger.info({ member: memberIdHex(m.id), address }, "member discovered");
            this.addEndpoint(address, false).memberId = memberIdHex(m.id);
          }
        }
        for (const ep of this.endpoints.values()) {
          ep.listed = listedAddresses.has(ep.address);
          if (!ep.listed && !ep.seed) {
            this.options.logger.info({ member: ep.memberId, address: ep.address }, "member removed");
            ep.channel.close();
            this.endpoints.delete(ep.address);
          }
        }
        return;
      } catch {
        // Try the next healthy member.
      }
    }
  }

  /** `leaderId` undefined: no leader known (not "keep the last": a default would do that). */
  private publish(leaderId: string | undefined): void {
    const members: MemberState[] = [];
    const seen = new Set<string>();
    for (const ep of this.endpoints.values()) {
      if (ep.memberId === undefined || seen.has(ep.memberId) || !ep.listed) continue;
      seen.add(ep.memberId);
      members.push({
        id: ep.memberId,
        address: ep.address,
        isLearner: ep.isLearner,
        healthy: ep.healthy,
        latencyMs: ep.latencyMs,
      });
    }
    this.current = {
      members,
      leaderId,
      authEnabled: this.authEnabled,
      authEnabledAsOf: this.authEnabledAsOf,
      authRevision: this.authRevision,
    };
    for (const listener of this.listeners) listener(this.current);
  }

  /** A probe's call; rejects with its status (code and details) when it fails. */
  private async call(channel: MemberChannel, path: string): Promise<Buffer> {
    const { error, response } = await channel.call(
      path,
      EMPTY,
      new grpc.Metadata(),
      Date.now() + this.options.probeTimeoutMs,
    ).result;
    if (error !== undefined) throw Object.assign(new Error(`${error.code}: ${error.details}`), error);
    return response ?? EMPTY;
  }
}
