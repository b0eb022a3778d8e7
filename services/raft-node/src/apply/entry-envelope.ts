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
//
// Version 2 (a request made by an authenticated caller, once auth is on) adds etcd's
// RequestHeader username/auth_revision after the sequence, so every member checks the same
// caller at the same auth revision when it applies the entry:
//   18 u32 auth revision, high bits; 22 u32 low 32 bits; 26 u16 username length; 28 username
//   28+n ... payload
//
// A request whose trace was sampled (OpenTelemetry) sets the version's high bit (0x81, 0x82)
// and carries the proposer's span context right after the 18 fixed bytes, before the caller
// fields: 16-byte trace ID, 8-byte span ID, 1 byte of trace flags. Other members' apply spans
// link to it. Unsampled requests carry no such bytes.

export const ENVELOPE_VERSION = 1;
export const ENVELOPE_VERSION_WITH_CALLER = 2;
export const ENVELOPE_HEADER_BYTES = 18;
/** Where the proposer's member ID and the sequence number sit in the header (the layout above). */
const PROPOSER_AT = 2;
const SEQ_AT = 10;
const TRACED = 0x80;
/** Trace ID, span ID, flags: telemetry's SPAN_CONTEXT_BYTES. */
export const ENVELOPE_TRACE_BYTES = 25;
const CALLER_FIXED_BYTES = 10;
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
  // Auth (etcd's InternalRaftRequest auth members); payloads are the etcdserverpb requests,
  // with passwords already hashed into hashedPassword (the plain password field is cleared).
  AuthEnable = 12,
  AuthDisable = 13,
  /** Payload: AuthenticateRequest whose `password` field carries the proposer's simple-token
   * prefix (etcd's InternalAuthenticateRequest.simple_token), never a password. */
  Authenticate = 14,
  AuthUserAdd = 15,
  AuthUserDelete = 16,
  AuthUserChangePassword = 17,
  AuthUserGrantRole = 18,
  AuthUserRevokeRole = 19,
  AuthUserGet = 20,
  AuthUserList = 21,
  AuthRoleAdd = 22,
  AuthRoleDelete = 23,
  AuthRoleGrantPermission = 24,
  AuthRoleRevokePermission = 25,
  AuthRoleGet = 26,
  AuthRoleList = 27,
  // services/auth's JWT verification keys (auth/published-keys.ts); payloads are
  // etcdts.authbackend.SigningKey and DeleteSigningKeyRequest. Proposed only from the peer port.
  AuthSigningKeyPut = 28,
  AuthSigningKeyDelete = 29,
}

const KINDS = new Set<number>(Object.values(EntryKind).filter((v): v is number => typeof v === "number"));

export interface EntryEnvelope {
  kind: EntryKind;
  proposer: bigint;
  seq: number;
  /** A view into the entry's bytes; copy it to keep it past the entry's lifetime. */
  payload: Uint8Array;
  /** The authenticated caller (etcd's RequestHeader username and auth_revision), if any. */
  caller?: { username: string; revision: number } | undefined;
  /** The proposer's span context (telemetry's encodeSpanContext) when its trace was sampled. */
  trace?: Uint8Array | undefined;
}

export class EnvelopeFormatError extends Error {
  override name = "EnvelopeFormatError";
}

