// The server folder's entry: the member (for main.ts and embedding) and the narrow interface
// the RPC layer (v3rpc) programs against. v3rpc imports nothing else from the server's parts.
export type { LeaseGrantApplied, LeaseTimeToLive } from "../lease/mod.js";
export type { MemberInfo } from "../membership/members-table.js";
export {
  CLUSTER_VERSION,
  type ClusterEvents,
  Member,
  type MemberEvents,
  type MemberLogger,
  SERVER_VERSION,
} from "./member.js";
export type {
  AuthApi,
  AuthMethod,
  ClusterApi,
  EtcdServer,
  LeaseApi,
  MaintenanceApi,
  MemberStatus,
  QuotaAlarmer,
  RaftKV,
  RpcFlags,
  ServerIdentity,
} from "./server-api.js";
