// Child process of wal-crash.test.ts: opens (or creates) the WAL in argv[2], then appends
// random batches from several concurrent callers, printing one line per durable save,
// until its parent kills it. It loads first and waits for a line on stdin before touching
// the WAL, so the parent can start the next child while the current one runs. Lines:
//   loaded                             modules loaded, waiting for the go-ahead
//   ready <lastIndex>                  after open, before the first append
//   ack <first> <last> <term> <commit> a save of entries first..last resolved
//   marker <index>                     a snapshot marker resolved (and releaseTo ran)
// stdout to a pipe is synchronous on Linux, so a line is out before the next statement
// runs: nothing acknowledged goes unreported.

import { seededRandom } from "@etcd-ts/raft";
import { workloadEntry } from "./crash-workload.fixture.js";
import { Wal } from "./wal.js";

const [dir, seedArg, termArg, segmentBytesArg] = process.argv.slice(2);
const random = seededRandom(Number(seedArg));
const term = Number(termArg);
const segmentBytes = Number(segmentBytesArg);

process.stdout.write("loaded\n");
await new Promise<void>((resolve) => {
  process.stdin.once("data", () => resolve());
  // The parent went away without starting this one.
  process.stdin.once("end", () => process.exit(0));
});
process.stdin.pause();

let wal: Wal;
let lastIndex = 0;
if (await Wal.exists(dir)) {
  const { wal: opened, recovered } = await Wal.open(dir, { segmentBytes });
  wal = opened;
  lastIndex = recovered.entries.at(-1)?.index ?? recovered.snapshot?.index ?? 0;
} else {
  wal = await Wal.create(dir, { segmentBytes });
}
process.stdout.write(`ready ${lastIndex}\n`);

let nextIndex = lastIndex + 1;
let ackedIndex = lastIndex;
let sinceMarker = 0;

async function appendForever(): Promise<never> {
  for (;;) {
    // Claimed synchronously, so batches are queued, written and acknowledged in index order.
    const first = nextIndex;
    const count = 1 + Math.floor(random() * (random() < 0.2 ? 200 : 12));
    nextIndex += count;
    const entries = [];
    for (let i = first; i < first + count; i++) entries.push(workloadEntry(i, term));
    const commit = first - 1;
    // Now and then a hard state saved on its own and not awaited: it joins the next save's
    // group (one O_DSYNC write for both).
    if (random() < 0.2) void wal.save({ term, vote: 1n, commit }, []);
    await wal.save({ term, vote: 1n, commit }, entries);
    process.stdout.write(`ack ${first} ${first + count - 1} ${term} ${commit}\n`);
    ackedIndex = Math.max(ackedIndex, first + count - 1);
    sinceMarker += count;
    if (sinceMarker > 300) {
      sinceMarker = 0;
      const index = ackedIndex;
      await wal.saveSnapshotMarker({ index, term, confState: { voters: [1n], learners: [] } });
      await wal.releaseTo(index);
      process.stdout.write(`marker ${index}\n`);
    }
  }
}

const callers = 1 + Math.floor(random() * 6);
await Promise.all(Array.from({ length: callers }, () => appendForever()));
