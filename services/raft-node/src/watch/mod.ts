export { type Event, EventType, isCreateEvent, type KeyValue } from "./events.js";
export { fragmentResponse } from "./fragment.js";
export { IntervalIndex, type RangeEnd } from "./interval-index.js";
export { type LogOperation, MemoryEventLog } from "./memory-event-log.js";
export { type ConnectedWatchableStore, connectWatchableStore, MvccEventHistory } from "./mvcc-history.js";
export { eventSize, keyValueSize } from "./response-size.js";
export {
  INVALID_WATCH_ID,
  type WatchCreateRequest,
  WatchFilter,
  type WatchResponse,
  watchResponse,
} from "./watch-response.js";
export {
  DEFAULT_MAX_RESPONSE_BYTES,
  type ProgressTimer,
  WATCH_DUPLICATE_ID,
  WATCH_RANGE_EMPTY,
  WatchStream,
  type WatchStreamOptions,
} from "./watch-stream.js";
export {
  type EventHistory,
  type SyncTimer,
  WatchableStore,
  type WatchableStoreOptions,
} from "./watchable-store.js";
export { Watcher, type WatcherOptions, type WatcherSink, type WatcherState } from "./watcher.js";
export { WatcherGroup } from "./watcher-group.js";
