// The public surface of @etcd-ts/raft.
export * from "./codec.js";
export * from "./errors.js";
export { isReadTraffic } from "./raft.js";
export type { ProgressStatus, RaftConfig, Status } from "./raw-node.js";
export { RawNode } from "./raw-node.js";
export { Prng, seededRandom } from "./sim/prng.js";
export type { Storage } from "./storage.js";
export { BOOTSTRAP_TERM, bootstrapEntries, bootstrapStorage, MemoryStorage } from "./storage.js";
export * from "./types.js";
