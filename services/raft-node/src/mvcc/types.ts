// Request and response shapes of etcd's KV API as the store works with them: ts-proto's field
// names (bytes as Buffer, camelCase, oneofs as optional properties), but revisions, versions
// and counts are JS numbers (no store reaches 2^53 revisions; the RPC layer refuses or maps
// larger client values as etcd answers them, see api-requests.ts), while lease and member IDs
// are bigint because etcd's are full 64-bit values. Enum-typed fields are plain numbers.
// Responses are written to the wire by response-codec.ts, never through ts-proto's bigint
// encoder, so a Range allocates no bigint per key.

export const SortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
export const SortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;
export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;
export const EventType = { PUT: 0, DELETE: 1 } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];
export const AlarmAction = { GET: 0, ACTIVATE: 1, DEACTIVATE: 2 } as const;
export const AlarmType = { NONE: 0, NOSPACE: 1, CORRUPT: 2 } as const;

export interface ResponseHeader {
  clusterId: bigint;
  memberId: bigint;
  revision: number;
  raftTerm: number;
}

export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  /** 0n: no lease. A shared constant, so keys without a lease allocate nothing. */
  lease: bigint;
}

/** An mvccpb.Event: what a revision changed, as watchers receive it. */
export interface Event {
  type: EventType;
  kv: KeyValue;
  prevKv?: KeyValue | undefined;
}

export interface RangeRequest {
  key: Buffer;
  rangeEnd: Buffer;
  limit: number;
  revision: number;
  sortOrder: number;
  sortTarget: number;
  serializable: boolean;
  keysOnly: boolean;
  countOnly: boolean;
  minModRevision: number;
  maxModRevision: number;
  minCreateRevision: number;
  maxCreateRevision: number;
}

export interface RangeResponse {
  header: ResponseHeader | undefined;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutRequest {
  key: Buffer;
  value: Buffer;
  lease: bigint;
  prevKv: boolean;
  ignoreValue: boolean;
  ignoreLease: boolean;
}

export interface PutResponse {
  header: ResponseHeader | undefined;
  prevKv: KeyValue | undefined;
}

export interface DeleteRangeRequest {
  key: Buffer;
  rangeEnd: Buffer;
  prevKv: boolean;
}

export interface DeleteRangeResponse {
  header: ResponseHeader | undefined;
  deleted: number;
  prevKvs: KeyValue[];
}

export interface RequestOp {
  requestRange?: RangeRequest | undefined;
  requestPut?: PutRequest | undefined;
  requestDeleteRange?: DeleteRangeRequest | undefined;
  requestTxn?: TxnRequest | undefined;
}

export interface ResponseOp {
  responseRange?: RangeResponse | undefined;
  responsePut?: PutResponse | undefined;
  responseDeleteRange?: DeleteRangeResponse | undefined;
  responseTxn?: TxnResponse | undefined;
}

export interface Compare {
  result: number;
  target: number;
  key: Buffer;
  version?: number | undefined;
  createRevision?: number | undefined;
  modRevision?: number | undefined;
  value?: Buffer | undefined;
  lease?: bigint | undefined;
  rangeEnd: Buffer;
}

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  header: ResponseHeader | undefined;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: number;
  physical: boolean;
}

export interface CompactionResponse {
  header: ResponseHeader | undefined;
}

export interface AlarmRequest {
  action: number;
  memberID: bigint;
  alarm: number;
}

export interface AlarmMember {
  memberID: bigint;
  alarm: number;
}

export interface AlarmResponse {
  header: ResponseHeader | undefined;
  alarms: AlarmMember[];
}

export interface HashKVResponse {
  header: ResponseHeader | undefined;
  hash: number;
  compactRevision: number;
  hashRevision: number;
}

export interface HashResponse {
  header: ResponseHeader | undefined;
  hash: number;
}
