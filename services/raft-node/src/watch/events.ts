// The mvccpb shapes watchers deliver. They mirror etcd's api/mvccpb/kv.proto field for field
// (camelCase, int64 as number) so the gRPC layer encodes them without reshaping.

export const EventType = { PUT: 0, DELETE: 1 } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  lease: number;
}

export interface Event {
  type: EventType;
  kv: KeyValue;
  prevKv?: KeyValue;
}

/** etcd's IsCreateEvent: a PUT whose key did not exist before this revision. */
export function isCreateEvent(event: Event): boolean {
  return event.type === EventType.PUT && event.kv.createRevision === event.kv.modRevision;
}
