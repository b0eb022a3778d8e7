// The handful of etcd message fields the gateway reads or writes itself, at the wire level.
// Field numbers are etcd's (api/etcdserverpb/rpc.proto, api/mvccpb/kv.proto); everything
// else in a message is carried through as opaque bytes.

import { WIRE_LENGTH_DELIMITED, WIRE_VARINT, WireFormatError, WireReader, WireWriter } from "@etcd-ts/api";

export interface ResponseHeader {
  clusterId: bigint;
  memberId: bigint;
  revision: number;
  raftTerm: number;
}

function readHeader(buf: Uint8Array, start: number, end: number): ResponseHeader {
  const header: ResponseHeader = { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 };
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    if (r.wireType !== WIRE_VARINT) {
      r.skip();
      continue;
    }
    switch (r.fieldNumber) {
      case 1:
        header.clusterId = r.varintU64();
        break;
      case 2:
        header.memberId = r.varintU64();
        break;
      case 3:
        header.revision = r.varintI64();
        break;
      case 4:
        header.raftTerm = r.varint();
        break;
      default:
        r.skip();
    }
  }
  return header;
}

/** The ResponseHeader (field 1) every etcd response starts with. */
export function peekResponseHeader(response: Uint8Array): ResponseHeader | undefined {
  const r = new WireReader(response);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      const [start, end] = r.lengthDelimitedRange();
      return readHeader(response, start, end);
    }
    r.skip();
  }
  return undefined;
}

/**
 * The revision (field 3) of the ResponseHeader an etcd response starts with, alone: what the
 * forwarder reads of every answer (a put's too), without the two 64-bit IDs' bigints that
 * peekResponseHeader builds (~2% of the gateway's CPU per put).
 */
export function peekResponseRevision(response: Uint8Array): number | undefined {
  const r = new WireReader(response);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      const [start, end] = r.lengthDelimitedRange();
      const h = new WireReader(response, start, end);
      let revision = 0;
      while (h.next()) {
        if (h.fieldNumber === 3 && h.wireType === WIRE_VARINT) revision = h.varintI64();
        else h.skip();
      }
      return revision;
    }
    r.skip();
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Routing peeks
// ---------------------------------------------------------------------------------------

/** RangeRequest.serializable (field 7). */
export function rangeIsSerializable(request: Uint8Array): boolean {
  return rangeSerializableIn(request, 0, request.length);
}

function rangeSerializableIn(buf: Uint8Array, start: number, end: number): boolean {
  const r = new WireReader(buf, start, end);
  let serializable = false;
  while (r.next()) {
    if (r.fieldNumber === 7 && r.wireType === WIRE_VARINT) serializable = r.bool();
    else r.skip();
  }
  return serializable;
}

/** The key range of a RangeRequest the gateway may answer from its cache. */
export interface CacheableRange {
  /** latin1, so string order is etcd's byte order. */
  key: string;
  /** "" for the single key `key`. */
  rangeEnd: string;
  /** RangeRequest.serializable: false asks for a linearizable read. */
  serializable: boolean;
}

/**
 * The key range of a RangeRequest at the current revision (field 4 zero), serializable
 * (field 7 true) or linearizable; undefined for a read at a past revision, which must reach
 * a member.
 */
export function peekCacheableRange(request: Buffer): CacheableRange | undefined {
  const r = new WireReader(request);
  let serializable = false;
  let revision = 0;
  let keyStart = 0;
  let keyEnd = 0;
  let endStart = 0;
  let endEnd = 0;
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED)
      [keyStart, keyEnd] = r.lengthDelimitedRange();
    else if (r.fieldNumber === 2 && r.wireType === WIRE_LENGTH_DELIMITED)
      [endStart, endEnd] = r.lengthDelimitedRange();
    else if (r.fieldNumber === 4 && r.wireType === WIRE_VARINT) revision = r.varintI64();
    else if (r.fieldNumber === 7 && r.wireType === WIRE_VARINT) serializable = r.bool();
    else r.skip();
  }
  if (revision !== 0) return undefined;
  return {
    key: request.toString("latin1", keyStart, keyEnd),
    rangeEnd: endEnd > endStart ? request.toString("latin1", endStart, endEnd) : "",
    serializable,
  };
}

