// Support for tests, benchmarks and local tools (the backup service's temporary member) that
// start processes on loopback, and real disk faults (full, failing, power loss) for them.
export {
  diskFaultsUnavailable,
  dropCachedPages,
  LoopDisk,
  type LoopDiskOptions,
  SlowDisk,
  SmallFilesystem,
  slowDiskUnavailable,
} from "./disk-faults.js";
export { freePort, freePorts } from "./free-port.js";
export { type LinkShape, type LinkState, PeerNetwork, type PeerNetworkStats } from "./peer-network.js";
