// The member-to-member transport: gRPC on the peer URLs (proto/internal/peer.proto).
//
// Outbound: one client-streaming call per peer, opened on first use and kept open; every
// Ready's messages for that peer go out as one RaftBatch. When a call fails the peer is reported
// unreachable to Raft (which then probes instead of pipelining), messages are dropped while a
// reconnect backoff runs (Raft retransmits), and the next batch reopens the call.
// Snapshots travel on their own call: header, image chunks, CRC trailer.
// Inbound: the same service, served on --listen-peer-urls by @etcd-ts/api's GrpcHttp2Server (the
// client port's HTTP/2 core); outbound calls on the client role of that core (peer-session.ts).
// Neither is grpc-js any more: the wire is unchanged, so a member of the previous version talks
// to this one both ways.
// Every call opens with etcd's peer headers, `x-server-from` (the sender's member ID) and
// `x-etcd-cluster-id`, so a proxy on a shared port can tell senders apart, and a member refuses
// another cluster's call before reading any of it (etcd answers 412 "cluster ID mismatch").
import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  type CallStatus,
  EtcdError,
  type etcdserverpb,
  GrpcHttp2Server,
  peer,
  rejectionMessage,
  type ServerCall,
  type ServerTls,
  type TlsRejection,
} from "@etcd-ts/api";
import { decodeMessage, encodeMessage, type Message, type SnapshotMetadata } from "@etcd-ts/raft";
import { Metadata, status } from "@grpc/grpc-js";
import { crc32c } from "@node-rs/crc32";
import { formatId, parseId } from "../membership/member-id.js";
import {
  batchByRecipient,
  decodeRaftBatch,
  encodeRaftBatchMessage,
  grpcTarget,
  nextBackoffMs,
} from "./message-batching.js";
import { type CallOutcome, type PeerCall, PeerSession } from "./peer-session.js";
import { channelCredentialsFor, type DialTls } from "./tls-credentials.js";

/** etcd's peer request headers (rafthttp), lowercased as HTTP/2 requires; IDs in etcd's hex. */
export const SERVER_FROM_HEADER = "x-server-from";
export const CLUSTER_ID_HEADER = "x-etcd-cluster-id";

export interface TransportLogger {
  info(details: Record<string, unknown>, message: string): void;
  warn(details: Record<string, unknown>, message: string): void;
}

export interface PeerTransportHandler {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  /** Raft messages from a peer, in order. */
  receive(messages: Message[]): void;
  /** Members removed from the cluster may not talk to it any more. */
  isRemoved(memberId: bigint): boolean;
  clusterInfo(): peer.ClusterInfoResponse;
  /**
   * This member's HashKV at `revision` (0: its current one) for a peer's corruption check; throws
   * etcd's errors (compacted, future revision).
   */
  hashKV(revision: number): Promise<etcdserverpb.HashKVResponse>;
  /** Raft's outbound failures. */
  reportUnreachable(memberId: bigint): void;
  reportSnapshot(memberId: bigint, ok: boolean): void;
  /**
   * Writes a consistent image of the state machine to `path`; returns its size in bytes and the
   * snapshot metadata of what it holds (its applied index, term and configuration), which the
   * MsgSnap carries instead of the Raft snapshot's.
   */
  writeSnapshotImage(path: string): Promise<{ size: number; metadata: SnapshotMetadata }>;
  /** A MsgSnap whose image was received whole into `imagePath`: hand it to Raft. */
  snapshotReceived(message: Message, imagePath: string): Promise<void>;
  /** A snapshot call that failed on this side (`from` unknown when it failed before its header). */
  snapshotReceiveFailed?(from: bigint | undefined): void;
  /** Where to stage snapshot images. */
  readonly snapshotDir: string;
  /** Message bytes sent to and received from each peer (etcd_network_peer_*_bytes_total). */
  bytesSent?(to: bigint, bytes: number): void;
  bytesReceived?(from: bigint, bytes: number): void;
  /** Messages to one peer dropped before reaching its stream (unreachable or backed up). */
  dropped?(messages: readonly Message[]): void;
}