/**
 * The same response with its header's revision (ResponseHeader.revision, field 3 of field
 * 1) set to `revision`; every other field is copied as it is.
 */
export function withHeaderRevision(response: Uint8Array, revision: number): Buffer {
  const w = new WireWriter();
  const r = new WireReader(response);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      const [start, end] = r.lengthDelimitedRange();
      w.bytesField(1, encodeHeader({ ...readHeader(response, start, end), revision }));
      continue;
    }
    r.skip();
    w.raw(response.subarray(r.fieldStart, r.pos));
  }
  return w.finish();
}

/**
 * How etcd serves a TxnRequest: a write if any branch (nested txns included) puts or
 * deletes; otherwise a read, serializable only when every range in it is (etcd's
 * isTxnReadonly / isTxnSerializable, so a compare-only txn counts as serializable).
 */
export type TxnKind = "write" | "linearizable-read" | "serializable-read";

export function classifyTxn(request: Uint8Array): TxnKind {
  const state = { write: false, linearizable: false };
  scanTxn(request, 0, request.length, state, 0);
  if (state.write) return "write";
  return state.linearizable ? "linearizable-read" : "serializable-read";
}

const MAX_TXN_NESTING = 64;

function scanTxn(
  buf: Uint8Array,
  start: number,
  end: number,
  state: { write: boolean; linearizable: boolean },
  depth: number,
): void {
  if (depth > MAX_TXN_NESTING) throw new WireFormatError("txn nested too deeply");
  const txn = new WireReader(buf, start, end);
  while (txn.next()) {
    // success = 2, failure = 3: repeated RequestOp.
    if ((txn.fieldNumber === 2 || txn.fieldNumber === 3) && txn.wireType === WIRE_LENGTH_DELIMITED) {
      const [opStart, opEnd] = txn.lengthDelimitedRange();
      const op = new WireReader(buf, opStart, opEnd);
      while (op.next()) {
        if (op.wireType !== WIRE_LENGTH_DELIMITED) {
          op.skip();
          continue;
        }
        const [s, e] = op.lengthDelimitedRange();
        switch (op.fieldNumber) {
          case 1: // request_range
            if (!rangeSerializableIn(buf, s, e)) state.linearizable = true;
            break;
          case 2: // request_put
          case 3: // request_delete_range
            state.write = true;
            break;
          case 4: // request_txn
            scanTxn(buf, s, e, state, depth + 1);
            break;
        }
      }
    } else {
      txn.skip();
    }
  }
}

// ---------------------------------------------------------------------------------------
// Membership: Maintenance.Status and Cluster.MemberList answers
// ---------------------------------------------------------------------------------------

export interface MemberStatus {
  header: ResponseHeader;
  version: string;
  leader: bigint;
  raftTerm: number;
  isLearner: boolean;
}

export function decodeStatusResponse(response: Uint8Array): MemberStatus {
  const status: MemberStatus = {
    header: { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 },
    version: "",
    leader: 0n,
    raftTerm: 0,
    isLearner: false,
  };
  const r = new WireReader(response);
  while (r.next()) {
    switch (r.fieldNumber) {
      case 1: {
        const [s, e] = r.lengthDelimitedRange();
        status.header = readHeader(response, s, e);
        break;
      }
      case 2:
        status.version = Buffer.from(r.bytes()).toString("utf8");
        break;
      case 4:
        status.leader = r.varintU64();
        break;
      case 6:
        status.raftTerm = r.varint();
        break;
      case 10:
        status.isLearner = r.bool();
        break;
      default:
        r.skip();
    }
  }
  return status;
}

