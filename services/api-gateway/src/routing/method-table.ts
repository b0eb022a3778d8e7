// Every RPC the gateway serves, with how it is routed. Paths are etcd's gRPC method paths;
// the gateway never decodes these messages unless a routing peek needs one field.

/**
 * Where a call goes:
 * - "leader": writes and what only the leader answers well (lease TTLs, member changes,
 *   MoveLeader). In etcd a follower forwards most of these to the leader; going there
 *   directly saves a hop and lets the gateway tell "not leader" apart.
 * - "range" / "txn": peeked: linearizable reads round-robin over voters, serializable
 *   reads to the nearest member, txns with writes to the leader.
 * - "read": a linearizable read any voter answers (MemberList, auth reads).
 * - "per-member": an RPC about one member (Status, Hash, HashKV, Defragment, Snapshot).
 *   A gateway is not a member, so it answers as the leader would, unless the caller
 *   names a member in the `gateway-member-id` metadata (hex member ID, as etcdctl
 *   prints it): then that member answers.
 * - "watch" / "keepalive": served by the coalescers, not forwarded call by call.
 */
export type RouteClass = "leader" | "range" | "txn" | "read" | "per-member" | "watch" | "keepalive";

export type StreamShape = "unary" | "server-stream" | "bidi";

export interface MethodRoute {
  /** gRPC path, e.g. "/etcdserverpb.KV/Range". */
  readonly path: string;
  /** The method's name, e.g. "Range" (metrics' label; split once, not per call). */
  readonly method: string;
  readonly route: RouteClass;
  readonly shape: StreamShape;
  /**
   * Whether repeating the call is harmless (reads, keep-alives). Calls that are not are
   * retried only when the failure proves the member never received them.
   */
  readonly idempotent: boolean;
}

function rpc(
  path: string,
  route: RouteClass,
  idempotent: boolean,
  shape: StreamShape = "unary",
): MethodRoute {
  return { path, method: splitMethodPath(path)[1], route, shape, idempotent };
}

export const METHOD_ROUTES: readonly MethodRoute[] = [
  rpc("/etcdserverpb.KV/Range", "range", true),
  // etcd 3.7's streamed Range; older members answer UNIMPLEMENTED, which is relayed.
  rpc("/etcdserverpb.KV/RangeStream", "range", true, "server-stream"),
  rpc("/etcdserverpb.KV/Put", "leader", false),
  rpc("/etcdserverpb.KV/DeleteRange", "leader", false),
  // Peeked: a read-only txn is idempotent; the proxy decides per call.
  rpc("/etcdserverpb.KV/Txn", "txn", false),
  // Compacting twice to the same revision is harmless, but the second answers
  // "required revision has been compacted": not idempotent from the caller's view.
  rpc("/etcdserverpb.KV/Compact", "leader", false),
  rpc("/etcdserverpb.Watch/Watch", "watch", true, "bidi"),
  rpc("/etcdserverpb.Lease/LeaseGrant", "leader", false),
  rpc("/etcdserverpb.Lease/LeaseRevoke", "leader", false),
  rpc("/etcdserverpb.Lease/LeaseKeepAlive", "keepalive", true, "bidi"),
  rpc("/etcdserverpb.Lease/LeaseTimeToLive", "leader", true),
  rpc("/etcdserverpb.Lease/LeaseLeases", "leader", true),
  rpc("/etcdserverpb.Cluster/MemberAdd", "leader", false),
  rpc("/etcdserverpb.Cluster/MemberRemove", "leader", false),
  rpc("/etcdserverpb.Cluster/MemberUpdate", "leader", false),
  rpc("/etcdserverpb.Cluster/MemberList", "read", true),
  rpc("/etcdserverpb.Cluster/MemberPromote", "leader", false),
  // Alarms are replicated state (activation goes through Raft), so any voter can list
  // them; activating and disarming are writes. The leader serves both.
  rpc("/etcdserverpb.Maintenance/Alarm", "leader", false),
  rpc("/etcdserverpb.Maintenance/Status", "per-member", true),
  rpc("/etcdserverpb.Maintenance/Defragment", "per-member", false),
  rpc("/etcdserverpb.Maintenance/Hash", "per-member", true),
  rpc("/etcdserverpb.Maintenance/HashKV", "per-member", true),
  rpc("/etcdserverpb.Maintenance/Snapshot", "per-member", true, "server-stream"),
  rpc("/etcdserverpb.Maintenance/MoveLeader", "leader", false),
  rpc("/etcdserverpb.Maintenance/Downgrade", "leader", false),
  rpc("/etcdserverpb.Auth/AuthEnable", "leader", false),
  rpc("/etcdserverpb.Auth/AuthDisable", "leader", false),
  rpc("/etcdserverpb.Auth/AuthStatus", "read", true),
  // Authenticate goes through Raft in etcd (it issues a token) but has no effect a
  // second call would change: a retry just issues another token.
  rpc("/etcdserverpb.Auth/Authenticate", "leader", true),
  rpc("/etcdserverpb.Auth/UserAdd", "leader", false),
  rpc("/etcdserverpb.Auth/UserGet", "read", true),
  rpc("/etcdserverpb.Auth/UserList", "read", true),
  rpc("/etcdserverpb.Auth/UserDelete", "leader", false),
  rpc("/etcdserverpb.Auth/UserChangePassword", "leader", false),
  rpc("/etcdserverpb.Auth/UserGrantRole", "leader", false),
  rpc("/etcdserverpb.Auth/UserRevokeRole", "leader", false),
  rpc("/etcdserverpb.Auth/RoleAdd", "leader", false),
  rpc("/etcdserverpb.Auth/RoleGet", "read", true),
  rpc("/etcdserverpb.Auth/RoleList", "read", true),
  rpc("/etcdserverpb.Auth/RoleDelete", "leader", false),
  rpc("/etcdserverpb.Auth/RoleGrantPermission", "leader", false),
  rpc("/etcdserverpb.Auth/RoleRevokePermission", "leader", false),
  // Election and lock calls block for as long as the caller waits and create keys
  // under leases: never repeated behind the caller's back.
  rpc("/v3electionpb.Election/Campaign", "leader", false),
  rpc("/v3electionpb.Election/Proclaim", "leader", false),
  rpc("/v3electionpb.Election/Leader", "read", true),
  rpc("/v3electionpb.Election/Observe", "read", false, "server-stream"),
  rpc("/v3electionpb.Election/Resign", "leader", false),
  rpc("/v3lockpb.Lock/Lock", "leader", false),
  rpc("/v3lockpb.Lock/Unlock", "leader", false),
];

export const METHOD_BY_PATH: ReadonlyMap<string, MethodRoute> = new Map(
  METHOD_ROUTES.map((m) => [m.path, m]),
);

/** "/etcdserverpb.KV/Range" -> ["etcdserverpb.KV", "Range"] */
export function splitMethodPath(path: string): [service: string, method: string] {
  const slash = path.lastIndexOf("/");
  return [path.slice(1, slash), path.slice(slash + 1)];
}
