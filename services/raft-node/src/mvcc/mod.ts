// etcd's MVCC key-value store on RocksDB: the state machine the Raft log is applied to.

export {
  alarmRequestFromApi,
  apiHashKV,
  apiHeader,
  apiKeyValue,
  compactionRequestFromApi,
  deleteRangeRequestFromApi,
  putRequestFromApi,
  rangeRequestFromApi,
  txnRequestFromApi,
} from "./api-shapes.js";
export { compareHolds } from "./compare.js";
export { INDEX_CHECKPOINT_FILE, recoverInterruptedDefrag } from "./database-files.js";
export {
  decodeKeyValue,
  encodeKeyValue,
  int64Size,
  keyValueFields,
  leaseVarintSize,
  varintSize,
  writeVarint,
} from "./kv-codec.js";
export type { HeldPart } from "./range-reader.js";
export {
  compareRequest,
  deleteRangeRequest,
  putRequest,
  rangeRequest,
  txnRequest,
} from "./request-builders.js";
export {
  type EncodedRangeResponse,
  encodeCompactionResponse,
  encodeDeleteRangeResponse,
  encodeEvent,
  encodePutResponse,
  encodeRangeResponse,
  encodeResponseHeader,
  encodeTxnResponse,
  rangeResponseParts,
} from "./response-codec.js";
export {
  type AppliedTxn,
  type ApplyEntry,
  type ApplyListener,
  type ApplyResult,
  alarmOfMetaKey,
  appliedInMetaRows,
  DEFAULT_QUOTA_BYTES,
  type DeleteKeysResponse,
  type ExternalApply,
  type HistoryQuery,
  type HistoryResult,
  META_COLUMN,
  META_KEYS,
  type MvccOpCounts,
  type MvccRequest,
  type MvccResponse,
  MvccStore,
  type MvccStoreOptions,
  type StoreView,
} from "./store.js";
export * from "./types.js";
