// Node flags every member process is started with: by LocalCluster (tests, benches) and by the
// image's `raft-node` launcher (deploy/Dockerfile; node-flags.test.ts keeps the two the same).

/**
 * `--single-threaded-gc`: V8 collects on the member's main thread alone (no parallel scavenge,
 * no concurrent marking or sweeping on its 4 helper threads). A member's CPU is bound by its
 * event loop; the helpers only pay where they get an idle core, and beside the other members,
 * RocksDB's threads and the clients they compete for the same cores, where their hand-offs and
 * work stealing cost more than they save (2 cores, 3 members, 500 clients: the helpers spent
 * ~16 us per put on the leader and ~13 on each follower, the main thread ~4 us more without
 * them; bench/JOURNAL.md "put500"). It cannot be set from inside the process: V8 aborts at
 * the next full GC when this flag changes after start (cppgc's marking handle), so it is a
 * command-line flag, not a setFlagsFromString like main.ts's heap growth. No effect on what
 * is stored or acknowledged: only which thread runs the collector.
 */
export const MEMBER_NODE_FLAGS: readonly string[] = ["--single-threaded-gc"];
