// Lines up the event traces of a 3-member cluster under one client's puts
// (ETCD_TS_TRACE_EVENTS=<prefix>, services/raft-node/README.md) and prints, per put, where its
// time went: the leader's stages, each hop between a socket write and the peer's read of it, the
// followers' stages, and the gap until the client's next request. Medians (p25, p75) over the
// puts, microseconds. Usage (after a run of cpu-per-op.js at 1 client with the variable set):
//   node bench/dist/profile/hops.js /tmp/ev
// cpu-per-op.js also has goload stamp its side (<prefix>.goload-<build>: each call's start and
// return, its socket reads and writes); those files are lined up with the leader's by port, which
// splits the gap into the hop to goload, goload's own turnaround and the hop back. Alone (a real
// etcd's build, which writes no trace), goload's side of each call:
//   node bench/dist/profile/hops.js --client /tmp/ev.goload-0
// Through a gateway (cpu-per-op.js --gateway: the gateway writes a trace too, with its G.* call
// stamps), each call's path goload -> gateway -> member -> gateway -> goload, for any op.
// --tail: which calls are slow and why: the distribution of the calls' lengths (a histogram: is
// it bimodal?), each row above over the typical calls (p25..p75) beside the slowest tenth, and the
// events each process had in a slow call's window against a typical one's (GC pauses by kind, Raft
// ticks and heartbeats, WAL writes inline or queued and whether they reached a new 4 KiB block of
// the file, socket reads and writes by connection).
// Stamps are process.hrtime (CLOCK_MONOTONIC), one clock for every process of the machine.
import { readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";

type Event = [at: number, label: string];

const { values: flags, positionals } = parseArgs({
  options: { client: { type: "boolean", default: false }, tail: { type: "boolean", default: false } },
  allowPositionals: true,
});
const clientOnly = flags.client;
const prefix = positionals[0];
if (prefix === undefined)
  throw new Error(
    "usage: hops.js [--tail] <ETCD_TS_TRACE_EVENTS prefix> | hops.js [--tail] --client <goload trace file>",
  );

function load(path: string): Event[] {
  const events: Event[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const space = line.indexOf(" ");
    if (space > 0) events.push([Number(line.slice(0, space)), line.slice(space + 1)]);
  }
  return events.sort((a, b) => a[0] - b[0]);
}

const rows = new Map<string, number[]>();
/** --tail: each call's rows, its window [from, to] and its length (the rows of `print` by call). */
interface Item {
  rows: Map<string, number[]>;
  from: number;
  to: number;
}
const items: Item[] = [];
let item: Map<string, number[]> | undefined;
const push = (into: Map<string, number[]>, name: string, us: number) => {
  let list = into.get(name);
  if (list === undefined) {
    list = [];
    into.set(name, list);
  }
  list.push(us);
};
const add = (name: string, ns: number) => {
  push(rows, name, ns / 1000);
  if (item !== undefined) push(item, name, ns / 1000);
};
/** Starts collecting one call's rows (for --tail). */
const beginItem = () => {
  item = new Map();
};
/** Ends the call begun last, which ran from `from` to `to` (ns, the traces' clock). */
const endItem = (from: number, to: number) => {
  if (item !== undefined) items.push({ rows: item, from, to });
  item = undefined;
};

const pick = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;

function print(traces: { name: string; events: Event[] }[] = []): void {
  for (const [name, list] of rows) {
    list.sort((a, b) => a - b);
    const cell = (q: number) => pick(list, q).toFixed(1).padStart(8);
    console.log(
      `${name.padEnd(48)} p50 ${cell(0.5)}  p25 ${cell(0.25)}  p75 ${cell(0.75)}  n=${list.length}`,
    );
  }
  if (flags.tail) printTail(traces);
}

/**
 * --tail: which calls are slow and what they have that the others lack. Each call's length is its
 * window (one put: decoded -> next decoded, which tiles the run), its distribution and a histogram
 * first; then every row above as its p50 over the typical calls (p25..p75 of the length) beside its
 * p50 over the slowest tenth; then, per process, the events (socket reads and writes by connection,
 * Raft messages by type, GC pauses, ticks, ...) per window in each group, where they differ.
 */
function printTail(traces: { name: string; events: Event[] }[]): void {
  if (items.length < 20) return;
  const lengthUs = (c: Item) => (c.to - c.from) / 1000;
  const sorted = [...items].sort((a, b) => lengthUs(a) - lengthUs(b));
  const lengths = sorted.map(lengthUs);
  const qs = [0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];
  console.log(
    `\n--tail: ${items.length} calls, length (us): ${qs.map((q) => `p${Math.round(q * 100)} ${pick(lengths, q).toFixed(0)}`).join("  ")}  max ${lengths.at(-1)!.toFixed(0)}`,
  );
  const bucket = 250;
  const counts = new Map<number, number>();
  for (const l of lengths) counts.set(Math.floor(l / bucket), (counts.get(Math.floor(l / bucket)) ?? 0) + 1);
  const top = Math.max(...counts.values());
  const last = Math.min(Math.floor(pick(lengths, 0.995) / bucket), Math.floor(lengths.at(-1)! / bucket));
  for (let b = Math.floor(lengths[0]! / bucket); b <= last; b++) {
    const n = counts.get(b) ?? 0;
    console.log(
      `  ${String(b * bucket).padStart(6)} us ${String(n).padStart(5)} ${"#".repeat(Math.ceil((n / top) * 60))}`,
    );
  }
  const typical = sorted.slice(Math.floor(sorted.length * 0.25), Math.floor(sorted.length * 0.75));
  const slow = sorted.slice(Math.floor(sorted.length * 0.9));
  const p50Of = (group: Item[], name: string) => {
    const all = group.flatMap((c) => c.rows.get(name) ?? []).sort((a, b) => a - b);
    return all.length === 0 ? undefined : pick(all, 0.5);
  };
  console.log(`\n${"row (us)".padEnd(48)} typical  slowest 10%   slow - typical`);
  for (const name of rows.keys()) {
    const t = p50Of(typical, name);
    const w = p50Of(slow, name);
    if (t === undefined || w === undefined) continue;
    console.log(
      `${name.padEnd(48)} ${t.toFixed(1).padStart(8)} ${w.toFixed(1).padStart(10)} ${(w - t).toFixed(1).padStart(12)}`,
    );
  }
  console.log(
    `\nevents per call window, typical vs slowest 10% (differences >= 0.05 per call, GC time in us)`,
  );
  for (const { name, events } of traces) {
    const perGroup = (group: Item[]) => {
      const sum = new Map<string, number>();
      let gcNs = 0;
      for (const c of group) {
        let gcStart: number | undefined;
        for (let i = firstAtOrAfter(events, c.from); i < events.length && events[i]![0] < c.to; i++) {
          const [t, label] = events[i]!;
          const kind = eventKind(label);
          sum.set(kind, (sum.get(kind) ?? 0) + 1);
          if (label.startsWith("gc.start")) gcStart = t;
          else if (label === "gc.end") gcNs += t - (gcStart ?? c.from);
        }
      }
      return { sum, gcUs: gcNs / 1000 / group.length, n: group.length };
    };
    const a = perGroup(typical);
    const b = perGroup(slow);
    const lines: [number, string][] = [];
    for (const kind of new Set([...a.sum.keys(), ...b.sum.keys()])) {
      const x = (a.sum.get(kind) ?? 0) / a.n;
      const y = (b.sum.get(kind) ?? 0) / b.n;
      if (Math.abs(y - x) >= 0.05)
        lines.push([
          y - x,
          `  ${name.padEnd(10)} ${kind.padEnd(40)} ${x.toFixed(2).padStart(7)} ${y.toFixed(2).padStart(7)}`,
        ]);
    }
    lines.sort((p, q) => Math.abs(q[0]) - Math.abs(p[0]));
    console.log(
      `  ${name.padEnd(10)} ${"GC time per call".padEnd(40)} ${a.gcUs.toFixed(1).padStart(7)} ${b.gcUs.toFixed(1).padStart(7)}`,
    );
    for (const [, line] of lines.slice(0, 25)) console.log(line);
  }
}

/** Whether the WAL write after `walStart` went to a new file block ("wal.write" stamps). */
function blockOf(events: Event[], walStart: number): string {
  const write = find(events, walStart, (l) => l.startsWith("wal.write ") || l === "wal.end", 1, 50);
  if (write === undefined || !events[write]![1].startsWith("wal.write ")) return "(its block unknown)";
  return newBlock(events[write]![1]) ? "(to a new 4 KiB block)" : "(within a block)";
}

/** Whether a WAL write ("wal.write <position> <bytes>") reaches into a file block it did not start in. */
function newBlock(label: string): boolean {
  const [, position, bytes] = label.split(" ").map(Number);
  return Math.floor((position! + bytes! - 1) / 4096) !== Math.floor((position! - 1) / 4096);
}

/** An event's kind for --tail: the label without sizes and log positions (tx/rx keep types). */
function eventKind(label: string): string {
  if (label.startsWith("wal.write ")) return `wal.write${newBlock(label) ? " to a new 4 KiB block" : ""}`;
  if (label.startsWith("d ") || label.startsWith("w ")) return label.split(" ").slice(0, 2).join(" ");
  if (label.startsWith("tx ") || label.startsWith("rx ")) {
    const [head, ...rest] = label.slice(3).split(" ");
    const types = head!.split(",").map((m) => {
      const [type, entries, , , to] = m.split(/[/>]/);
      return `${type}/${entries === "0" ? 0 : "n"}${to === undefined ? "" : `>${to.slice(-4)}`}`;
    });
    return `${label.slice(0, 2)} ${types.join(",")}${rest.length > 0 ? ` ${rest.join(" ")}` : ""}`;
  }
  return label;
}

/** The first event at or after `t` (binary search; events sorted by time). */
function firstAtOrAfter(events: Event[], t: number): number {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (events[mid]![0] < t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** goload's side of each call of one client (its trace alone): where a call's time goes. */
function clientRows(client: Event[]): void {
  const calls = client.flatMap(([, l], i) => (l === "call" ? [i] : []));
  const bytes = (i: number) => Number(client[i]![1].split(" ")[2]);
  for (const [n, k] of calls.slice(Math.floor(calls.length / 10), -2).entries()) {
    beginItem();
    const done = find(client, k, (l) => l === "done", 1, 100);
    const next = calls[Math.floor(calls.length / 10) + n + 1]!;
    const request = find(client, k, (l) => l.startsWith("w "), 1, 100);
    const response = done === undefined ? undefined : find(client, done, (l) => l.startsWith("d "), -1, 100);
    const nextRequest = find(client, next, (l) => l.startsWith("w "), 1, 100);
    if (done === undefined || request === undefined || response === undefined || nextRequest === undefined)
      continue;
    if (request > done || response < request) continue;
    add("goload: call -> request written", at(client, request) - at(client, k));
    add("goload: request written -> answer read", at(client, response) - at(client, request));
    add("goload: answer read -> call returned", at(client, done) - at(client, response));
    add("goload: call returned -> next call", at(client, next) - at(client, done));
    add("goload: answer read -> next request written", at(client, nextRequest) - at(client, response));
    add("one call (call -> next call)", at(client, next) - at(client, k));
    // Everything goload read and wrote in between (the BDP PING it sends, our PING ACK).
    let reads = 0;
    let writes = 0;
    let control = 0;
    for (let i = k + 1; i < next; i++) {
      const l = client[i]![1];
      if (l.startsWith("d ")) reads++;
      if (l.startsWith("w ")) {
        writes++;
        // A PING (17 bytes), with a WINDOW_UPDATE (13) when grpc-go sends both: no request.
        if (bytes(i) <= 30) control++;
      }
    }
    add("count: goload socket reads per call (x1000)", reads * 1e6);
    add("count: goload socket writes per call (x1000)", writes * 1e6);
    add("count: of them PING/WINDOW_UPDATE only (x1000)", control * 1e6);
    endItem(at(client, k), at(client, next));
  }
}

const at = (events: Event[], i: number) => events[i]![0];

if (clientOnly) {
  const events = load(prefix);
  clientRows(events);
  print([{ name: "goload", events }]);
  process.exit(0);
}

const dir = dirname(prefix);
const stem = `${basename(prefix)}.`;
const files = readdirSync(dir).filter((f) => f.startsWith(stem));
const loaded = files
  .filter((f) => !f.startsWith(`${stem}goload-`))
  .map((f) => load(join(dir, f)))
  .filter((events) => events.length > 100);
// The gateway's trace is the one with its call stamps (G.call); the others are members'.
const isGateway = (events: Event[]) => events.some(([, l]) => l === "G.call");
const gateway = loaded.find(isGateway);
const traces = loaded.filter((events) => !isGateway(events));
// goload's traces (one per build of cpu-per-op.js), lined up with the leader's by port.
const client = files
  .filter((f) => f.startsWith(`${stem}goload-`))
  .flatMap((f) => load(join(dir, f)))
  .sort((a, b) => a[0] - b[0]);
if (gateway !== undefined) {
  gatewayRows(gateway, traces, client);
  print([
    { name: "gateway", events: gateway },
    ...traces.map((events, i) => ({ name: `member ${i + 1}`, events })),
    { name: "goload", events: client },
  ]);
  process.exit(0);
}
const decodedCount = (events: Event[]) => events.filter(([, l]) => l === "L.decoded").length;
traces.sort((a, b) => decodedCount(b) - decodedCount(a));
const [leader, ...followers] = traces;
if (leader === undefined || followers.length === 0) throw new Error(`no member traces at ${prefix}.*`);

/** The next (step 1) or previous (step -1) event from `i` whose label passes `test`. */
function find(events: Event[], i: number, test: (label: string) => boolean, step = 1, limit = 600) {
  for (let j = i + step; j >= 0 && j < events.length && Math.abs(j - i) < limit; j += step) {
    if (test(events[j]![1])) return j;
  }
  return undefined;
}

/** "w 123>456 75" / "d 123<456 75": the local and remote ports. */
function ports(label: string): [number, number] {
  const [local, remote] = label.split(" ")[1]!.split(/[<>]/);
  return [Number(local), Number(remote)];
}

/** First event index of each message sent (tx) or received (rx), keyed "tx3/1/5/4". */
function messageIndex(events: Event[]): Map<string, number> {
  const index = new Map<string, number>();
  events.forEach(([, label], i) => {
    if (!label.startsWith("rx ") && !label.startsWith("tx ")) return;
    for (const m of label.slice(3).split(" ")[0]!.split(",")) {
      const key = label.slice(0, 2) + m.split(">")[0];
      if (!index.has(key)) index.set(key, i);
    }
  });
  return index;
}

const indexes = followers.map(messageIndex);
const decoded = leader.flatMap(([, l], i) => (l === "L.decoded" ? [i] : []));
// The first tenth is warm-up; the last few have no next request.
for (const k of decoded.slice(Math.floor(decoded.length / 10), -5)) {
  beginItem();
  const tx = find(leader, k, (l) => l.startsWith("tx ") && l.includes("3/1/"));
  const proposed = find(leader, k, (l) => l === "proposed");
  if (tx === undefined || proposed === undefined) continue;
  const app = leader[tx]![1].slice(3)
    .split(",")
    .map((m) => m.split(">")[0]!)
    .find((m) => m.startsWith("3/1/"))!;
  const index = Number(app.split("/")[2]) + 1;
  const acks: number[] = [];
  const perFollower: [string, number][] = [];
  // Each follower's WAL write on the leader's time line (ns), to see the three writes overlap.
  const followerWal: [number, number][] = [];
  followers.forEach((f, n) => {
    const rx = indexes[n]!.get(`rx${app}`);
    const resp = indexes[n]!.get(`tx4/0/${index}/0`);
    if (rx === undefined || resp === undefined) return;
    const read = find(f, rx, (l) => l.startsWith("d "), -1);
    const written = find(f, resp, (l) => l.startsWith("w "));
    const walStart = find(f, rx, (l) => l === "wal.start");
    const walEnd = find(f, rx, (l) => l === "wal.end");
    if (read === undefined || written === undefined || walStart === undefined || walEnd === undefined) return;
    const peerPort = ports(f[read]![1])[0];
    const sent = find(leader, tx, (l) => l.startsWith("w ") && ports(l)[1] === peerPort);
    const outPort = ports(f[written]![1])[0];
    let acked = find(leader, tx, (l) => l.startsWith("d ") && ports(l)[1] === outPort);
    while (acked !== undefined && at(leader, acked) < at(f, written)) {
      acked = find(leader, acked, (l) => l.startsWith("d ") && ports(l)[1] === outPort);
    }
    if (sent === undefined || acked === undefined) return;
    perFollower.push(
      ["leader: batch handed over -> on the socket", at(leader, sent) - at(leader, tx)],
      ["hop: leader's write -> follower's read", at(f, read) - at(leader, sent)],
      ["follower: read -> batch decoded", at(f, rx) - at(f, read)],
      ["follower: decoded -> WAL write starts", at(f, walStart) - at(f, rx)],
      ["follower: WAL write", at(f, walEnd) - at(f, walStart)],
      [`follower: WAL write ${blockOf(f, walStart)}`, at(f, walEnd) - at(f, walStart)],
      ["follower: WAL done -> ack on the socket", at(f, written) - at(f, walEnd)],
      ["hop: follower's write -> leader's read", at(leader, acked) - at(f, written)],
    );
    acks.push(at(leader, acked));
    followerWal.push([at(f, walStart), at(f, walEnd)]);
  });
  acks.sort((a, b) => a - b);
  const firstAck = acks[0];
  const committed = find(leader, k, (l) => l === "committed");
  const walStart = find(leader, tx, (l) => l === "wal.start");
  const walEnd = find(leader, tx, (l) => l === "wal.end");
  const answered = committed === undefined ? undefined : find(leader, committed, (l) => l === "answered");
  const answer = answered === undefined ? undefined : find(leader, answered, (l) => l.startsWith("w "));
  const next = answered === undefined ? undefined : find(leader, answered, (l) => l === "L.decoded");
  if (firstAck === undefined || committed === undefined || walEnd === undefined) continue;
  if (answer === undefined || next === undefined) continue;
  const clientPort = ports(leader[answer]![1])[1];
  const request = find(leader, next, (l) => l.startsWith("d ") && ports(l)[1] === clientPort, -1);
  if (request === undefined) continue;
  const t0 = at(leader, k);
  add("leader: decoded -> proposed", at(leader, proposed) - t0);
  add("leader: proposed -> MsgApp batch handed over", at(leader, tx) - at(leader, proposed));
  for (const [name, ns] of perFollower) add(name, ns);
  if (walStart !== undefined && walStart < walEnd) {
    add("leader: its own WAL write", at(leader, walEnd) - at(leader, walStart));
    add(`leader: its own WAL write ${blockOf(leader, walStart)}`, at(leader, walEnd) - at(leader, walStart));
  }
  add("leader: its own WAL write done (from decoded)", at(leader, walEnd) - t0);
  for (const [n, [from, to]] of followerWal.sort((a, b) => a[1] - b[1]).entries()) {
    const which = n === 0 ? "first" : "second";
    add(`follower: ${which} WAL write done: its length`, to - from);
    add(`follower: ${which} WAL write done (from decoded)`, to - t0);
  }
  add("leader: first ack read (from decoded)", firstAck - t0);
  if (acks.length > 1) add("leader: second ack read (from decoded)", acks[1]! - t0);
  add("leader: committed (from decoded)", at(leader, committed) - t0);
  add("leader: committed -> answered", at(leader, answered!) - at(leader, committed));
  add("leader: answered -> on the socket", at(leader, answer) - at(leader, answered!));
  add("gap: answer written -> next request read", at(leader, request) - at(leader, answer));
  if (client.length > 0) goloadSide(at(leader, answer), at(leader, request), clientPort);
  add("leader: next request read -> decoded", at(leader, next) - at(leader, request));
  add("one put (decoded -> next decoded)", at(leader, next) - t0);
  endItem(t0, at(leader, next));
}

/**
 * The gap from goload's side: our answer's write (at `answered`) -> goload's read of it -> the
 * call returned -> the next call -> its request's write (the last before our read at `read`).
 */
function goloadSide(answered: number, read: number, port: number): void {
  const onPort = (l: string) => (l.startsWith("d ") || l.startsWith("w ")) && ports(l)[0] === port;
  const got = find(
    client,
    firstAtOrAfter(client, answered) - 1,
    (l) => l.startsWith("d ") && onPort(l),
    1,
    100,
  );
  if (got === undefined || at(client, got) > read) return;
  const done = find(client, got, (l) => l === "done", 1, 100);
  const call = done === undefined ? undefined : find(client, done, (l) => l === "call", 1, 100);
  const sent = find(client, firstAtOrAfter(client, read), (l) => l.startsWith("w ") && onPort(l), -1, 100);
  if (done === undefined || call === undefined || sent === undefined || at(client, sent) < at(client, call))
    return;
  add("hop: our answer written -> goload's read", at(client, got) - answered);
  add("goload: read -> call returned", at(client, done) - at(client, got));
  add("goload: call returned -> next call", at(client, call) - at(client, done));
  add("goload: next call -> request written", at(client, sent) - at(client, call));
  add("hop: goload's request written -> our read", read - at(client, sent));
  let writes = 0;
  for (let i = got + 1; i < sent; i++) if (client[i]![1].startsWith("w ") && onPort(client[i]![1])) writes++;
  add("count: goload writes before the request (x1000)", writes * 1e6);
}

/**
 * Calls through the gateway (any op): goload -> gateway -> the member it asked -> gateway ->
 * goload, by the gateway's stamps (G.call: the call reached its handler; G.up / G.up.done: its
 * upstream call; G.answered: the answer handed to the client's call) and the socket reads and
 * writes of each process, lined up by port.
 */
function gatewayRows(gw: Event[], members: Event[][], client: Event[]): void {
  const calls = gw.flatMap(([, l], i) => (l === "G.call" ? [i] : []));
  const skip = Math.floor(calls.length / 10);
  for (const [n, k] of calls.slice(skip, -2).entries()) {
    beginItem();
    const next = calls[skip + n + 1]!;
    const read = find(gw, k, (l) => l.startsWith("d "), -1, 50);
    const answered = find(gw, k, (l) => l === "G.answered", 1, 400);
    if (read === undefined || answered === undefined || answered > next) continue;
    const clientPort = ports(gw[read]![1])[1];
    const upWrite = find(gw, k, (l) => l.startsWith("w ") && ports(l)[1] !== clientPort, 1, 100);
    if (upWrite === undefined || upWrite > answered) continue;
    const [upLocal, upRemote] = ports(gw[upWrite]![1]);
    // The member's answer: the gateway's last read on that connection before it answered.
    const upRead = find(gw, answered, (l) => l.startsWith("d ") && ports(l)[1] === upRemote, -1, 400);
    const ansWrite = find(gw, answered, (l) => l.startsWith("w ") && ports(l)[1] === clientPort, 1, 100);
    if (upRead === undefined || ansWrite === undefined || upRead < upWrite) continue;
    const up = find(gw, k, (l) => l === "G.up", 1, 100);
    const upDone = find(gw, k, (l) => l === "G.up.done", 1, 400);
    add("gateway: request read -> call started", at(gw, k) - at(gw, read));
    if (up !== undefined && up < upWrite) {
      add("gateway: call started -> upstream call made", at(gw, up) - at(gw, k));
      add("gateway: upstream call made -> on the socket", at(gw, upWrite) - at(gw, up));
    } else add("gateway: call started -> upstream write", at(gw, upWrite) - at(gw, k));
    for (const m of members) {
      const mRead = find(
        m,
        firstAtOrAfter(m, at(gw, upWrite)) - 1,
        (l) => l.startsWith("d ") && ports(l)[1] === upLocal,
        1,
        400,
      );
      const mWrite = find(
        m,
        firstAtOrAfter(m, at(gw, upRead)),
        (l) => l.startsWith("w ") && ports(l)[1] === upLocal,
        -1,
        2000,
      );
      if (mRead === undefined || mWrite === undefined || at(m, mRead) > at(gw, upRead) || mWrite < mRead)
        continue;
      add("hop: gateway's write -> member's read", at(m, mRead) - at(gw, upWrite));
      add("member: read -> answer on the socket", at(m, mWrite) - at(m, mRead));
      add("hop: member's write -> gateway's read", at(gw, upRead) - at(m, mWrite));
      break;
    }
    if (upDone !== undefined && upDone < answered && upDone > upRead) {
      add("gateway: upstream read -> upstream call returned", at(gw, upDone) - at(gw, upRead));
      add("gateway: upstream call returned -> answered", at(gw, answered) - at(gw, upDone));
    } else add("gateway: upstream read -> answered", at(gw, answered) - at(gw, upRead));
    add("gateway: answered -> on the socket", at(gw, ansWrite) - at(gw, answered));
    const nextRead = find(gw, next, (l) => l.startsWith("d ") && ports(l)[1] === clientPort, -1, 50);
    if (client.length > 0 && nextRead !== undefined) {
      const onPort = (l: string) => (l.startsWith("d ") || l.startsWith("w ")) && ports(l)[0] === clientPort;
      const got = find(
        client,
        firstAtOrAfter(client, at(gw, ansWrite)) - 1,
        (l) => l.startsWith("d ") && onPort(l),
        1,
        100,
      );
      const sent = find(
        client,
        firstAtOrAfter(client, at(gw, nextRead)),
        (l) => l.startsWith("w ") && onPort(l),
        -1,
        100,
      );
      if (got !== undefined && sent !== undefined && at(client, got) <= at(client, sent)) {
        add("hop: gateway's answer -> goload's read", at(client, got) - at(gw, ansWrite));
        add("goload: read -> next request written", at(client, sent) - at(client, got));
        add("hop: goload's request -> gateway's read", at(gw, nextRead) - at(client, sent));
      }
    }
    add("one call (call started -> next call started)", at(gw, next) - at(gw, k));
    let reads = 0;
    let writes = 0;
    for (let i = k + 1; i < next; i++) {
      const l = gw[i]![1];
      if (l.startsWith("d ")) reads++;
      else if (l.startsWith("w ")) writes++;
    }
    add("count: gateway socket reads per call (x1000)", reads * 1e6);
    add("count: gateway socket writes per call (x1000)", writes * 1e6);
    endItem(at(gw, k), at(gw, next));
  }
}

print([
  { name: "leader", events: leader },
  ...followers.map((events, i) => ({ name: `follower ${i + 1}`, events })),
  { name: "goload", events: client },
]);
