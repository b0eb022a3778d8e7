// Which member answers a call, from a snapshot of what the gateway knows about the cluster.
// Pure: the cluster tracker owns the snapshot, the proxy owns the I/O.

export interface MemberState {
  /** Member ID in lower-case hex without leading zeros, as etcdctl prints it. */
  readonly id: string;
  /** host:port the gateway dials. */
  readonly address: string;
  readonly isLearner: boolean;
  /** Answered the last status probe and knew a leader then. */
  readonly healthy: boolean;
  /** Smoothed status-probe round trip; Infinity until measured. */
  readonly latencyMs: number;
}

export interface ClusterSnapshot {
  readonly members: readonly MemberState[];
  /** The leader's ID, when a healthy member reported one. */
  readonly leaderId: string | undefined;
  /** A member reported auth enabled at the last refresh (AuthStatus). */
  readonly authEnabled?: boolean;
  /** When (Date.now()) the AuthStatus call behind `authEnabled` was sent. */
  readonly authEnabledAsOf?: number;
  /** The highest auth revision an AuthStatus answer showed. */
  readonly authRevision?: number;
}

export type Target =
  | { kind: "leader" }
  | { kind: "linearizable" }
  /** `learners`: learners serve serializable Range (and Status), nothing else. */
  | { kind: "serializable"; learners: boolean }
  | { kind: "member"; id: string };

/** Round-robin position for linearizable reads; kept by the caller, advanced here. */
export interface RoundRobin {
  next: number;
}

/**
 * Picks a member, skipping `exclude` (members that already failed this call). Falls back
 * from unhealthy to any not-excluded member rather than failing outright: a probe can be
 * stale, and a member that truly is down fails fast with a connection error that the
 * retry logic handles.
 */
export function selectMember(
  target: Target,
  snapshot: ClusterSnapshot,
  rr: RoundRobin,
  exclude: ReadonlySet<string> = new Set(),
): MemberState | undefined {
  const { candidates, voters, healthyVoters } =
    exclude.size === 0 ? poolsOf(snapshot) : pools(snapshot, exclude);
  switch (target.kind) {
    case "member":
      return candidates.find((m) => m.id === target.id);
    case "leader": {
      if (snapshot.leaderId !== undefined) {
        // While the known leader is down, followers still forward proposals to it until
        // they elect another, and such a proposal is lost with an unknown outcome after
        // etcd's request timeout. Better to wait (the caller retries after a refresh).
        return healthyVoters.find((m) => m.id === snapshot.leaderId);
      }
      // No member knows a leader: any voter would answer, so the nearest is the best guess.
      return nearest(healthyVoters) ?? nearest(voters);
    }
    case "linearizable": {
      const pool = healthyVoters.length > 0 ? healthyVoters : voters;
      if (pool.length === 0) return undefined;
      const chosen = pool[rr.next % pool.length]!;
      rr.next = (rr.next + 1) % 1_000_000_007;
      return chosen;
    }
    case "serializable": {
      const pool = target.learners ? candidates : voters;
      return nearest(pool, true) ?? nearest(pool, false);
    }
  }
}

interface Pools {
  candidates: readonly MemberState[];
  voters: readonly MemberState[];
  healthyVoters: readonly MemberState[];
}

function pools(snapshot: ClusterSnapshot, exclude: ReadonlySet<string>): Pools {
  const candidates = snapshot.members.filter((m) => !exclude.has(m.id));
  const voters = candidates.filter((m) => !m.isLearner);
  return { candidates, voters, healthyVoters: voters.filter((m) => m.healthy) };
}

// Snapshots are immutable and replaced on change: their pools are computed once, not per call.
const poolCache = new WeakMap<ClusterSnapshot, Pools>();

function poolsOf(snapshot: ClusterSnapshot): Pools {
  let cached = poolCache.get(snapshot);
  if (cached === undefined) {
    cached = pools(snapshot, new Set());
    poolCache.set(snapshot, cached);
  }
  return cached;
}

function nearest(members: readonly MemberState[], healthyOnly = false): MemberState | undefined {
  let best: MemberState | undefined;
  for (const m of members) {
    if (healthyOnly && !m.healthy) continue;
    if (best === undefined || m.latencyMs < best.latencyMs) best = m;
  }
  return best;
}