const CHUNK_BYTES = 256 * 1024;
const STREAM_PATH = peer.RaftPeerService.stream.path;
const SNAPSHOT_PATH = peer.RaftPeerService.snapshot.path;
const CLUSTER_INFO_PATH = peer.RaftPeerService.clusterInfo.path;
const encodeSnapshotChunk = peer.RaftPeerService.snapshot.requestSerialize;
const decodeSnapshotChunk = peer.RaftPeerService.snapshot.requestDeserialize;
const encodeClusterInfo = peer.RaftPeerService.clusterInfo.responseSerialize;
const HASH_KV_PATH = peer.RaftPeerService.hashKv.path;
const decodeHashKVRequest = peer.RaftPeerService.hashKv.requestDeserialize;
const encodeHashKV = peer.RaftPeerService.hashKv.responseSerialize;
/** StreamClosed and SnapshotAccepted: empty messages, the answer a grpc-js client waits for. */
const EMPTY_ANSWER = new Uint8Array(0);
/** Bytes queued on one peer's stream beyond which messages are dropped (Raft resends). */
const MAX_QUEUED_BYTES = 32 * 1024 * 1024;
/** As the grpc-js channels before: a ping every 5 s, the peer dead if unanswered for 5 s more. */
const KEEPALIVE_MS = 5000;
const KEEPALIVE_TIMEOUT_MS = 5000;
/** A peer that answers but refuses our messages (another cluster, no permission) is retried slowly. */
const REFUSED_RETRY_MS = 1000;
/**
 * Where nothing listens (ECONNREFUSED: the member is down or restarting) the link redials at
 * least every 100 ms, as etcd's rafthttp redials a stream: a restarted member hears from its
 * leader at the next heartbeat after it listens, not up to a second later (that wait was ~0.5 s
 * of a restart's time). A refused TCP connect costs the peer nothing and logs nothing there;
 * failures past it (TLS, timeouts) keep the growing backoff.
 */
const DOWN_RETRY_CAP_MS = 100;

/** One peer: its session, and the Raft stream on it. */
class PeerLink {
  private peerSession: PeerSession | undefined;
  private stream: PeerCall | undefined;
  private retryAt = 0;
  private backoffMs = 0;
  private closed = false;

  constructor(
    readonly id: bigint,
    public urls: string[],
    private readonly owner: PeerTransport,
  ) {}

  get session(): PeerSession {
    this.peerSession ??= new PeerSession(this.urls[0]!, this.owner.dial, {
      keepaliveMs: KEEPALIVE_MS,
      keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
      // Backoff grows only while the peer cannot be reached or refuses the connection (not on
      // every failed call): a peer that closes right after the TLS handshake (our certificate's
      // CN not allowed) is redialled at the growing backoff, not every 50 ms with a warning there.
      accepted: () => {
        this.backoffMs = 0;
      },
    });
    return this.peerSession;
  }

  send(messages: Message[]): void {
    if (this.closed) return;
    const handler = this.owner.handler;
    const stream = this.open();
    if (stream === undefined || stream.writableLength > MAX_QUEUED_BYTES) {
      handler.reportUnreachable(this.id);
      handler.dropped?.(messages);
      return;
    }
    const { message, messageBytes } = encodeRaftBatchMessage(
      handler.clusterId,
      handler.memberId,
      this.id,
      messages,
    );
    // Ordering: one stream per peer, written in the order Raft emitted; the bytes reach the peer
    // in that order or the stream fails (and Raft, told the peer is unreachable, resends).
    stream.writeFramed(message);
    // Out now, not at the end of the turn: a MsgApp and its MsgAppResp are on every write's
    // path, and what the caller does after sending (the leader's WAL write, a follower's apply
    // of what the batch committed) is not. A Ready's messages to one peer are one batch, so this
    // is still one socket write per peer per Ready. What a message depends on is durable before
    // send is called (RaftLoop), so writing it sooner changes no guarantee.
    stream.flush();
    handler.bytesSent?.(this.id, messageBytes);
  }

  private open(): PeerCall | undefined {
    if (this.stream !== undefined) return this.stream;
    if (Date.now() < this.retryAt) return undefined;
    const stream = this.session.open(STREAM_PATH, this.owner.callHeaders());
    if (stream.done) return undefined;
    stream.onDone((outcome) => {
      if (this.stream === stream) this.stream = undefined;
      // A stream that ends OK (the peer closed it cleanly) is simply reopened.
      if (outcome.code !== status.OK && !this.closed) this.failed(outcome);
    });
    this.stream = stream;
    return stream;
  }

  private failed(outcome: CallOutcome): void {
    const refused = outcome.code === status.FAILED_PRECONDITION || outcome.code === status.PERMISSION_DENIED;
    if (refused) this.backoffMs = REFUSED_RETRY_MS;
    else if (outcome.socketError === "ECONNREFUSED")
      this.backoffMs = nextBackoffMs(this.backoffMs, 50, DOWN_RETRY_CAP_MS);
    else this.backoffMs = nextBackoffMs(this.backoffMs);
    this.retryAt = Date.now() + this.backoffMs;
    this.owner.handler.reportUnreachable(this.id);
    if (refused) {
      this.owner.logger.warn(
        { peer: this.id.toString(16), error: outcome.details },
        "peer refused our messages",
      );
    }
  }

