// What the RPC layer (v3rpc) may ask of the server: etcd's RaftKV, Lessor, Cluster, Alarmer and
// maintenance interfaces as its api/v3rpc sees them. v3rpc validates requests (shape, limits)
// and checks the quota before calling these; the server proposes, waits for the apply on this
// member, and answers with the applied result. Writes take the request's protobuf bytes as
// received (`raw`), proposed as they are; without them the request is encoded.
// Requests and answers are the store's shapes (mvcc/types.ts: revisions as numbers, IDs as
// bigint): v3rpc converts the API's messages (mvcc/api-shapes.ts) and writes KV answers with
// mvcc's response codec.

import type { Status } from "@etcd-ts/raft";
import type { TraceContext } from "@etcd-ts/telemetry";
import type { AuthInfo } from "../auth/mod.js";
import type { LeaseGrantApplied, LeaseTimeToLive } from "../lease/mod.js";
import type { MemberInfo } from "../membership/members-table.js";
import type {
  AlarmMember,
  AlarmRequest,
  AlarmResponse,
  CompactionRequest,
  CompactionResponse,
  DeleteRangeRequest,
  DeleteRangeResponse,
  EncodedRangeResponse,
  HashKVResponse,
  HeldPart,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  ResponseHeader,
  TxnRequest,
  TxnResponse,
} from "../mvcc/mod.js";
import type { SnapshotSink } from "../snapshot/mod.js";
import type { WatchableStore } from "../watch/mod.js";

/** Who answers, for response headers and for calls only a leader or a voter may serve. */
export interface ServerIdentity {
  readonly id: bigint;
  readonly clusterId: bigint;
  /** etcd's response header at `revision` (default: the current one). */
  header(revision?: number): ResponseHeader;
  readonly isLeader: boolean;
  /** 0n while no leader is known. */
  readonly leaderId: bigint;
  isLearner(): boolean;
  /** The leader's client URLs, to forward leader-only calls (lease keep-alive...). */
  leaderClientUrls(): string[];
}

/** The flags the RPC layer applies (etcd's of the same names): request limits, watch progress. */
export interface RpcFlags {
  readonly maxRequestBytes: number;
  readonly maxTxnOps: number;
  readonly maxConcurrentStreams: number;
  /** --election-timeout: require-leader streams end after three of them without a leader. */
  readonly electionMs: number;
  /** --experimental-watch-progress-notify-interval; 0: none. */
  readonly watchProgressNotifyIntervalMs: number;
  /** --enable-grpc-gateway: the JSON gateway on the client URLs. */
  readonly grpcGateway: boolean;
  /** --cors and --host-whitelist, for HTTP/1.1 on the client URLs. */
  readonly corsOrigins: readonly string[];
  readonly hostWhitelist: readonly string[];
  /** --grpc-keepalive-{min-time,interval,timeout}. */
  readonly grpcKeepaliveMinTimeMs: number;
  readonly grpcKeepaliveIntervalMs: number;
  readonly grpcKeepaliveTimeoutMs: number;
  /** --metrics=extensive: the gRPC handling-time histogram. */
  readonly extensiveMetrics: boolean;
}

