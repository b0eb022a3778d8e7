// Lease IDs chosen by the member that receives a LeaseGrant with ID 0, before proposing it (the
// ID travels in the log, so every member applies the same one). etcd 3.4's layout
// (pkg/idutil.Generator, used by EtcdServer.LeaseGrant): the low 16 bits of the member ID in the
// top 16 bits, then 48 bits that start at (unix milliseconds, low 40 bits) << 8 and count up,
// wrapping within those 48 bits; etcd then clears the top bit so the int64 is positive, and
// draws again if that gives 0 (NoLease). A restart (a later wall clock) starts past every ID
// this member generated before, as in etcd.

const SUFFIX_BITS = 48n;
const SUFFIX_MASK = (1n << SUFFIX_BITS) - 1n;
const TIME_MASK = (1n << 40n) - 1n;
const POSITIVE_INT64_MASK = (1n << 63n) - 1n;

export class LeaseIdGenerator {
  private readonly prefix: bigint;
  private suffix: bigint;

  /** @param nowMs wall-clock milliseconds at start-up (Date.now() in production) */
  constructor(memberId: bigint, nowMs: number) {
    this.prefix = (memberId & 0xffffn) << SUFFIX_BITS;
    this.suffix = (BigInt(Math.floor(nowMs)) & TIME_MASK) << 8n;
  }

  next(): bigint {
    for (;;) {
      this.suffix = (this.suffix + 1n) & SUFFIX_MASK;
      const id = (this.prefix | this.suffix) & POSITIVE_INT64_MASK;
      if (id !== 0n) return id;
    }
  }
}
