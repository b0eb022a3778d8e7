// Lease IDs chosen by the member that receives a LeaseGrant with ID 0, before proposing it (the
// ID travels in the log, so every member applies the same one). etcd's idutil.Generator layout
// squeezed into 53 bits, because IDs are JS numbers end to end here: 8 bits of the member ID,
// then 45 bits that start at (wall-clock ms << 8) and count up. The count carries into the
// time bits, so a burst borrows from future milliseconds instead of wrapping, and a restart
// (a later wall clock) starts past every ID this member generated before, as in etcd.

const SUFFIX_BITS = 45;
const SUFFIX_SPAN = 2 ** SUFFIX_BITS;
const COUNTER_SPAN = 2 ** 8;

export class LeaseIdGenerator {
  private readonly prefix: number;
  private suffix: number;

  /** @param nowMs wall-clock milliseconds at start-up (Date.now() in production) */
  constructor(memberId: number, nowMs: number) {
    this.prefix = (memberId % 256) * SUFFIX_SPAN;
    // 37 bits of milliseconds (a 4.3-year cycle), shifted past the counter byte.
    this.suffix = (nowMs % (SUFFIX_SPAN / COUNTER_SPAN)) * COUNTER_SPAN;
  }

  next(): number {
    this.suffix = (this.suffix + 1) % SUFFIX_SPAN;
    const id = this.prefix + this.suffix;
    // Only reachable for member prefix 0 after a full wrap; 0 means "no lease".
    return id === 0 ? this.next() : id;
  }
}
