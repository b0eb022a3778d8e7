// What a Raft entry carries: a small binary header naming the kind of request, the member that
// proposed it and that member's request sequence number, followed by the etcd request exactly
// as its protobuf bytes arrived from the client. The proposer decoded those bytes already; it
// never encodes them again, and the other members decode them once, at apply time.
//
// Layout (big-endian):
//   0  u8  format version (1)
//   1  u8  kind
//   2  u64 proposer member ID (all 64 bits)   } the pair identifies the waiting client call
//                                             } cluster-wide: sequence numbers are per member
//   10 u32 sequence, high bits
//   14 u32 sequence, low 32 bits
//   18 ... payload

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_HEADER_BYTES = 18;
const TWO_32 = 2 ** 32;

export enum EntryKind {
  Put = 1,
  DeleteRange = 2,
  Txn = 3,
  Compaction = 4,
  LeaseGrant = 5,
  LeaseRevoke = 6,
  LeaseCheckpoint = 7,
  Alarm = 8,
  /** A member's name and client URLs (etcd's "publish"): payload is an etcdserverpb.Member. */
  MemberAttributes = 9,
  /** New peer URLs for a member: payload is an etcdserverpb.Member. */
  MemberUpdate = 10,
  /** The context of a ConfChange entry: payload is the etcdserverpb.Member added or removed. */
  MemberConfChange = 11,
}

const KINDS = new Set<number>(Object.values(EntryKind).filter((v): v is number => typeof v === "number"));

export interface EntryEnvelope {
  kind: EntryKind;
  proposer: bigint;
  seq: number;
  /** A view into the entry's bytes; copy it to keep it past the entry's lifetime. */
  payload: Uint8Array;
}

export class EnvelopeFormatError extends Error {
  override name = "EnvelopeFormatError";
}

export function encodeEnvelope(kind: EntryKind, proposer: bigint, seq: number, payload: Uint8Array): Buffer {
  if (proposer < 0n || proposer >= 1n << 64n) throw new RangeError(`bad proposer ${proposer}`);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad sequence ${seq}`);
  const out = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + payload.length);
  out[0] = ENVELOPE_VERSION;
  out[1] = kind;
  out.writeBigUInt64BE(proposer, 2);
  out.writeUInt32BE(Math.floor(seq / TWO_32), 10);
  out.writeUInt32BE(seq % TWO_32, 14);
  out.set(payload, ENVELOPE_HEADER_BYTES);
  return out;
}

export function decodeEnvelope(bytes: Uint8Array): EntryEnvelope {
  if (bytes.length < ENVELOPE_HEADER_BYTES) {
    throw new EnvelopeFormatError(`entry of ${bytes.length} bytes is shorter than an envelope header`);
  }
  if (bytes[0] !== ENVELOPE_VERSION) throw new EnvelopeFormatError(`unknown envelope version ${bytes[0]}`);
  const kind = bytes[1];
  if (!KINDS.has(kind)) throw new EnvelopeFormatError(`unknown entry kind ${kind}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const proposer = view.getBigUint64(2);
  const seq = view.getUint32(10) * TWO_32 + view.getUint32(14);
  return { kind: kind as EntryKind, proposer, seq, payload: bytes.subarray(ENVELOPE_HEADER_BYTES) };
}