  updateUrls(urls: string[]): void {
    if (urls.join(",") === this.urls.join(",")) return;
    this.urls = urls;
    this.reset();
  }

  reset(): void {
    this.stream?.end();
    this.stream = undefined;
    this.peerSession?.close();
    this.peerSession = undefined;
  }

  close(): void {
    this.closed = true;
    this.reset();
  }
}

export class PeerTransport {
  private readonly links = new Map<bigint, PeerLink>();
  private readonly servers: GrpcHttp2Server[] = [];
  private snapshotSeq = 0;

  /** `dial`: how https peer URLs are dialled (tls-credentials.ts). */
  constructor(
    readonly handler: PeerTransportHandler,
    readonly logger: TransportLogger,
    readonly dial: DialTls = undefined,
  ) {}

  /**
   * Serves the peer service on each URL; https URLs with `tls` (certificate files or auto-TLS).
   * A peer refused by TLS or etcd's certificate checks is logged as etcd logs it. `alsoServe`
   * adds the other services of the peer port (services/auth's AuthBackend).
   */
  async listen(
    urls: readonly URL[],
    tls?: ServerTls,
    alsoServe?: (server: GrpcHttp2Server) => void,
  ): Promise<void> {
    for (const url of urls) {
      if (url.protocol === "https:" && tls === undefined) {
        throw new Error(
          `TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url ${url.href} with HTTPS scheme`,
        );
      }
      const server = new GrpcHttp2Server({
        ...(url.protocol === "https:" ? { tls } : {}),
        onTlsRejected: (r: TlsRejection) => this.logger.warn({ ...r }, rejectionMessage(r)),
        // Only HTTP/2 on this port: connections go to it unread.
        routeFirstBytes: false,
      });
      server.register(STREAM_PATH, { kind: "bidi", handle: (call) => this.serveStream(call) });
      server.register(SNAPSHOT_PATH, { kind: "bidi", handle: (call) => this.serveSnapshot(call) });
      server.register(CLUSTER_INFO_PATH, {
        kind: "unary",
        handle: (call) => call.finishWith(encodeClusterInfo(this.handler.clusterInfo()), { code: status.OK }),
      });
      server.register(HASH_KV_PATH, { kind: "unary", handle: (call) => void this.serveHashKV(call) });
      alsoServe?.(server);
      this.servers.push(server);
      await server.listen(grpcTarget(url.toString()));
    }
  }

  /** The headers every outbound peer call opens with (read at each open: the IDs can change on join). */
  callHeaders(): Record<string, string> {
    return {
      [SERVER_FROM_HEADER]: formatId(this.handler.memberId),
      [CLUSTER_ID_HEADER]: formatId(this.handler.clusterId),
    };
  }

  /** Keeps the set of peers in step with the membership (self excluded). */
  setPeers(peers: ReadonlyMap<bigint, string[]>): void {
    for (const [id, urls] of peers) {
      if (id === this.handler.memberId || urls.length === 0) continue;
      const link = this.links.get(id);
      if (link === undefined) this.links.set(id, new PeerLink(id, urls, this));
      else link.updateUrls(urls);
    }
    for (const [id, link] of this.links) {
      if (!peers.has(id)) {
        link.close();
        this.links.delete(id);
      }
    }
  }

  send(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    const { byPeer, snapshots } = batchByRecipient(messages);
    for (const [to, batch] of byPeer) {
      const link = this.links.get(to);
      if (link === undefined) {
        this.handler.reportUnreachable(to);
        this.handler.dropped?.(batch);
      } else link.send(batch);
    }
    for (const m of snapshots) void this.sendSnapshot(m);
  }

