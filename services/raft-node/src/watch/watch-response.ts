import type { Event } from "./events.js";

/**
 * etcdserverpb.WatchResponse minus the header's cluster/member/term, which the gRPC layer adds:
 * `revision` is the header's revision.
 */
export interface WatchResponse {
  revision: number;
  /** -1 for answers on behalf of the whole stream (progress, refused creates). */
  watchId: number;
  created: boolean;
  canceled: boolean;
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
  events: Event[];
}

/** etcd's clientv3.InvalidWatchID. */
export const INVALID_WATCH_ID = -1;

export function watchResponse(
  fields: Partial<WatchResponse> & { revision: number; watchId: number },
): WatchResponse {
  return {
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: "",
    fragment: false,
    events: [],
    ...fields,
  };
}

/** etcdserverpb.WatchCreateRequest, as the gRPC layer decodes it. */
export interface WatchCreateRequest {
  key: Buffer;
  rangeEnd: Buffer;
  startRevision: number;
  progressNotify: boolean;
  /** FilterType values: NOPUT = 0, NODELETE = 1. */
  filters: number[];
  prevKv: boolean;
  /** 0 lets the server choose. */
  watchId: number;
  fragment: boolean;
}

export const WatchFilter = { NOPUT: 0, NODELETE: 1 } as const;
