// A small promise-based etcd v3 client for black-box tests, the same against real etcd and
// against our member. It does not use @etcd-ts/api's generated client on purpose: real etcd
// draws member and cluster IDs from 64 bits, every response header carries them, and the
// generated decoders (forceLong=number) refuse values above 2^53, so that client cannot read
// a single response from real etcd. Here messages are decoded from the same proto/ sources by
// @grpc/proto-loader with 64-bit integers as decimal strings; revisions are converted to
// numbers (they stay far below 2^53), IDs stay strings.

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type ClientDuplexStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const PROTO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../../proto");

interface WireHeader {
  clusterId: string;
  memberId: string;
  revision: string;
  raftTerm: string;
}
interface WireKeyValue {
  key: Buffer;
  value: Buffer;
  modRevision: string;
  createRevision: string;
  version: string;
}
interface WireRangeResponse {
  header: WireHeader;
  kvs: WireKeyValue[];
}
interface WirePutResponse {
  header: WireHeader;
}
interface WireTxnResponse {
  header: WireHeader;
  succeeded: boolean;
  responses: { responseRange?: WireRangeResponse }[];
}
interface WireStatusResponse {
  header: WireHeader;
  leader: string;
  raftIndex: string;
  raftTerm: string;
}
export interface WireWatchResponse {
  header: WireHeader;
  watchId: string;
  created: boolean;
  canceled: boolean;
  compactRevision: string;
  cancelReason: string;
  events: { type: "PUT" | "DELETE"; kv: WireKeyValue }[];
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: number },
  callback: (err: ServiceError | null, res: Res) => void,
) => void;

interface RawClient {
  close(): void;
}
interface RawKV extends RawClient {
  range: Unary<object, WireRangeResponse>;
  put: Unary<object, WirePutResponse>;
  txn: Unary<object, WireTxnResponse>;
  compact: Unary<object, object>;
}
interface RawMaintenance extends RawClient {
  status: Unary<object, WireStatusResponse>;
  moveLeader: Unary<object, object>;
}
interface WireMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}
interface RawCluster extends RawClient {
  memberAdd: Unary<object, { member: WireMember; members: WireMember[] }>;
  memberRemove: Unary<object, { members: WireMember[] }>;
  memberList: Unary<object, { members: WireMember[] }>;
  memberPromote: Unary<object, { members: WireMember[] }>;
}

/** A member as MemberList reports it; the ID in decimal (64 bits). */
export interface ClusterMember {
  id: string;
  name: string;
  peerUrls: string[];
  isLearner: boolean;
}

const toMember = (m: WireMember): ClusterMember => ({
  id: m.ID,
  name: m.name,
  peerUrls: m.peerURLs,
  isLearner: m.isLearner,
});
interface RawWatch extends RawClient {
  watch(metadata: Metadata): ClientDuplexStream<object, WireWatchResponse>;
}
type ClientConstructor<T> = new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options: object,
) => T;

let services:
  | {
      KV: ClientConstructor<RawKV>;
      Maintenance: ClientConstructor<RawMaintenance>;
      Watch: ClientConstructor<RawWatch>;
      Cluster: ClientConstructor<RawCluster>;
    }
  | undefined;