  private async sendSnapshot(message: Message): Promise<void> {
    const link = this.links.get(message.to);
    if (link === undefined) {
      this.handler.reportSnapshot(message.to, false);
      return;
    }
    const path = join(this.handler.snapshotDir, `outgoing-${process.pid}-${++this.snapshotSeq}.image`);
    let call: PeerCall | undefined;
    try {
      // The message goes out with the image's own metadata, not the Raft snapshot's it asked for.
      const { size, metadata } = await this.handler.writeSnapshotImage(path);
      const headerMessage: Message = { ...message, snapshot: { metadata, data: new Uint8Array(0) } };
      call = link.session.open(SNAPSHOT_PATH, this.callHeaders());
      call.write(
        encodeSnapshotChunk({
          header: {
            clusterId: this.handler.clusterId,
            from: this.handler.memberId,
            to: message.to,
            message: Buffer.from(encodeMessage(headerMessage)),
            dataSize: BigInt(size),
          },
        }),
      );
      let crc = 0;
      for await (const chunk of createReadStream(path, { highWaterMark: CHUNK_BYTES })) {
        if (call.done) break;
        const data = chunk as Buffer;
        crc = crc32c(data, crc);
        if (!call.write(encodeSnapshotChunk({ data }))) await call.room();
      }
      call.write(encodeSnapshotChunk({ trailer: { crc32c: crc } }));
      call.end();
      const outcome = await call.finished();
      if (outcome.code !== status.OK) throw new Error(`${status[outcome.code]}: ${outcome.details}`);
      this.logger.info({ to: message.to.toString(16), bytes: size }, "sent snapshot");
      this.handler.reportSnapshot(message.to, true);
    } catch (err) {
      call?.cancel();
      this.logger.warn({ to: message.to.toString(16), error: String(err) }, "failed to send snapshot");
      this.handler.reportSnapshot(message.to, false);
    } finally {
      await rm(path, { force: true });
    }
  }

  /** The Raft stream from one peer: its batches, in order, to Raft. */
  private serveStream(call: ServerCall): void {
    const openRefusal = this.callRefusal(call);
    if (openRefusal !== undefined) {
      call.finish(openRefusal);
      return;
    }
    call.on("message", (bytes: Buffer) => {
      // After finish (a refusal below) the call delivers no more messages.
      let batch: ReturnType<typeof decodeRaftBatch>;
      try {
        batch = decodeRaftBatch(bytes);
      } catch (err) {
        call.finish({ code: status.INTERNAL, details: `Error deserializing request: ${String(err)}` });
        return;
      }
      const refusal = this.refusal(batch.clusterId, batch.from, batch.to);
      if (refusal !== undefined) {
        call.finish(refusal);
        return;
      }
      const messages: Message[] = new Array(batch.messages.length);
      let messageBytes = 0;
      for (let i = 0; i < batch.messages.length; i++) {
        messageBytes += batch.messages[i]!.length;
        messages[i] = decodeMessage(batch.messages[i]!);
      }
      this.handler.bytesReceived?.(batch.from, messageBytes);
      this.handler.receive(messages);
    });
    call.on("halfClose", () => call.finishWith(EMPTY_ANSWER, { code: status.OK }));
  }

  private serveSnapshot(call: ServerCall): void {
    const openRefusal = this.callRefusal(call);
    if (openRefusal !== undefined) {
      call.finish(openRefusal);
      return;
    }
    void this.receiveSnapshot(call).then(
      () => call.finishWith(EMPTY_ANSWER, { code: status.OK }),
      (err: unknown) => call.finish(isStatus(err) ? err : { code: status.INTERNAL, details: String(err) }),
    );
  }

  /**
   * A call refused from its headers alone, before any of its body is read. A call without the
   * headers (a member from before they were sent) is let through: its batches and snapshot
   * header still carry the cluster ID, checked by `refusal`.
   */
  private callRefusal(call: ServerCall): CallStatus | undefined {
    const from = call.header(SERVER_FROM_HEADER);
    const clusterId = call.header(CLUSTER_ID_HEADER);
    if (clusterId !== undefined && clusterId !== formatId(this.handler.clusterId)) {
      this.logger.warn(
        {
          "local-member-id": formatId(this.handler.memberId),
          "local-member-cluster-id": formatId(this.handler.clusterId),
          "remote-peer-id": from ?? "",
          "remote-peer-cluster-id": clusterId,
        },
        "request cluster ID mismatch",
      );
      return { code: status.FAILED_PRECONDITION, details: "etcdserver: cluster ID mismatch" };
    }
    const fromId = from === undefined ? undefined : parseId(from);
    if (fromId !== undefined && this.handler.isRemoved(fromId)) {
      this.logger.warn({ "remote-peer-id": from }, "rejected a call from a member removed from the cluster");
      return { code: status.PERMISSION_DENIED, details: "the sender was removed from the cluster" };
    }
    return undefined;
  }

  private refusal(clusterId: bigint, from: bigint, to: bigint): CallStatus | undefined {
    if (clusterId !== this.handler.clusterId) {
      return { code: status.FAILED_PRECONDITION, details: "etcdserver: cluster ID mismatch" };
    }
    if (this.handler.isRemoved(from)) {
      return { code: status.PERMISSION_DENIED, details: "the sender was removed from the cluster" };
    }
    if (to !== this.handler.memberId) {
      return { code: status.FAILED_PRECONDITION, details: "message addressed to another member ID" };
    }
    return undefined;
  }

