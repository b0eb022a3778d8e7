// etcdserverpb.WatchResponse built from parts that are already bytes. One event reaching many
// watchers is encoded once (mvccpb.Event) and spliced into each watcher's response; the
// header is shared by every response of a revision.
import { WireWriter } from "./protobuf-wire.js";

export interface WatchResponseParts {
  /** An encoded etcdserverpb.ResponseHeader. */
  headerBytes: Uint8Array | undefined;
  watchId: number;
  created?: boolean;
  canceled?: boolean;
  compactRevision?: number;
  cancelReason?: string;
  fragment?: boolean;
  /** Encoded mvccpb.Event messages, in order. */
  events?: readonly Uint8Array[];
}

/** Field numbers from etcd's api/etcdserverpb/rpc.proto (WatchResponse). */
const FIELD = {
  header: 1,
  watchId: 2,
  created: 3,
  canceled: 4,
  compactRevision: 5,
  cancelReason: 6,
  fragment: 7,
  events: 11,
} as const;

/** The bytes the generated codec would write for the same message (proto3: defaults omitted). */
export function encodeWatchResponse(parts: WatchResponseParts): Buffer {
  const w = new WireWriter();
  if (parts.headerBytes !== undefined) w.bytesField(FIELD.header, parts.headerBytes);
  if (parts.watchId !== 0) w.varintField(FIELD.watchId, parts.watchId);
  if (parts.created) w.varintField(FIELD.created, true);
  if (parts.canceled) w.varintField(FIELD.canceled, true);
  if (parts.compactRevision) w.varintField(FIELD.compactRevision, parts.compactRevision);
  if (parts.cancelReason) w.bytesField(FIELD.cancelReason, parts.cancelReason);
  if (parts.fragment) w.varintField(FIELD.fragment, true);
  if (parts.events !== undefined) for (const e of parts.events) w.bytesField(FIELD.events, e);
  return w.finish();
}
