// How many entries a 3-node Raft cluster commits per CPU-second, all three nodes in this one
// process over a perfect in-memory network, so the figure is the protocol's own cost: the
// core, its Ready handling, MemoryStorage, and delivering messages (no disk, no sockets, no
// encoding). Each round proposes a batch on the leader, then delivers every message and
// handles every Ready until the cluster falls silent (the batch committed and applied on all
// three nodes). Rounds repeat until a fixed number of entries per batch size is committed.
//
//   node --conditions=source --import tsx bench/src/raft/commit-throughput.ts [--quick]

import {
  bootstrapStorage,
  decodeConfChange,
  EntryType,
  type MemoryStorage,
  type Message,
  type NodeId,
  RawNode,
  StateRole,
} from "@etcd-ts/raft";

const PAYLOAD_BYTES = 128;
const VOTERS: NodeId[] = [1n, 2n, 3n];
/** Keep this many applied entries before compacting, so memory stays bounded. */
const COMPACT_EVERY = 10_000;
const REPEATS = 3;

interface Member {
  node: RawNode;
  storage: MemoryStorage;
  applied: number;
}

class Cluster {
  readonly members = new Map<NodeId, Member>();
  private inFlight: Message[] = [];
  messages = 0;
  readies = 0;

  constructor() {
    // A fixed "random" keeps election timeouts, and so the run, reproducible.
    let x = 0x2545f491;
    const random = () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 2 ** 32;
    };
    for (const id of VOTERS) {
      const storage = bootstrapStorage(VOTERS);
      const node = new RawNode({
        id,
        storage,
        electionTick: 10,
        heartbeatTick: 1,
        random,
        maxSizePerMsg: 1024 * 1024,
        maxInflightMsgs: 256,
      });
      this.members.set(id, { node, storage, applied: 0 });
    }
  }

  leader(): Member {
    for (const m of this.members.values()) if (m.node.status().role === StateRole.Leader) return m;
    throw new Error("no leader");
  }

  /** Handles every Ready and delivers every message until nothing moves. */
  settle(): void {
    for (let rounds = 0; ; rounds++) {
      if (rounds > 100_000) throw new Error("the cluster never fell silent");
      let busy = false;
      for (const m of this.members.values()) {
        if (!m.node.hasReady()) continue;
        busy = true;
        this.handleReady(m);
      }
      const batch = this.inFlight;
      this.inFlight = [];
      for (const msg of batch) this.members.get(msg.to)?.node.step(msg);
      this.messages += batch.length;
      if (!busy && batch.length === 0) return;
    }
  }

  private handleReady(m: Member): void {
    const rd = m.node.ready();
    this.readies++;
    if (rd.snapshot) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    if (rd.hardState) m.storage.setHardState(rd.hardState);
    for (const msg of rd.messages) this.inFlight.push(msg);
    for (const e of rd.committedEntries) {
      if (e.type === EntryType.ConfChange) m.node.applyConfChange(decodeConfChange(e.data));
      m.applied = e.index;
    }
    m.node.advance(rd);
    if (m.applied - m.storage.firstIndex() > COMPACT_EVERY) {
      m.storage.createSnapshot(m.applied, undefined, new Uint8Array(0));
      m.storage.compact(m.applied);
    }
  }

  tick(): void {
    for (const m of this.members.values()) m.node.tick();
  }
}

interface Result {
  batch: number;
  entries: number;
  cpuSeconds: number;
  wallSeconds: number;
  messagesPerEntry: number;
  readiesPerRound: number;
}

function measure(batch: number, total: number): Result {
  const cluster = new Cluster();
  cluster.settle(); // apply the bootstrap entries: a node with unapplied conf changes won't campaign
  cluster.members.get(1n)!.node.campaign();
  cluster.settle();
  const leader = cluster.leader();
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const startCommit = leader.node.status().commit;
  cluster.messages = 0;
  cluster.readies = 0;

  const cpu0 = process.cpuUsage();
  const wall0 = process.hrtime.bigint();
  let rounds = 0;
  for (let proposed = 0; proposed < total; proposed += batch) {
    for (let i = 0; i < batch; i++) leader.node.propose(payload);
    cluster.settle();
    rounds++;
    // A heartbeat now and then, as a real leader sends, without letting elections start.
    if (rounds % 8 === 0) {
      leader.node.tick();
      cluster.settle();
    }
  }
  const cpu = process.cpuUsage(cpu0);
  const wallSeconds = Number(process.hrtime.bigint() - wall0) / 1e9;

  const committed = leader.node.status().commit - startCommit;
  for (const m of cluster.members.values()) {
    if (m.applied !== leader.node.status().commit)
      throw new Error(`node applied ${m.applied}, not everything`);
  }
  // Only entries this run proposed count; the leader's own empty entries would flatter it.
  if (committed < total) throw new Error(`only ${committed} of ${total} entries committed`);
  return {
    batch,
    entries: total,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    wallSeconds,
    messagesPerEntry: cluster.messages / total,
    readiesPerRound: cluster.readies / rounds,
  };
}

function main(): void {
  const quick = process.argv.includes("--quick");
  const plan: [batch: number, total: number][] = quick
    ? [
        [1, 2_000],
        [64, 20_000],
        [1024, 40_960],
      ]
    : [
        [1, 50_000],
        [64, 1_024_000],
        [1024, 2_048_000],
      ];
  // Each size runs REPEATS times and the median is reported: the first runs pay for the JIT.
  const rows = plan.map(([batch, total]) => {
    const runs = Array.from({ length: REPEATS }, () => measure(batch, total));
    runs.sort((a, b) => a.cpuSeconds - b.cpuSeconds);
    return runs[Math.floor(REPEATS / 2)];
  });
  const header = ["batch", "entries", "CPU s", "wall s", "entries/CPU-s", "msgs/entry", "Readys/round"];
  const lines = rows.map((r) => [
    String(r.batch),
    String(r.entries),
    r.cpuSeconds.toFixed(2),
    r.wallSeconds.toFixed(2),
    Math.round(r.entries / r.cpuSeconds).toLocaleString("en-US"),
    r.messagesPerEntry.toFixed(3),
    r.readiesPerRound.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join("  ");
  process.stdout.write(
    `3-node in-memory Raft cluster, perfect network, ${PAYLOAD_BYTES}-byte entries, ` +
      `median of ${REPEATS} runs, node ${process.version}\n`,
  );
  process.stdout.write(`${fmt(header)}\n${lines.map(fmt).join("\n")}\n`);
}

main();