  /** A peer's corruption check: another cluster's hash compares with nothing, so it is refused. */
  private async serveHashKV(call: ServerCall): Promise<void> {
    const refused = this.callRefusal(call);
    if (refused !== undefined) {
      call.finish(refused);
      return;
    }
    let answer: Uint8Array;
    try {
      const { revision } = decodeHashKVRequest(call.request as Buffer);
      answer = encodeHashKV(await this.handler.hashKV(Number(revision)));
    } catch (err) {
      // etcd's own errors keep their code and message (the asking member logs them).
      call.finish(
        err instanceof EtcdError
          ? { code: err.code, details: err.details }
          : { code: status.UNKNOWN, details: err instanceof Error ? err.message : String(err) },
      );
      return;
    }
    if (!call.cancelled) call.finishWith(answer, { code: status.OK });
  }

  /**
   * Writes the image to a staging file as it arrives (the sender waits while the disk is slower:
   * the call pauses reading), checks its size and CRC, then hands the MsgSnap to Raft.
   */
  private async receiveSnapshot(call: ServerCall): Promise<void> {
    const path = join(this.handler.snapshotDir, `incoming-${process.pid}-${++this.snapshotSeq}.image`);
    const out = createWriteStream(path);
    let header: peer.SnapshotHeader | undefined;
    let trailer: peer.SnapshotTrailer | undefined;
    let crc = 0;
    let received = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        let failed = false;
        const fail = (err: unknown) => {
          if (failed) return;
          failed = true;
          reject(err);
        };
        out.on("error", fail);
        call.on("cancelled", () => fail(statusError(status.CANCELLED, "the sender went away")));
        call.on("message", (bytes: Buffer) => {
          if (failed) return;
          let chunk: peer.SnapshotChunk;
          try {
            chunk = decodeSnapshotChunk(bytes);
          } catch (err) {
            fail(statusError(status.INTERNAL, `Error deserializing request: ${String(err)}`));
            return;
          }
          if (chunk.header) header = chunk.header;
          else if (chunk.data) {
            if (header === undefined) {
              fail(statusError(status.INVALID_ARGUMENT, "snapshot data before its header"));
              return;
            }
            crc = crc32c(chunk.data, crc);
            received += chunk.data.length;
            if (!out.write(chunk.data)) pauseUntilDrained(call, out);
          } else if (chunk.trailer) trailer = chunk.trailer;
        });
        call.on("halfClose", () => {
          if (failed) return;
          out.end(() => (failed ? undefined : resolve()));
        });
      });
      if (header === undefined || trailer === undefined) {
        throw statusError(status.INVALID_ARGUMENT, "snapshot without header or trailer");
      }
      const refusal = this.refusal(header.clusterId, header.from, header.to);
      if (refusal !== undefined) throw refusal;
      if (BigInt(received) !== header.dataSize || trailer.crc32c !== crc) {
        throw statusError(status.DATA_LOSS, "snapshot image failed its size or CRC check");
      }
      await this.handler.snapshotReceived(decodeMessage(header.message), path);
    } catch (err) {
      out.destroy();
      this.handler.snapshotReceiveFailed?.(header?.from);
      await rm(path, { force: true });
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const link of this.links.values()) link.close();
    this.links.clear();
    await Promise.all(this.servers.splice(0).map((s) => s.close(500)));
  }
}

/** Asks the sender to wait while the staging file's buffer is full. */
function pauseUntilDrained(call: ServerCall, out: WriteStream): void {
  call.pauseReading();
  out.once("drain", () => call.resumeReading());
}

function statusError(code: status, details: string): CallStatus {
  return { code, details };
}

function isStatus(err: unknown): err is CallStatus {
  return (
    typeof err === "object" &&
    err !== null &&
    "code" in err &&
    typeof (err as { code: unknown }).code === "number"
  );
}

/** Asks the peers at `urls`, one after another, for the cluster's membership. */
export async function fetchClusterInfo(
  urls: readonly string[],
  dial: DialTls,
  timeoutMs = 3000,
): Promise<peer.ClusterInfoResponse> {
  let lastError: unknown = new Error("no peer URL to ask");
  for (const url of urls) {
    const client = new peer.RaftPeerClient(grpcTarget(url), channelCredentialsFor(url, dial));
    try {
      return await new Promise<peer.ClusterInfoResponse>((resolve, reject) =>
        client.clusterInfo({}, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) =>
          err ? reject(err) : resolve(res),
        ),
      );
    } catch (err) {
      lastError = err;
    } finally {
      client.close();
    }
  }
  throw lastError;
}
