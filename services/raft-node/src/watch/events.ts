// The mvccpb shapes watchers deliver: mvcc's own (they mirror etcd's api/mvccpb/kv.proto field
// for field: camelCase, revisions as numbers, the lease ID as a 64-bit bigint).

import { type Event, EventType } from "../mvcc/types.js";

export { type Event, EventType, type KeyValue } from "../mvcc/types.js";

/** etcd's IsCreateEvent: a PUT whose key did not exist before this revision. */
export function isCreateEvent(event: Event): boolean {
  return event.type === EventType.PUT && event.kv.createRevision === event.kv.modRevision;
}
