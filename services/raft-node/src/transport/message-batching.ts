// One Ready's messages grouped per recipient, in the order Raft emitted them, so the transport
// writes one stream message per peer per Ready. Snapshots are set apart: their state-machine
// image travels on its own call.
import { WireReader, WireWriter } from "@etcd-ts/api";
import { encodeMessage, type Message, MessageType } from "@etcd-ts/raft";

export interface OutboundBatches {
  byPeer: Map<bigint, Message[]>;
  snapshots: Message[];
}

export function batchByRecipient(messages: readonly Message[]): OutboundBatches {
  const byPeer = new Map<bigint, Message[]>();
  const snapshots: Message[] = [];
  for (const m of messages) {
    if (m.type === MessageType.MsgSnap) {
      snapshots.push(m);
      continue;
    }
    let list = byPeer.get(m.to);
    if (list === undefined) {
      list = [];
      byPeer.set(m.to, list);
    }
    list.push(m);
  }
  return { byPeer, snapshots };
}

/**
 * One peer's messages as the bytes of a RaftBatch (proto/internal/peer.proto), the same bytes
 * the generated encoder writes. Each message is encoded once and copied once, into the batch:
 * the generated path copied it three times (to a Buffer, into its writer, out of it).
 */
export function encodeRaftBatch(
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
): { batch: Buffer; messageBytes: number } {
  const w = new WireWriter();
  const messageBytes = writeRaftBatch(w, clusterId, from, to, messages);
  return { batch: w.finish(), messageBytes };
}

/**
 * The same batch as one gRPC message on the wire (flag 0, 4-byte big-endian length, the batch):
 * the stream writes it as it is, so the batch is copied once, into this buffer.
 */
export function encodeRaftBatchMessage(
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
): { message: Buffer; messageBytes: number } {
  const w = new WireWriter();
  w.raw(new Uint8Array(GRPC_PREFIX_BYTES));
  const messageBytes = writeRaftBatch(w, clusterId, from, to, messages);
  const message = w.finish();
  message.writeUInt32BE(message.length - GRPC_PREFIX_BYTES, 1);
  return { message, messageBytes };
}

const GRPC_PREFIX_BYTES = 5;

/** Appends a RaftBatch's fields; returns the bytes of its encoded messages. */
function writeRaftBatch(
  w: WireWriter,
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
): number {
  if (clusterId !== 0n) w.varintField(1, clusterId);
  if (from !== 0n) w.varintField(2, from);
  if (to !== 0n) w.varintField(3, to);
  let messageBytes = 0;
  for (let i = 0; i < messages.length; i++) {
    const encoded = encodeMessage(messages[i]!);
    messageBytes += encoded.length;
    w.bytesField(4, encoded);
  }
  return messageBytes;
}

export interface DecodedRaftBatch {
  clusterId: bigint;
  from: bigint;
  to: bigint;
  /** Each message's bytes, a view into the batch (decodeMessage copies what it keeps). */
  messages: Uint8Array[];
}

/**
 * A RaftBatch's fields as the generated decoder reads them, without its copy of every message:
 * the batch's buffer is the receiver's own (one per gRPC message), never reused.
 */
export function decodeRaftBatch(bytes: Uint8Array): DecodedRaftBatch {
  const batch: DecodedRaftBatch = { clusterId: 0n, from: 0n, to: 0n, messages: [] };
  const r = new WireReader(bytes);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === 0) batch.clusterId = r.varintU64();
    else if (r.fieldNumber === 2 && r.wireType === 0) batch.from = r.varintU64();
    else if (r.fieldNumber === 3 && r.wireType === 0) batch.to = r.varintU64();
    else if (r.fieldNumber === 4 && r.wireType === 2) batch.messages.push(r.bytes());
    else r.skip();
  }
  return batch;
}

/** "http://127.0.0.1:2380" -> "127.0.0.1:2380", the target grpc-js dials. */
export function grpcTarget(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === "unix:") return `unix:${parsed.pathname || parsed.host}`;
  const port = parsed.port || (parsed.protocol === "https:" ? "443" : "80");
  return `${parsed.hostname}:${port}`;
}

/** Exponential reconnect backoff, capped. */
export function nextBackoffMs(previousMs: number, minMs = 50, maxMs = 1000): number {
  if (previousMs <= 0) return minMs;
  return Math.min(maxMs, previousMs * 2);
}
