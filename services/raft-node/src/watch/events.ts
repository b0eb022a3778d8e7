// The mvccpb shapes watchers deliver. They mirror etcd's api/mvccpb/kv.proto field for field
// (camelCase; revisions as numbers, the lease ID as a 64-bit bigint).

export const EventType = { PUT: 0, DELETE: 1 } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  lease: bigint;
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
