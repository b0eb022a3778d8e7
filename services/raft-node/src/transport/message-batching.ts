// One Ready's messages grouped per recipient, in the order Raft emitted them, so the transport
// writes one stream message per peer per Ready. Snapshots are set apart: their state-machine
// image travels on its own call.
import { WireReader, WireWriter } from "@etcd-ts/api";
import {
  encodedMessageSize,
  MESSAGE_WRITE_SLACK,
  type Message,
  MessageType,
  writeMessage,
} from "@etcd-ts/raft";
import { varintSize, writeVarint } from "../mvcc/mod.js";

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
 * the generated encoder writes.
 */
export function encodeRaftBatch(
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
): { batch: Buffer; messageBytes: number } {
  const { bytes, messageBytes } = writeRaftBatch(clusterId, from, to, messages, 0);
  return { batch: bytes, messageBytes };
}

/**
 * The same batch as one gRPC message on the wire (flag 0, 4-byte big-endian length, the batch):
 * the stream writes it as it is.
 */
export function encodeRaftBatchMessage(
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
): { message: Buffer; messageBytes: number } {
  const { bytes, messageBytes } = writeRaftBatch(clusterId, from, to, messages, GRPC_PREFIX_BYTES);
  bytes[0] = 0;
  bytes.writeUInt32BE(bytes.length - GRPC_PREFIX_BYTES, 1);
  return { message: bytes, messageBytes };
}

const GRPC_PREFIX_BYTES = 5;
const TAG_MESSAGES = 0x22; // field 4, length-delimited

/**
 * A RaftBatch's fields after `prefix` bytes left for the caller, in one buffer of its exact size:
 * each message is sized first and written in place, so an entry's data is copied once per peer
 * (it was encoded into a buffer of its own, then copied into the batch). Returns the bytes of
 * its encoded messages too.
 */
function writeRaftBatch(
  clusterId: bigint,
  from: bigint,
  to: bigint,
  messages: readonly Message[],
  prefix: number,
): { bytes: Buffer; messageBytes: number } {
  const head = batchHead(clusterId, from, to);
  const sizes = new Array<number>(messages.length);
  let messageBytes = 0;
  let total = prefix + head.length;
  for (let i = 0; i < messages.length; i++) {
    const size = encodedMessageSize(messages[i]!);
    sizes[i] = size;
    messageBytes += size;
    total += 1 + varintSize(size) + size;
  }
  const out = Buffer.allocUnsafe(total + MESSAGE_WRITE_SLACK);
  out.set(head, prefix);
  let pos = prefix + head.length;
  for (let i = 0; i < messages.length; i++) {
    out[pos++] = TAG_MESSAGES;
    pos = writeVarint(out, pos, sizes[i]!);
    const end = writeMessage(out, pos, messages[i]!);
    if (end !== pos + sizes[i]!) throw new Error(`raft message sized ${sizes[i]} bytes took ${end - pos}`);
    pos = end;
  }
  return { bytes: out.subarray(0, total), messageBytes };
}

/** Each recipient's last batch head: every batch to a peer carries the same three IDs. */
const heads = new Map<bigint, { clusterId: bigint; from: bigint; bytes: Uint8Array }>();
const MAX_HEADS = 64;

/**
 * A RaftBatch's ID fields (1-3) as bytes, encoded once per recipient rather than per batch (bigint
 * work, an array and a concat each time: ~3 KB of young garbage per put at one client, profiled).
 * Relies on: the bytes are a pure function of the three IDs, compared by value, and callers only
 * copy them. Bounded: a member talks to a handful of peers; a cleared map is refilled on use.
 */
export function batchHead(clusterId: bigint, from: bigint, to: bigint): Uint8Array {
  const cached = heads.get(to);
  if (cached !== undefined && cached.clusterId === clusterId && cached.from === from) return cached.bytes;
  const w = new WireWriter();
  if (clusterId !== 0n) w.varintField(1, clusterId);
  if (from !== 0n) w.varintField(2, from);
  if (to !== 0n) w.varintField(3, to);
  const bytes = w.finish();
  if (heads.size >= MAX_HEADS) heads.clear();
  heads.set(to, { clusterId, from, bytes });
  return bytes;
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