function loadServices() {
  if (!services) {
    const definition = loadSync("etcdserverpb/rpc.proto", {
      includeDirs: [PROTO_DIR],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const root = loadPackageDefinition(definition) as unknown as { etcdserverpb: typeof services };
    services = root.etcdserverpb;
  }
  return services!;
}

/** Client channel options: reconnect quickly after a member comes back; notice dead peers. */
export const CHANNEL_OPTIONS = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
};

export interface ReadResult {
  revision: number;
  value: string | null;
  modRevision?: number;
}

export interface CasResult {
  revision: number;
  succeeded: boolean;
  /** When refused: what the failure branch read (null: key absent) and its mod_revision. */
  current?: string | null;
  modRevision?: number;
}

export interface StatusResult {
  memberId: string;
  leader: string;
  raftIndex: number;
  raftTerm: number;
  revision: number;
}

/** One member's client endpoint: KV, Maintenance and Watch over one channel each. */
export class EtcdEndpoint {
  private readonly kv: RawKV;
  private readonly maintenance: RawMaintenance;
  private readonly watchClient: RawWatch;
  private readonly cluster: RawCluster;

  constructor(readonly address: string) {
    const s = loadServices();
    const creds = credentials.createInsecure();
    this.kv = new s.KV(address, creds, CHANNEL_OPTIONS);
    this.maintenance = new s.Maintenance(address, creds, CHANNEL_OPTIONS);
    this.watchClient = new s.Watch(address, creds, CHANNEL_OPTIONS);
    this.cluster = new s.Cluster(address, creds, CHANNEL_OPTIONS);
  }

  /** A read of one key: linearizable unless `serializable` (then the member answers from its own state). */
  async get(key: string, timeoutMs: number, options: { serializable?: boolean } = {}): Promise<ReadResult> {
    const request = { key: Buffer.from(key), serializable: options.serializable ?? false };
    const res = await call(this.kv.range.bind(this.kv), request, timeoutMs);
    const kv = res.kvs[0];
    return {
      revision: Number(res.header.revision),
      value: kv ? kv.value.toString() : null,
      modRevision: kv ? Number(kv.modRevision) : undefined,
    };
  }

  /** Returns the revision the put created. */
  async put(key: string, value: string, timeoutMs: number): Promise<number> {
    const res = await call(
      this.kv.put.bind(this.kv),
      { key: Buffer.from(key), value: Buffer.from(value) },
      timeoutMs,
    );
    return Number(res.header.revision);
  }

  /** Compacts the key-value history below `revision` (etcd's Compact, not physical). */
  async compact(revision: number, timeoutMs: number): Promise<void> {
    await call(this.kv.compact.bind(this.kv), { revision }, timeoutMs);
  }

  /** If key's value equals `expected`, put `value`; otherwise read the key, in one txn. */
  async compareAndSet(key: string, expected: string, value: string, timeoutMs: number): Promise<CasResult> {
    const k = Buffer.from(key);
    const res = await call(
      this.kv.txn.bind(this.kv),
      {
        compare: [{ key: k, target: "VALUE", result: "EQUAL", value: Buffer.from(expected) }],
        success: [{ requestPut: { key: k, value: Buffer.from(value) } }],
        failure: [{ requestRange: { key: k } }],
      },
      timeoutMs,
    );
    const revision = Number(res.header.revision);
    if (res.succeeded) return { revision, succeeded: true };
    const kv = res.responses[0]?.responseRange?.kvs[0];
    return {
      revision,
      succeeded: false,
      current: kv ? kv.value.toString() : null,
      modRevision: kv ? Number(kv.modRevision) : undefined,
    };
  }

  async status(timeoutMs: number): Promise<StatusResult> {
    const res = await call(this.maintenance.status.bind(this.maintenance), {}, timeoutMs);
    return {
      memberId: res.header.memberId,
      leader: res.leader,
      raftIndex: Number(res.raftIndex),
      raftTerm: Number(res.raftTerm),
      revision: Number(res.header.revision),
    };
  }

  /**
   * Opens a watch stream. "hasleader" makes a member without a leader cancel the stream
   * rather than leave it silent, so the watcher moves to another member.
   */
  openWatch(): ClientDuplexStream<object, WireWatchResponse> {
    const md = new Metadata();
    md.set("hasleader", "true");
    return this.watchClient.watch(md);
  }

  close(): void {
    this.kv.close();
    this.maintenance.close();
    this.watchClient.close();
    this.cluster.close();
  }

  async memberList(timeoutMs: number): Promise<ClusterMember[]> {
    const res = await call(this.cluster.memberList.bind(this.cluster), {}, timeoutMs);
    return res.members.map(toMember);
  }

  /** Adds a member (a learner when asked); returns it, with the ID the cluster gave it. */
  async memberAdd(peerUrl: string, isLearner: boolean, timeoutMs: number): Promise<ClusterMember> {
    const res = await call(
      this.cluster.memberAdd.bind(this.cluster),
      { peerURLs: [peerUrl], isLearner },
      timeoutMs,
    );
    return toMember(res.member);
  }

  async memberRemove(id: string, timeoutMs: number): Promise<void> {
    await call(this.cluster.memberRemove.bind(this.cluster), { ID: id }, timeoutMs);
  }

  async memberPromote(id: string, timeoutMs: number): Promise<void> {
    await call(this.cluster.memberPromote.bind(this.cluster), { ID: id }, timeoutMs);
  }

  /** Maintenance.MoveLeader: only the leader accepts it. */
  async moveLeader(targetId: string, timeoutMs: number): Promise<void> {
    await call(this.maintenance.moveLeader.bind(this.maintenance), { targetID: targetId }, timeoutMs);
  }
}

function call<Req, Res>(method: Unary<Req, Res>, request: Req, timeoutMs: number): Promise<Res> {
  return new Promise((resolveCall, rejectCall) => {
    method(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) rejectCall(err);
      else resolveCall(res);
    });
  });
}

/** The first key after every key with this prefix (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