/** etcd's RaftKV: reads from local state, writes through Raft. */
export interface RaftKV {
  /** Local state; linearizable only after `linearizableRead()`. */
  range(request: RangeRequest): Promise<RangeResponse>;
  /**
   * `range`'s answer with its KeyValues already encoded, in chunks (what the KV service sends); a
   * large one's chunks held by the read threads until sent (every HeldPart taken or dropped).
   */
  rangeEncoded(request: RangeRequest): Promise<EncodedRangeResponse<Buffer | HeldPart>>;
  /** Waits until a read at this member is linearizable (ReadIndex, batched). */
  linearizableRead(trace?: TraceContext): Promise<void>;
  /** Writes carry their caller in the entry (etcd's RequestHeader), checked at apply. */
  // `trace`: the client call's server span context (tracing on), parent of the proposal's spans.
  put(request: PutRequest, raw?: Uint8Array, caller?: AuthInfo, trace?: TraceContext): Promise<PutResponse>;
  deleteRange(
    request: DeleteRangeRequest,
    raw?: Uint8Array,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<DeleteRangeResponse>;
  /** `raw`: the TxnRequest's bytes (the store's shape has numbers where the API has int64s). */
  txn(request: TxnRequest, raw: Uint8Array, caller?: AuthInfo, trace?: TraceContext): Promise<TxnResponse>;
  /** Answers once applied; a physical compaction, once the old revisions are gone. */
  compact(request: CompactionRequest, raw?: Uint8Array, trace?: TraceContext): Promise<CompactionResponse>;
}

/** etcd's quota check before proposing a write, and the alarm it raises when it fails. */
export interface QuotaAlarmer {
  quotaAvailable(request: { put: PutRequest } | { txn: TxnRequest } | { leaseGrant: unknown }): boolean;
  /** Proposes the NOSPACE alarm for this member (once). */
  raiseNoSpace(): void;
}

/** etcd's Lessor as v3rpc uses it. Keep-alive and time-to-live are the leader's. */
export interface LeaseApi {
  /** A fresh lease ID for a grant without one. */
  nextLeaseId(): bigint;
  /** `TTL` in seconds; a client's int64 beyond etcd's MaxLeaseTTL keeps its order as a number. */
  leaseGrant(
    grant: { ID: bigint; TTL: number },
    raw?: Uint8Array,
    trace?: TraceContext,
  ): Promise<LeaseGrantApplied>;
  leaseRevoke(
    id: bigint,
    raw?: Uint8Array,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<{ revision: number }>;
  leaseExists(id: bigint): boolean;
  leaseTimeToLive(id: bigint, keys: boolean): LeaseTimeToLive;
  leases(): bigint[];
  /** Renews on the leader; the remaining TTL. */
  leaseRenew(id: bigint): Promise<number>;
}

/** etcd's Cluster: membership as applied here, and changes to it through Raft. */
export interface ClusterApi {
  members(): MemberInfo[];
  addMember(peerUrls: string[], isLearner: boolean): Promise<{ member: MemberInfo; members: MemberInfo[] }>;
  removeMember(id: bigint): Promise<MemberInfo[]>;
  updateMember(id: bigint, peerUrls: string[]): Promise<MemberInfo[]>;
  /** On the leader only (it alone knows how far the learner's log is). */
  promoteMember(id: bigint): Promise<MemberInfo[]>;
}

/** Member status for Maintenance.Status. */
export interface MemberStatus {
  dbSize: number;
  dbSizeInUse: number;
  dbSizeQuota: number;
  raftIndex: number;
  raftTerm: number;
  raftAppliedIndex: number;
}

export interface MaintenanceApi {
  alarms(type?: number): AlarmMember[];
  alarm(request: AlarmRequest): Promise<AlarmResponse>;
  status(): MemberStatus;
  defragment(): Promise<void>;
  hash(): Promise<{ hash: number; revision: number }>;
  hashKV(revision: number): Promise<HashKVResponse>;
  /** On the leader: hands leadership to `target`; false if it did not lead in time. */
  moveLeader(target: bigint, timeoutMs: number): Promise<boolean>;
  /**
   * Streams etcd 3.4's snapshot file (a bbolt database laid out as etcd's backend, without the
   * sha256 trailer) from one consistent view of the store to `sink`, front to back: what
   * `etcdctl snapshot save` receives. Its size in bytes and its sha256 (the trailer to append).
   */
  streamSnapshot(sink: SnapshotSink): Promise<{ size: number; sha256: Buffer }>;
}

/** The auth calls that go through Raft (etcd's Authenticator minus Authenticate). */
export type AuthMethod =
  | "authEnable"
  | "authDisable"
  | "userAdd"
  | "userDelete"
  | "userChangePassword"
  | "userGrantRole"
  | "userRevokeRole"
  | "userGet"
  | "userList"
  | "roleAdd"
  | "roleDelete"
  | "roleGrantPermission"
  | "roleRevokePermission"
  | "roleGet"
  | "roleList";

/** etcd's AuthStore as the RPC layer uses it, and its Authenticator. */
export interface AuthApi {
  readonly authEnabled: boolean;
  readonly authRevision: number;
  /** Who a request's token names (undefined: no token); an unknown token: InvalidAuthToken. */
  authInfoFromToken(token: string | undefined): Promise<AuthInfo | undefined>;
  /** etcd's AuthInfoFromTLS: the CN of a verified client certificate, with --client-cert-auth only. */
  authInfoFromCertificate(commonName: string): AuthInfo | undefined;
  /** Throw etcd's error when the caller may not read the range / is not root (auth on). */
  isRangePermitted(caller: AuthInfo | undefined, key: Buffer, rangeEnd: Buffer): void;
  isAdminPermitted(caller: AuthInfo | undefined): void;
  /** Checks the password (off the apply path) and returns a new token. */
  authenticate(name: string, password: string): Promise<string>;
  /** Proposes an auth call; resolves with what its apply answered (roles, users, perm...). */
  authCall(
    method: AuthMethod,
    request: Record<string, unknown>,
    caller?: AuthInfo,
    trace?: TraceContext,
  ): Promise<unknown>;
}

/** Everything v3rpc uses: the server as its RPC handlers see it. */
export interface EtcdServer
  extends ServerIdentity,
    RaftKV,
    QuotaAlarmer,
    LeaseApi,
    ClusterApi,
    MaintenanceApi,
    AuthApi {
  readonly flags: RpcFlags;
  /** Watches (the watch package's hub over this member's store). */
  readonly watchable: WatchableStore;
  raftStatus(): Status;
}
