// The KV service's responses in protobuf wire format, written from the store's shapes
// (revisions as numbers) so that answering a Range allocates no bigint per key; the bytes are
// those ts-proto's encoder writes for the same message (fields in number order, proto3
// defaults omitted, embedded messages always written). Field numbers are etcd's rpc.proto.
import { WireWriter } from "@etcd-ts/api";
import { encodeKeyValue, int64Size, varintSize, writeInt64, writeVarint } from "./kv-codec.js";
import type {
  CompactionResponse,
  DeleteRangeResponse,
  KeyValue,
  PutResponse,
  RangeResponse,
  ResponseHeader,
  ResponseOp,
  TxnResponse,
} from "./types.js";

/** An mvccpb.Event (type 1, kv 2, prev_kv 3), for watch responses. */
export function encodeEvent(event: { type: number; kv: KeyValue; prevKv?: KeyValue | undefined }): Buffer {
  const w = new WireWriter();
  if (event.type !== 0) w.varintField(1, event.type);
  w.bytesField(2, encodeKeyValue(event.kv));
  if (event.prevKv !== undefined) w.bytesField(3, encodeKeyValue(event.prevKv));
  return w.finish();
}

/** Fields 1 and 2 of the last header written: a member writes the same two IDs in every one. */
let lastIds: { clusterId: bigint; memberId: bigint; fields: Buffer } | undefined;

function idFields(clusterId: bigint, memberId: bigint): Buffer {
  if (lastIds === undefined || lastIds.clusterId !== clusterId || lastIds.memberId !== memberId) {
    const w = new WireWriter();
    if (clusterId !== 0n) w.varintField(1, clusterId);
    if (memberId !== 0n) w.varintField(2, memberId);
    lastIds = { clusterId, memberId, fields: w.finish() };
  }
  return lastIds.fields;
}

export function encodeResponseHeader(h: ResponseHeader): Buffer {
  return responseHeader(h, false);
}

/**
 * A ResponseHeader's bytes in one allocation (WireWriter's bytes: int64 varints), optionally
 * as field 1 of the enclosing response (tag and length first): every answer writes one.
 */
function responseHeader(h: ResponseHeader, asField: boolean): Buffer {
  const ids = idFields(h.clusterId, h.memberId);
  const size =
    ids.length +
    (h.revision !== 0 ? 1 + int64Size(h.revision) : 0) +
    (h.raftTerm !== 0 ? 1 + int64Size(h.raftTerm) : 0);
  const out = Buffer.allocUnsafe(asField ? 1 + varintSize(size) + size : size);
  let pos = 0;
  if (asField) {
    out[pos++] = 0x0a; // field 1, length-delimited
    pos = writeVarint(out, pos, size);
  }
  out.set(ids, pos);
  pos += ids.length;
  if (h.revision !== 0) {
    out[pos++] = 0x18; // field 3, varint
    pos = writeInt64(out, pos, h.revision);
  }
  if (h.raftTerm !== 0) {
    out[pos++] = 0x20; // field 4, varint
    writeInt64(out, pos, h.raftTerm);
  }
  return out;
}

function writeHeader(w: WireWriter, h: ResponseHeader | undefined): void {
  if (h !== undefined) w.raw(responseHeader(h, true));
}

function writeKeyValues(w: WireWriter, field: number, kvs: readonly KeyValue[]): void {
  for (let i = 0; i < kvs.length; i++) w.bytesField(field, encodeKeyValue(kvs[i]!));
}

export function encodeRangeResponse(res: RangeResponse): Buffer {
  const w = new WireWriter();
  writeHeader(w, res.header);
  writeKeyValues(w, 2, res.kvs);
  if (res.more) w.varintField(3, true);
  if (res.count !== 0) w.varintField(4, res.count);
  return w.finish();
}

/**
 * A RangeResponse whose KeyValues are already encoded, in chunks (`keyValueFields(2, ...)`):
 * what the member answers a Range with, so that a million keys never become one object graph
 * nor one synchronous encode.
 */
export interface EncodedRangeResponse<Part extends { length: number } = Buffer> {
  header: ResponseHeader | undefined;
  /** Consecutive field-2 (kvs) occurrences, in answer order (bytes, or where they are: HeldPart). */
  kvParts: Part[];
  more: boolean;
  count: number;
}

/** The pieces whose concatenation is the RangeResponse (the bytes encodeRangeResponse writes). */
export function rangeResponseParts<Part extends { length: number } = Buffer>(
  res: EncodedRangeResponse<Part>,
): (Buffer | Part)[] {
  const head = new WireWriter();
  writeHeader(head, res.header);
  const tail = new WireWriter();
  if (res.more) tail.varintField(3, true);
  if (res.count !== 0) tail.varintField(4, res.count);
  const start = head.finish();
  const parts: (Buffer | Part)[] = start.length > 0 ? [start] : [];
  for (const p of res.kvParts) if (p.length > 0) parts.push(p);
  const end = tail.finish();
  if (end.length > 0) parts.push(end);
  return parts;
}

export function encodePutResponse(res: PutResponse): Buffer {
  // A put without prev_kv (almost all) answers with its header alone: that field is the message.
  if (res.prevKv === undefined && res.header !== undefined) return responseHeader(res.header, true);
  const w = new WireWriter();
  writeHeader(w, res.header);
  if (res.prevKv !== undefined) w.bytesField(2, encodeKeyValue(res.prevKv));
  return w.finish();
}

export function encodeDeleteRangeResponse(res: DeleteRangeResponse): Buffer {
  const w = new WireWriter();
  writeHeader(w, res.header);
  if (res.deleted !== 0) w.varintField(2, res.deleted);
  writeKeyValues(w, 3, res.prevKvs);
  return w.finish();
}

function encodeResponseOp(op: ResponseOp): Buffer {
  const w = new WireWriter();
  if (op.responseRange !== undefined) w.bytesField(1, encodeRangeResponse(op.responseRange));
  if (op.responsePut !== undefined) w.bytesField(2, encodePutResponse(op.responsePut));
  if (op.responseDeleteRange !== undefined)
    w.bytesField(3, encodeDeleteRangeResponse(op.responseDeleteRange));
  if (op.responseTxn !== undefined) w.bytesField(4, encodeTxnResponse(op.responseTxn));
  return w.finish();
}

export function encodeTxnResponse(res: TxnResponse): Buffer {
  const w = new WireWriter();
  writeHeader(w, res.header);
  if (res.succeeded) w.varintField(2, true);
  for (const op of res.responses) w.bytesField(3, encodeResponseOp(op));
  return w.finish();
}

export function encodeCompactionResponse(res: CompactionResponse): Buffer {
  const w = new WireWriter();
  writeHeader(w, res.header);
  return w.finish();
}