export interface MemberInfo {
  id: bigint;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

/** AuthStatusResponse.enabled (field 2) and auth_revision (field 3). */
export function decodeAuthStatus(response: Uint8Array): { enabled: boolean; revision: number } {
  const r = new WireReader(response);
  let enabled = false;
  let revision = 0;
  while (r.next()) {
    if (r.fieldNumber === 2 && r.wireType === WIRE_VARINT) enabled = r.varint() !== 0;
    else if (r.fieldNumber === 3 && r.wireType === WIRE_VARINT) revision = r.varint();
    else r.skip();
  }
  return { enabled, revision };
}

export function decodeMemberListResponse(response: Uint8Array): {
  header: ResponseHeader;
  members: MemberInfo[];
} {
  let header: ResponseHeader = { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 };
  const members: MemberInfo[] = [];
  const r = new WireReader(response);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      const [s, e] = r.lengthDelimitedRange();
      header = readHeader(response, s, e);
    } else if (r.fieldNumber === 2 && r.wireType === WIRE_LENGTH_DELIMITED) {
      const [s, e] = r.lengthDelimitedRange();
      const member: MemberInfo = { id: 0n, name: "", peerURLs: [], clientURLs: [], isLearner: false };
      const m = new WireReader(response, s, e);
      while (m.next()) {
        switch (m.fieldNumber) {
          case 1:
            member.id = m.varintU64();
            break;
          case 2:
            member.name = Buffer.from(m.bytes()).toString("utf8");
            break;
          case 3:
            member.peerURLs.push(Buffer.from(m.bytes()).toString("utf8"));
            break;
          case 4:
            member.clientURLs.push(Buffer.from(m.bytes()).toString("utf8"));
            break;
          case 5:
            member.isLearner = m.bool();
            break;
          default:
            m.skip();
        }
      }
      members.push(member);
    } else {
      r.skip();
    }
  }
  return { header, members };
}

// ---------------------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------------------

export interface WatchCreate {
  key: Buffer;
  rangeEnd: Buffer;
  startRevision: number;
  progressNotify: boolean;
  /** FilterType values (NOPUT = 0, NODELETE = 1), as sent. */
  filters: number[];
  prevKv: boolean;
  /** Client-chosen watch ID (etcd 3.4+); 0 lets the server pick. */
  watchId: number;
  fragment: boolean;
}

export type WatchRequest =
  | { kind: "create"; create: WatchCreate }
  | { kind: "cancel"; watchId: number }
  | { kind: "progress" }
  | { kind: "empty" };

export function decodeWatchRequest(request: Uint8Array): WatchRequest {
  const r = new WireReader(request);
  let result: WatchRequest = { kind: "empty" };
  while (r.next()) {
    if (r.wireType !== WIRE_LENGTH_DELIMITED) {
      r.skip();
      continue;
    }
    const [s, e] = r.lengthDelimitedRange();
    if (r.fieldNumber === 1) result = { kind: "create", create: decodeWatchCreate(request, s, e) };
    else if (r.fieldNumber === 2) result = { kind: "cancel", watchId: decodeCancelId(request, s, e) };
    else if (r.fieldNumber === 3) result = { kind: "progress" };
  }
  return result;
}

function decodeWatchCreate(buf: Uint8Array, start: number, end: number): WatchCreate {
  const create: WatchCreate = {
    key: Buffer.alloc(0),
    rangeEnd: Buffer.alloc(0),
    startRevision: 0,
    progressNotify: false,
    filters: [],
    prevKv: false,
    watchId: 0,
    fragment: false,
  };
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    switch (r.fieldNumber) {
      case 1:
        create.key = Buffer.from(r.bytes());
        break;
      case 2:
        create.rangeEnd = Buffer.from(r.bytes());
        break;
      case 3:
        create.startRevision = r.varintI64();
        break;
      case 4:
        create.progressNotify = r.bool();
        break;
      case 5:
        // Repeated enum: packed (proto3 default) or one varint per element.
        if (r.wireType === WIRE_LENGTH_DELIMITED) {
          const [ps, pe] = r.lengthDelimitedRange();
          const packed = new WireReader(buf, ps, pe);
          while (packed.pos < pe) create.filters.push(packed.varint());
        } else {
          create.filters.push(r.varint());
        }
        break;
      case 6:
        create.prevKv = r.bool();
        break;
      case 7:
        create.watchId = r.varintI64();
        break;
      case 8:
        create.fragment = r.bool();
        break;
      default:
        r.skip();
    }
  }
  return create;
}

function decodeCancelId(buf: Uint8Array, start: number, end: number): number {
  const r = new WireReader(buf, start, end);
  let id = 0;
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_VARINT) id = r.varintI64();
    else r.skip();
  }
  return id;
}