export function encodeEnvelope(
  kind: EntryKind,
  proposer: bigint,
  seq: number,
  payload: Uint8Array,
  caller?: { username: string; revision: number },
  trace?: Uint8Array,
): Buffer {
  if (proposer < 0n || proposer >= 1n << 64n) throw new RangeError(`bad proposer ${proposer}`);
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`bad sequence ${seq}`);
  if (trace !== undefined && trace.length !== ENVELOPE_TRACE_BYTES) {
    throw new RangeError(`a trace context is ${ENVELOPE_TRACE_BYTES} bytes, not ${trace.length}`);
  }
  const name = caller === undefined ? undefined : Buffer.from(caller.username);
  if (name !== undefined && name.length > 0xffff) throw new RangeError("username too long");
  const callerBytes = name === undefined ? 0 : CALLER_FIXED_BYTES + name.length;
  const at = ENVELOPE_HEADER_BYTES + (trace === undefined ? 0 : ENVELOPE_TRACE_BYTES);
  const out = Buffer.allocUnsafe(at + callerBytes + payload.length);
  out[0] =
    (name === undefined ? ENVELOPE_VERSION : ENVELOPE_VERSION_WITH_CALLER) |
    (trace === undefined ? 0 : TRACED);
  out[1] = kind;
  out.writeBigUInt64BE(proposer, PROPOSER_AT);
  out.writeUInt32BE(Math.floor(seq / TWO_32), SEQ_AT);
  out.writeUInt32BE(seq % TWO_32, SEQ_AT + 4);
  if (trace !== undefined) out.set(trace, ENVELOPE_HEADER_BYTES);
  if (name !== undefined && caller !== undefined) {
    out.writeUInt32BE(Math.floor(caller.revision / TWO_32), at);
    out.writeUInt32BE(caller.revision % TWO_32, at + 4);
    out.writeUInt16BE(name.length, at + 8);
    name.copy(out, at + CALLER_FIXED_BYTES);
  }
  out.set(payload, at + callerBytes);
  return out;
}

/** The span context an entry carries, without decoding the rest (the Raft loop's WAL spans). */
/** The proposer's member ID and sequence number, read in place (an entry's data, not decoded). */
export function envelopeProposerAndSeq(data: Uint8Array): [bigint, number] {
  return proposerAndSeqAt(new DataView(data.buffer, data.byteOffset, data.byteLength));
}

function proposerAndSeqAt(view: DataView): [bigint, number] {
  return [view.getBigUint64(PROPOSER_AT), view.getUint32(SEQ_AT) * TWO_32 + view.getUint32(SEQ_AT + 4)];
}

export function envelopeTrace(data: Uint8Array): Uint8Array | undefined {
  if (data.length < ENVELOPE_HEADER_BYTES + ENVELOPE_TRACE_BYTES || (data[0]! & TRACED) === 0)
    return undefined;
  return data.subarray(ENVELOPE_HEADER_BYTES, ENVELOPE_HEADER_BYTES + ENVELOPE_TRACE_BYTES);
}

export function decodeEnvelope(bytes: Uint8Array): EntryEnvelope {
  if (bytes.length < ENVELOPE_HEADER_BYTES) {
    throw new EnvelopeFormatError(`entry of ${bytes.length} bytes is shorter than an envelope header`);
  }
  const traced = (bytes[0]! & TRACED) !== 0;
  const version = bytes[0]! & ~TRACED;
  if (version !== ENVELOPE_VERSION && version !== ENVELOPE_VERSION_WITH_CALLER) {
    throw new EnvelopeFormatError(`unknown envelope version ${bytes[0]}`);
  }
  const kind = bytes[1]!;
  if (!KINDS.has(kind)) throw new EnvelopeFormatError(`unknown entry kind ${kind}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const [proposer, seq] = proposerAndSeqAt(view);
  const at = ENVELOPE_HEADER_BYTES + (traced ? ENVELOPE_TRACE_BYTES : 0);
  if (bytes.length < at) throw new EnvelopeFormatError("entry too short for its trace context");
  const trace = traced ? bytes.subarray(ENVELOPE_HEADER_BYTES, at) : undefined;
  if (version === ENVELOPE_VERSION) {
    return { kind: kind as EntryKind, proposer, seq, payload: bytes.subarray(at), trace };
  }
  if (bytes.length < at + CALLER_FIXED_BYTES) {
    throw new EnvelopeFormatError("entry too short for its caller header");
  }
  const revision = view.getUint32(at) * TWO_32 + view.getUint32(at + 4);
  const nameStart = at + CALLER_FIXED_BYTES;
  const nameEnd = nameStart + view.getUint16(at + 8);
  if (bytes.length < nameEnd) throw new EnvelopeFormatError("entry too short for its caller name");
  const username = Buffer.from(bytes.buffer, bytes.byteOffset + nameStart, nameEnd - nameStart).toString();
  return {
    kind: kind as EntryKind,
    proposer,
    seq,
    payload: bytes.subarray(nameEnd),
    caller: { username, revision },
    trace,
  };
}
