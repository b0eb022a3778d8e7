// The member-to-member transport: gRPC on the peer URLs (proto/internal/peer.proto).
//
// Outbound: one client-streaming call per peer, opened on first use and kept open; every
// Ready's messages for that peer go out as one RaftBatch. When a call fails the peer is reported
// unreachable to Raft (which then probes instead of pipelining), messages are dropped while a
// reconnect backoff runs (Raft retransmits), and the next batch reopens the call.
// Snapshots travel on their own call: header, image chunks, CRC trailer.
// Inbound: the same service, served on --listen-peer-urls.
// Every call opens with etcd's peer headers, `x-server-from` (the sender's member ID) and
// `x-etcd-cluster-id`, so a proxy on a shared port can tell senders apart, and a member refuses
// another cluster's call before reading any of it (etcd answers 412 "cluster ID mismatch").
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import {
  type GrpcListener,
  listenGrpc,
  peer,
  rejectionMessage,
  type ServerTls,
  type TlsRejection,
} from "@etcd-ts/api";
import { decodeMessage, encodeMessage, type Message, type SnapshotMetadata } from "@etcd-ts/raft";
import {
  type ClientWritableStream,
  Metadata,
  type Server,
  ServerCredentials,
  type ServerReadableStream,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { crc32c } from "@node-rs/crc32";
import { formatId, parseId } from "../membership/member-id.js";
import { batchByRecipient, encodeRaftBatch, grpcTarget, nextBackoffMs } from "./message-batching.js";
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
const STREAM_METHOD = peer.RaftPeerService.stream;
/** Bytes queued on one peer's stream beyond which messages are dropped (Raft resends). */
const MAX_QUEUED_BYTES = 32 * 1024 * 1024;
const CHANNEL_OPTIONS = {
  "grpc.enable_channelz": 0,
  "grpc.max_receive_message_length": -1,
  "grpc.max_send_message_length": -1,
  "grpc.keepalive_time_ms": 5000,
  "grpc.keepalive_timeout_ms": 5000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
};

class PeerLink {
  private client: InstanceType<typeof peer.RaftPeerClient> | undefined;
  private stream: ClientWritableStream<Buffer> | undefined;
  private retryAt = 0;
  private backoffMs = 0;
  private closed = false;

  constructor(
    readonly id: bigint,
    public urls: string[],
    private readonly owner: PeerTransport,
  ) {}

  get rpc(): InstanceType<typeof peer.RaftPeerClient> {
    if (this.client === undefined) {
      const url = this.urls[0]!;
      this.client = new peer.RaftPeerClient(
        grpcTarget(url),
        channelCredentialsFor(url, this.owner.dial),
        CHANNEL_OPTIONS,
      );
    }
    return this.client;
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
    const { batch, messageBytes } = encodeRaftBatch(handler.clusterId, handler.memberId, this.id, messages);
    stream.write(batch);
    handler.bytesSent?.(this.id, messageBytes);
  }

  private open(): ClientWritableStream<Buffer> | undefined {
    if (this.stream !== undefined) return this.stream;
    if (Date.now() < this.retryAt) return undefined;
    // The Stream method with the batch already in wire form (encodeRaftBatch).
    const stream = this.rpc.makeClientStreamRequest(
      STREAM_METHOD.path,
      (batch: Buffer) => batch,
      STREAM_METHOD.responseDeserialize,
      this.owner.callHeaders(),
      (err: ServiceError | null) => {
        if (this.stream === stream) this.stream = undefined;
        if (err && !this.closed) this.failed(err);
      },
    );
    // A stream that ends without an error (the peer restarted cleanly) is simply reopened.
    stream.on("error", () => {});
    this.stream = stream;
    this.backoffMs = 0;
    return stream;
  }

  private failed(err: ServiceError): void {
    this.backoffMs = nextBackoffMs(this.backoffMs);
    this.retryAt = Date.now() + this.backoffMs;
    this.owner.handler.reportUnreachable(this.id);
    if (err.code === status.FAILED_PRECONDITION || err.code === status.PERMISSION_DENIED) {
      this.owner.logger.warn({ peer: this.id.toString(16), error: err.details }, "peer refused our messages");
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
    this.client?.close();
    this.client = undefined;
  }

  close(): void {
    this.closed = true;
    this.reset();
  }
}

export class PeerTransport {
  private readonly links = new Map<bigint, PeerLink>();
  private readonly servers: Server[] = [];
  private readonly listeners: GrpcListener[] = [];
  private snapshotSeq = 0;

  /** `dial`: how https peer URLs are dialled (tls-credentials.ts). */
  constructor(
    readonly handler: PeerTransportHandler,
    readonly logger: TransportLogger,
    readonly dial: DialTls = undefined,
  ) {}

  /**
   * Serves the peer service on each URL; https URLs with `tls` (certificate files or auto-TLS).
   * A peer refused by TLS or etcd's certificate checks is logged as etcd logs it.
   */
  async listen(server: Server, urls: readonly URL[], tls?: ServerTls): Promise<void> {
    server.addService(peer.RaftPeerService, this.serviceImplementation());
    for (const url of urls) {
      if (url.protocol === "https:" && tls === undefined) {
        throw new Error(
          `TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url ${url.href} with HTTPS scheme`,
        );
      }
      const rejected = (r: TlsRejection) => this.logger.warn({ ...r }, rejectionMessage(r));
      this.listeners.push(
        await listenGrpc(
          server,
          grpcTarget(url.toString()),
          ServerCredentials.createInsecure(),
          url.protocol === "https:" && tls !== undefined ? { config: tls, rejected } : undefined,
        ),
      );
    }
    this.servers.push(server);
  }

  /** The headers every outbound peer call opens with (read at each open: the IDs can change on join). */
  callHeaders(): Metadata {
    const headers = new Metadata();
    headers.set(SERVER_FROM_HEADER, formatId(this.handler.memberId));
    headers.set(CLUSTER_ID_HEADER, formatId(this.handler.clusterId));
    return headers;
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
    try {
      // The message goes out with the image's own metadata, not the Raft snapshot's it asked for.
      const { size, metadata } = await this.handler.writeSnapshotImage(path);
      const headerMessage: Message = { ...message, snapshot: { metadata, data: new Uint8Array(0) } };
      await new Promise<void>((resolve, reject) => {
        const call = link.rpc.snapshot(this.callHeaders(), (err) => (err ? reject(err) : resolve()));
        call.write({
          header: {
            clusterId: this.handler.clusterId,
            from: this.handler.memberId,
            to: message.to,
            message: Buffer.from(encodeMessage(headerMessage)),
            dataSize: BigInt(size),
          },
        });
        let crc = 0;
        const file = createReadStream(path, { highWaterMark: CHUNK_BYTES });
        file.on("data", (chunk) => {
          const data = chunk as Buffer;
          crc = crc32c(data, crc);
          if (!call.write({ data })) {
            file.pause();
            call.once("drain", () => file.resume());
          }
        });
        file.on("error", (err) => {
          call.cancel();
          reject(err);
        });
        file.on("end", () => {
          call.write({ trailer: { crc32c: crc } });
          call.end();
        });
      });
      this.logger.info({ to: message.to.toString(16), bytes: size }, "sent snapshot");
      this.handler.reportSnapshot(message.to, true);
    } catch (err) {
      this.logger.warn({ to: message.to.toString(16), error: String(err) }, "failed to send snapshot");
      this.handler.reportSnapshot(message.to, false);
    } finally {
      await rm(path, { force: true });
    }
  }

  private serviceImplementation(): peer.RaftPeerServer {
    return {
      stream: (call, callback) => {
        const openRefusal = this.callRefusal(call.metadata);
        if (openRefusal !== undefined) {
          callback(openRefusal);
          return;
        }
        let refused = false;
        call.on("data", (batch: peer.RaftBatch) => {
          if (refused) return;
          const refusal = this.refusal(batch.clusterId, batch.from, batch.to);
          if (refusal !== undefined) {
            refused = true;
            callback(refusal);
            return;
          }
          const messages: Message[] = new Array(batch.messages.length);
          let bytes = 0;
          for (let i = 0; i < batch.messages.length; i++) {
            bytes += batch.messages[i]!.length;
            messages[i] = decodeMessage(batch.messages[i]);
          }
          this.handler.bytesReceived?.(batch.from, bytes);
          this.handler.receive(messages);
        });
        call.on("end", () => {
          if (!refused) callback(null, {});
        });
        call.on("error", () => {});
      },
      snapshot: (call, callback) => {
        const openRefusal = this.callRefusal(call.metadata);
        if (openRefusal !== undefined) {
          callback(openRefusal);
          return;
        }
        void this.receiveSnapshot(call).then(
          () => callback(null, {}),
          (err: unknown) =>
            callback(
              isStatus(err) ? err : { code: status.INTERNAL, details: String(err), name: "", message: "" },
            ),
        );
      },
      clusterInfo: (_call, callback) => {
        callback(null, this.handler.clusterInfo());
      },
    };
  }

  /**
   * A call refused from its headers alone, before any of its body is read. A call without the
   * headers (a member from before they were sent) is let through: its batches and snapshot
   * header still carry the cluster ID, checked by `refusal`.
   */
  private callRefusal(headers: Metadata): Partial<ServiceError> | undefined {
    const from = headerValue(headers, SERVER_FROM_HEADER);
    const clusterId = headerValue(headers, CLUSTER_ID_HEADER);
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

  private refusal(clusterId: bigint, from: bigint, to: bigint): Partial<ServiceError> | undefined {
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

  private async receiveSnapshot(call: ServerReadableStream<peer.SnapshotChunk, peer.SnapshotAccepted>) {
    const path = join(this.handler.snapshotDir, `incoming-${process.pid}-${++this.snapshotSeq}.image`);
    const out = createWriteStream(path);
    let header: peer.SnapshotHeader | undefined;
    let trailer: peer.SnapshotTrailer | undefined;
    let crc = 0;
    let received = 0;
    try {
      await pipeline(
        call,
        async function* (chunks: AsyncIterable<peer.SnapshotChunk>) {
          for await (const chunk of chunks) {
            if (chunk.header) header = chunk.header;
            else if (chunk.data) {
              if (header === undefined)
                throw statusError(status.INVALID_ARGUMENT, "snapshot data before its header");
              crc = crc32c(chunk.data, crc);
              received += chunk.data.length;
              yield chunk.data;
            } else if (chunk.trailer) trailer = chunk.trailer;
          }
        },
        out,
      );
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
      this.handler.snapshotReceiveFailed?.(header?.from);
      await rm(path, { force: true });
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const link of this.links.values()) link.close();
    this.links.clear();
    for (const l of this.listeners.splice(0)) l.close();
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.tryShutdown(() => resolve());
            setTimeout(() => {
              s.forceShutdown();
              resolve();
            }, 500).unref();
          }),
      ),
    );
  }
}

function headerValue(headers: Metadata, name: string): string | undefined {
  const [value] = headers.get(name);
  return typeof value === "string" ? value : undefined;
}

function statusError(code: status, details: string): Partial<ServiceError> {
  return { code, details };
}

function isStatus(err: unknown): err is ServiceError {
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