export function encodeWatchCreateRequest(create: WatchCreate): Buffer {
  const inner = new WireWriter();
  if (create.key.length > 0) inner.bytesField(1, create.key);
  if (create.rangeEnd.length > 0) inner.bytesField(2, create.rangeEnd);
  if (create.startRevision !== 0) inner.varintField(3, create.startRevision);
  if (create.progressNotify) inner.varintField(4, true);
  if (create.filters.length > 0) {
    inner.bytesField(5, packedVarints(create.filters));
  }
  if (create.prevKv) inner.varintField(6, true);
  if (create.watchId !== 0) inner.varintField(7, create.watchId);
  if (create.fragment) inner.varintField(8, true);
  return new WireWriter().bytesField(1, inner.finish()).finish();
}

function packedVarints(values: number[]): Buffer {
  const out: number[] = [];
  for (let v of values) {
    while (v >= 0x80) {
      out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    out.push(v);
  }
  return Buffer.from(out);
}

export function encodeWatchCancelRequest(watchId: number): Buffer {
  const inner = new WireWriter();
  if (watchId !== 0) inner.varintField(1, watchId);
  return new WireWriter().bytesField(2, inner.finish()).finish();
}

export function encodeWatchProgressRequest(): Buffer {
  return new WireWriter().bytesField(3, Buffer.alloc(0)).finish();
}

export interface WatchEventSpan {
  /** The event field's raw extent in the response, tag included. */
  start: number;
  end: number;
  modRevision: number;
}

/** What the gateway needs from a WatchResponse to route and rewrite it. */
export interface WatchResponseView {
  watchId: number;
  created: boolean;
  canceled: boolean;
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
  header: ResponseHeader | undefined;
  /** The header's encoded value, reused when the gateway answers a client itself. */
  headerBytes: Uint8Array | undefined;
  events: WatchEventSpan[];
  /** The response without its watch_id field, ready for `withWatchId`. */
  withoutWatchId: Buffer;
}

export function decodeWatchResponse(response: Uint8Array): WatchResponseView {
  const view: WatchResponseView = {
    watchId: 0,
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: "",
    fragment: false,
    header: undefined,
    headerBytes: undefined,
    events: [],
    withoutWatchId: Buffer.alloc(0),
  };
  const kept: Uint8Array[] = [];
  let keptFrom = 0;
  const r = new WireReader(response);
  while (r.next()) {
    const fieldStart = r.fieldStart;
    switch (r.fieldNumber) {
      case 1: {
        const [s, e] = r.lengthDelimitedRange();
        view.header = readHeader(response, s, e);
        view.headerBytes = response.subarray(s, e);
        break;
      }
      case 2:
        view.watchId = r.varintI64();
        kept.push(response.subarray(keptFrom, fieldStart));
        keptFrom = r.pos;
        break;
      case 3:
        view.created = r.bool();
        break;
      case 4:
        view.canceled = r.bool();
        break;
      case 5:
        view.compactRevision = r.varintI64();
        break;
      case 6:
        view.cancelReason = Buffer.from(r.bytes()).toString("utf8");
        break;
      case 7:
        view.fragment = r.bool();
        break;
      case 11: {
        const [s, e] = r.lengthDelimitedRange();
        view.events.push({ start: fieldStart, end: r.pos, modRevision: eventModRevision(response, s, e) });
        break;
      }
      default:
        r.skip();
    }
  }
  kept.push(response.subarray(keptFrom));
  view.withoutWatchId = kept.length === 1 ? Buffer.from(kept[0]!) : Buffer.concat(kept);
  return view;
}

function eventModRevision(buf: Uint8Array, start: number, end: number): number {
  const ev = new WireReader(buf, start, end);
  while (ev.next()) {
    if (ev.fieldNumber === 2 && ev.wireType === WIRE_LENGTH_DELIMITED) {
      const [s, e] = ev.lengthDelimitedRange();
      const kv = new WireReader(buf, s, e);
      while (kv.next()) {
        if (kv.fieldNumber === 3 && kv.wireType === WIRE_VARINT) return kv.varintI64();
        kv.skip();
      }
      return 0;
    }
    ev.skip();
  }
  return 0;
}

/**
 * The key of one event (Event.kv = 2, KeyValue.key = 1) in a WatchResponse, latin1 so
 * string order is etcd's byte order; "" if the event carries no kv.
 */
export function watchEventKey(response: Buffer, span: WatchEventSpan): string {
  const field = new WireReader(response, span.start, span.end);
  if (!field.next() || field.wireType !== WIRE_LENGTH_DELIMITED) return "";
  const [evStart, evEnd] = field.lengthDelimitedRange();
  const ev = new WireReader(response, evStart, evEnd);
  while (ev.next()) {
    if (ev.fieldNumber === 2 && ev.wireType === WIRE_LENGTH_DELIMITED) {
      const [s, e] = ev.lengthDelimitedRange();
      const kv = new WireReader(response, s, e);
      while (kv.next()) {
        if (kv.fieldNumber === 1 && kv.wireType === WIRE_LENGTH_DELIMITED) {
          const [ks, ke] = kv.lengthDelimitedRange();
          return response.toString("latin1", ks, ke);
        }
        kv.skip();
      }
      return "";
    }
    ev.skip();
  }
  return "";
}

/** A response (without its watch_id) addressed to one client's watch ID. */
export function withWatchId(withoutWatchId: Uint8Array, watchId: number): Buffer {
  if (watchId === 0) return Buffer.from(withoutWatchId);
  return new WireWriter().varintField(2, watchId).raw(withoutWatchId).finish();
}

/**
 * The same response keeping only events at or above `minRevision`: a client that joined
 * a shared watch with a start revision must not see what came before it.
 */
export function keepEventsFrom(
  response: Uint8Array,
  view: WatchResponseView,
  minRevision: number,
): Buffer | undefined {
  const kept = view.events.filter((ev) => ev.modRevision >= minRevision);
  if (kept.length === view.events.length) return undefined;
  const w = new WireWriter();
  let from = 0;
  for (const ev of view.events) {
    w.raw(response.subarray(from, ev.start));
    if (ev.modRevision >= minRevision) w.raw(response.subarray(ev.start, ev.end));
    from = ev.end;
  }
  w.raw(response.subarray(from));
  return w.finish();
}

/** A header with its revision replaced, for progress answers built from a newer revision. */
export function encodeHeader(header: ResponseHeader): Buffer {
  const w = new WireWriter();
  if (header.clusterId !== 0n) w.varintField(1, header.clusterId);
  if (header.memberId !== 0n) w.varintField(2, header.memberId);
  if (header.revision !== 0) w.varintField(3, header.revision);
  if (header.raftTerm !== 0) w.varintField(4, header.raftTerm);
  return w.finish();
}

// ---------------------------------------------------------------------------------------
// Lease keep-alive
// ---------------------------------------------------------------------------------------

/**
 * LeaseKeepAliveRequest.ID (field 1). Lease IDs are int64s etcd draws from a 63-bit
 * space, so they stay bigints: a JS number would round them to another lease.
 */
export function decodeKeepAliveRequest(request: Uint8Array): bigint {
  const r = new WireReader(request);
  let id = 0n;
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_VARINT) id = BigInt.asIntN(64, r.varintU64());
    else r.skip();
  }
  return id;
}

export function encodeKeepAliveRequest(leaseId: bigint): Buffer {
  const w = new WireWriter();
  if (leaseId !== 0n) w.varintField(1, leaseId);
  return w.finish();
}

export interface KeepAliveResponseView {
  id: bigint;
  ttl: number;
  headerBytes: Uint8Array | undefined;
}

export function decodeKeepAliveResponse(response: Uint8Array): KeepAliveResponseView {
  const view: KeepAliveResponseView = { id: 0n, ttl: 0, headerBytes: undefined };
  const r = new WireReader(response);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) view.headerBytes = r.bytes();
    else if (r.fieldNumber === 2 && r.wireType === WIRE_VARINT) view.id = BigInt.asIntN(64, r.varintU64());
    else if (r.fieldNumber === 3 && r.wireType === WIRE_VARINT) view.ttl = r.varintI64();
    else r.skip();
  }
  return view;
}

export function encodeKeepAliveResponse(view: KeepAliveResponseView): Buffer {
  const w = new WireWriter();
  if (view.headerBytes !== undefined) w.bytesField(1, view.headerBytes);
  if (view.id !== 0n) w.varintField(2, view.id);
  if (view.ttl !== 0) w.varintField(3, view.ttl);
  return w.finish();
}
