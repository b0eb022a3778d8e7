export { LeaseIdGenerator } from "./lease-id.js";
export { LeasePoller, type LeaseProposer, type PollTimer } from "./lease-poller.js";
export {
  decodeLeaseRecord,
  encodeLeaseRecord,
  LEASE_COLUMN,
  leaseIdOfKey,
  leaseKey,
} from "./lease-record.js";
export {
  type LeasedKeyView,
  type LeaseGrantApplied,
  type LeaseRevokeApplied,
  LeaseStateMachine,
  leasedKeyView,
} from "./lease-state-machine.js";
export { LeaseTimeQueue } from "./lease-time-queue.js";
export {
  Lease,
  type LeaseCheckpoint,
  type LeaseRecord,
  type LeaseTimeToLive,
  Lessor,
  type LessorOptions,
  MAX_LEASE_TTL,
  minLeaseTtlSeconds,
  NO_LEASE,
} from "./lessor.js";
