// etcd's require-leader calls (v3rpc/interceptor.go; clientv3.WithRequireLeader, which
// kube-apiserver puts on its watches): a call whose metadata says `hasleader: true` is refused
// with "etcdserver: no leader" while this member knows no leader, and such a stream already open
// is ended with that status once the member has gone `NO_LEADER_ROUNDS` election timeouts
// without one, so its client reconnects to a member that can still serve it instead of waiting
// on a partitioned one for events that never come. Streams are ended later than new calls are
// refused because reopening one costs more than refusing a call (etcd's own comment). Members
// apply it to every client call; the gateway to its client streams (it forwards the key on unary
// calls, and the members judge those), with "a leader" meaning one its probes know.

import { EtcdError } from "../errors.js";
import type { ServerCall } from "./http2-server.js";

/** The metadata key and value (etcd's rpctypes.MetadataRequireLeaderKey / MetadataHasLeader). */
export const REQUIRE_LEADER_HEADER = "hasleader";
const HAS_LEADER = "true";
/** etcd's maxNoLeaderCnt. */
export const NO_LEADER_ROUNDS = 3;

export const noLeaderError = (): EtcdError => new EtcdError("NoLeader");
/** The status a refused or ended require-leader call gets (etcd's ErrNoLeader). */
export const NO_LEADER_STATUS = { code: noLeaderError().code, details: noLeaderError().details };

/** Whether a call asks for a leader (read on every call: one header lookup, no allocation). */
export function requiresLeader(call: { header(name: string): string | undefined }): boolean {
  return call.header(REQUIRE_LEADER_HEADER) === HAS_LEADER;
}

/**
 * The open require-leader streams and the rounds without a leader. `round` is called once per
 * election timeout (etcd's monitorLeader); pure of timers, so tests drive it.
 */
export class RequireLeaderStreams {
  private readonly enders = new Set<() => void>();
  private roundsWithout = 0;

  /** A stream let in: `end` ends it with "no leader". Returns its removal, for when it closes. */
  track(end: () => void): () => void {
    this.enders.add(end);
    return () => this.enders.delete(end);
  }

  get open(): number {
    return this.enders.size;
  }

  /** One election timeout passed; `hasLeader` is the member's state now. */
  round(hasLeader: boolean): void {
    this.roundsWithout = hasLeader ? 0 : this.roundsWithout + 1;
    if (this.roundsWithout < NO_LEADER_ROUNDS) return;
    const ending = [...this.enders];
    this.enders.clear();
    for (const end of ending) end();
  }
}

/**
 * The rule bound to a server: whether a leader is known now, and the election-timeout rounds
 * that end streams (a timer, unref'd: it never holds a process open).
 */
export class RequireLeaderGuard {
  readonly streams = new RequireLeaderStreams();
  private readonly timer: NodeJS.Timeout;

  /** `roundMs`: the election timeout (members: their own; the gateway: its --election-timeout). */
  constructor(
    readonly hasLeader: () => boolean,
    roundMs: number,
  ) {
    this.timer = setInterval(() => this.streams.round(this.hasLeader()), roundMs);
    this.timer.unref();
  }

  /**
   * Before a call's handler: false when the call asked for a leader and none is known (the
   * call is then finished with "no leader"). A stream let in (`endStream` given) is ended by
   * `endStream` once the rounds without a leader run out, unless it closed before.
   */
  admit(call: ServerCall, endStream?: () => void): boolean {
    if (!requiresLeader(call)) return true;
    if (!this.hasLeader()) {
      call.finish(NO_LEADER_STATUS);
      return false;
    }
    if (endStream !== undefined) call.once("close", this.streams.track(endStream));
    return true;
  }

  close(): void {
    clearInterval(this.timer);
  }
}
