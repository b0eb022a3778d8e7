// Protobuf wire sizes of WatchResponse and its parts, computed without encoding. Fragmentation
// decides where to split a revision's events by these sizes, as etcd does with pb.Size(), so the
// arithmetic has to follow proto3's rules exactly: default values (0, empty bytes, false) are
// not written, negative int64 varints take ten bytes.
import { int64Size, leaseVarintSize } from "../mvcc/mod.js";
import type { Event, KeyValue } from "./events.js";

function int64FieldSize(value: number): number {
  return value === 0 ? 0 : 1 + int64Size(value);
}

function bytesFieldSize(length: number): number {
  return length === 0 ? 0 : 1 + int64Size(length) + length;
}

function messageFieldSize(length: number): number {
  // An embedded message is written even when empty (its presence is meaningful).
  return 1 + int64Size(length) + length;
}

export function keyValueSize(kv: KeyValue): number {
  return (
    bytesFieldSize(kv.key.length) +
    int64FieldSize(kv.createRevision) +
    int64FieldSize(kv.modRevision) +
    int64FieldSize(kv.version) +
    bytesFieldSize(kv.value.length) +
    (kv.lease === 0n ? 0 : 1 + leaseVarintSize(kv.lease))
  );
}

const eventSizes = new WeakMap<Event, number>();

/** Size of an mvccpb.Event; cached because one event is sized once per watcher it reaches. */
export function eventSize(event: Event): number {
  let size = eventSizes.get(event);
  if (size === undefined) {
    size =
      (event.type === 0 ? 0 : 2) +
      messageFieldSize(keyValueSize(event.kv)) +
      (event.prevKv === undefined ? 0 : messageFieldSize(keyValueSize(event.prevKv)));
    eventSizes.set(event, size);
  }
  return size;
}

/**
 * The ResponseHeader is filled in by the gRPC layer (cluster and member IDs, raft term), so its
 * exact size is unknown here; this is its largest possible size, which makes every size
 * computed below an upper bound and keeps fragments under the limit whatever the header holds.
 */
export const MAX_RESPONSE_HEADER_SIZE = messageFieldSize(4 * (1 + 10));

export interface WatchResponseSizeFields {
  watchId: number;
  created: boolean;
  canceled: boolean;
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
}

/** Size of a WatchResponse without its events. */
export function watchResponseBaseSize(fields: WatchResponseSizeFields): number {
  return (
    MAX_RESPONSE_HEADER_SIZE +
    int64FieldSize(fields.watchId) +
    (fields.created ? 2 : 0) +
    (fields.canceled ? 2 : 0) +
    int64FieldSize(fields.compactRevision) +
    bytesFieldSize(Buffer.byteLength(fields.cancelReason)) +
    (fields.fragment ? 2 : 0)
  );
}

/** Size an event adds to a WatchResponse (field 11, repeated). */
export function eventFieldSize(event: Event): number {
  return messageFieldSize(eventSize(event));
}
