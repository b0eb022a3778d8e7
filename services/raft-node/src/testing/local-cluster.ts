// Starts real member processes on loopback with free ports, for tests, benchmarks and the chaos
// suite: our member (this build's main, or another build's) or any executable that takes etcd's
// flags (real etcd). A member can be stopped with any signal, paused (SIGSTOP), restarted,
// replaced by a joining one, and its peer links cut through proxies (`peerProxy`); members that
// exit on their own are recorded as unexpected exits.
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort, PeerNetwork } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";
import { formatId, memberIdFor } from "../membership/member-id.js";

export interface MemberProcess {
  /** Its position in the cluster's `members`. */
  index: number;
  name: string;
  clientUrl: string;
  /** Its second, https client URL, with `tlsClientUrls` (not advertised). */
  tlsClientUrl: string | undefined;
  /** The peer URL it advertises: its proxy's when peers are proxied. */
  peerUrl: string;
  /** The peer URL it listens on. */
  listenPeerUrl: string;
  dataDir: string;
  child: ChildProcess | undefined;
  /**
   * What the process wrote since its last start, stdout and stderr interleaved (with `logFiles`,
   * only the last MiB or so: the log file has it all).
   */
  output: string;
  /** Printed etcd's ready line since its last start. */
  ready: boolean;
  /** SIGSTOPped by `pause`, until `resume` or a stop. */
  paused: boolean;
  /** Every start's output, appended, when the cluster has `logFiles`. */
  logFile: string | undefined;
}

export interface MemberExit {
  /** The member's index. */
  member: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Not asked for by `stop`, `close` or `expectExit`: a crash. */
  unexpected: boolean;
  /** performance.now() when it exited. */
  at: number;
}

export interface LocalClusterOptions {
  size: number;
  /** The members' --name values; m1, m2, ... by default. */
  names?: string[];
  /** Extra flags for every member. */
  flags?: string[];
  /** Extra flags for one member, by name, after `flags`. */
  memberFlags?: Record<string, string[]>;
  token?: string;
  /** "https" serves peer URLs with --peer-auto-tls (unless `flags` give peer certificate files). */
  peerScheme?: "http" | "https";
  /**
   * Runs before any member starts, given the members and the --initial-cluster value: fills
   * their data dirs (a restore from a snapshot) for a cluster that starts from them.
   */
  prepare?: (members: readonly MemberProcess[], initialCluster: string) => Promise<void>;
  /** The members' environment (OTEL_* for tracing tests); this process's by default. */
  env?: NodeJS.ProcessEnv;
  /** "https" client URLs: `flags` must give --cert-file/--key-file or --auto-tls. */
  clientScheme?: "http" | "https";
  /**
   * Each member also serves clients on an https URL of its own (`tlsClientUrl`), with the
   * certificate `flags` give (--cert-file/--key-file), as etcd serves both on one flag.
   */
  tlsClientUrls?: boolean;
  /**
   * A member's data dir by name (one on a file system of the test's: a small or failing disk),
   * instead of one under the cluster's root.
   */
  dataDirs?: Record<string, string>;
  /** Where data dirs (and log files) go: a fresh temp dir, removed by `close`, when unset. */
  root?: string;
  /** Appends each member's output to `<root>/<name>.log` (long runs: `output` keeps only a tail). */
  logFiles?: boolean;
  /**
   * Which build of our member: "source" runs src/main.ts through tsx, "dist" the compiled
   * dist/main.js. By default the build this module runs from, with this process's Node flags.
   */
  build?: "source" | "dist";
  /** The member's entry file (another build's main.js, for a before/after benchmark); overrides `build`. */
  main?: string;
  /** Node's flags for one of our members (a CPU profile named after it), before the entry file. */
  nodeFlags?: (m: MemberProcess) => string[];
  /**
   * An executable that takes etcd's flags, started instead of our member: `/usr/bin/etcd` for
   * tests against the reference. It must print etcd's "ready to serve client requests" line, as
   * etcd 3.4 does at its default log level.
   */
  binary?: string;
  /**
   * A TCP proxy (@etcd-ts/testing's PeerNetwork) in front of each member's peer port, which the
   * member advertises: `network` then cuts, stalls and slows links one direction at a time.
   */
  peerProxy?: boolean;
  /**
   * Prometheus counters summed over every process this cluster ran (`counterTotal`): each one
   * is read from a member just before the cluster stops it, since its count dies with it. A
   * member that exits on its own (a full disk, a crash) or is stopped while paused keeps the
   * counts of its last reading (`sampleCounters`, which a long run calls every few seconds).
   */
  countersAcrossRestarts?: string[];
}

const READY_LINE = "ready to serve client requests";
/** With log files, `output` is cut back to its last OUTPUT_TAIL characters once twice that long. */
const OUTPUT_TAIL = 1024 * 1024;

/** Members of every cluster started by this process, killed if the process exits first. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

const fromSource = import.meta.url.endsWith(".ts");
const entries = {
  source: fileURLToPath(new URL(fromSource ? "../main.ts" : "../../src/main.ts", import.meta.url)),
  dist: fileURLToPath(new URL(fromSource ? "../../dist/main.js" : "../main.js", import.meta.url)),
};
const SOURCE_NODE_FLAGS = ["--conditions=source", "--import", "tsx"];

/** The command line of our member: node, its flags, the entry file. */
function memberCommand(build: "source" | "dist" | undefined, main?: string): string[] {
  if (build === undefined) {
    return [
      ...process.execArgv.filter((a) => !a.startsWith("--test")),
      main ?? entries[fromSource ? "source" : "dist"],
    ];
  }
  return [...(build === "source" ? SOURCE_NODE_FLAGS : []), main ?? entries[build]];
}

/**
 * One member process started with exactly `args` (a test that needs flags LocalCluster does not
 * choose: a config file, auto-TLS), resolved once it serves clients; rejected with its output if
 * it exits or is not ready within 30 s. Killed with this process.
 */
export function startMemberProcess(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...memberCommand(fromSource ? "source" : "dist"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  return new Promise((resolve, reject) => {
    let log = "";
    const timer = setTimeout(() => reject(new Error(`member not ready:\n${log}`)), 30_000);
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes(READY_LINE)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`member exited with ${code}:\n${log}`));
    });
  });
}

/** A member's client address, host:port. */
export function addressOf(m: MemberProcess): string {
  return m.clientUrl.replace(/^https?:\/\//, "");
}

const portOf = (url: string) => Number(new URL(url).port);

/**
 * A free port this cluster has not handed out before. A member that is down leaves its ports
 * free, and a member or proxy described meanwhile must not take them: the member could not
 * restart on its own address (EADDRINUSE).
 */
export async function unusedPort(
  reserved: Set<number>,
  pick: () => Promise<number> = freePort,
): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await pick();
    if (!reserved.has(port)) {
      reserved.add(port);
      return port;
    }
  }
  throw new Error("local-cluster: no free port left outside the cluster's own");
}

/** One unary call with an empty request (Status, MemberList) to the member at `address`. */
async function emptyRequestCall<T>(
  address: string,
  method: string,
  decode: (b: Buffer) => T,
  timeoutMs: number,
): Promise<T> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    return await new Promise<T>((resolve, reject) => {
      client.makeUnaryRequest(
        method,
        () => Buffer.alloc(0),
        decode,
        {},
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
  } finally {
    client.close();
  }
}

/** One Maintenance.Status call: the member's ID and the leader it follows, in hex. */
async function memberStatus(address: string, timeoutMs: number): Promise<{ id: string; leader: string }> {
  const res = await emptyRequestCall(
    address,
    "/etcdserverpb.Maintenance/Status",
    (b) => etcdserverpb.StatusResponse.decode(b),
    timeoutMs,
  );
  return { id: res.header!.memberId.toString(16), leader: res.leader.toString(16) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class LocalCluster extends EventEmitter<{ exit: [MemberExit] }> {
  /** Every member exit seen, in order. */
  readonly exits: MemberExit[] = [];
  /** Children whose exit was asked for (a stop, a filled disk): not crashes. */
  private readonly expected = new WeakSet<ChildProcess>();
  private readonly logs = new Map<MemberProcess, WriteStream>();
  /** Members started to join a running cluster: their later starts say so too. */
  private readonly joining = new Set<MemberProcess>();
  /** countersAcrossRestarts' counts from processes that have been stopped. */
  private readonly stoppedCounts = new Map<string, number>();
  /** Each running process's counters as last read (`sampleCounters`, `keepCounters`). */
  private readonly lastCounts = new Map<ChildProcess, Map<string, number>>();
  /** Processes read just before the stop that ended them. */
  private readonly readAtStop = new WeakSet<ChildProcess>();
  /** Processes whose exit counted on their last reading (on their own, or stopped paused). */
  private exitsOnLastReading = 0;
  /** Member IDs (hex) by member index, for the peer proxies (`senderIndex`). */
  private readonly memberIndexes = new Map<string, number>();

  private constructor(
    readonly root: string,
    private readonly ownsRoot: boolean,
    readonly members: MemberProcess[],
    private readonly options: LocalClusterOptions,
    /** The peer proxies, with `peerProxy`. */
    readonly network: PeerNetwork | undefined,
    /** Every port handed out to this cluster's members and proxies (see unusedPort). */
    private readonly reservedPorts: Set<number>,
  ) {
    super();
  }

  /** A cluster whose members have addresses and data dirs but are not started (`startAll`). */
  static async create(options: LocalClusterOptions): Promise<LocalCluster> {
    const root = options.root ?? (await mkdtemp(join(tmpdir(), "raft-node-cluster-")));
    await mkdir(root, { recursive: true });
    const members: MemberProcess[] = [];
    const proxyPorts: number[] = [];
    const reserved = new Set<number>();
    for (let i = 0; i < options.size; i++) {
      const name = options.names?.[i] ?? `m${i + 1}`;
      const m = await LocalCluster.describe(root, i, name, options, reserved, options.dataDirs?.[name]);
      if (options.peerProxy) {
        proxyPorts.push(await unusedPort(reserved));
        m.peerUrl = `${options.peerScheme ?? "http"}://127.0.0.1:${proxyPorts[i]}`;
      }
      members.push(m);
    }
    let cluster: LocalCluster | undefined;
    const network = options.peerProxy
      ? new PeerNetwork(
          "127.0.0.1",
          proxyPorts,
          members.map((m) => portOf(m.listenPeerUrl)),
          (id) => cluster!.senderIndex(id),
        )
      : undefined;
    cluster = new LocalCluster(root, options.root === undefined, members, options, network, reserved);
    // The founding members' IDs follow from their peer URLs and the token, as etcd derives them:
    // known before any member answers, as the proxies need them to carry the first election.
    for (const m of members) {
      cluster.memberIndexes.set(formatId(memberIdFor([m.peerUrl], options.token ?? "test-cluster")), m.index);
    }
    await network?.start();
    return cluster;
  }

  /** Starts a cluster and waits until every member printed etcd's ready line. */
  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const cluster = await LocalCluster.create(options);
    await options.prepare?.(cluster.members, cluster.initialCluster());
    cluster.startAll();
    await Promise.all(cluster.members.map((m) => cluster.waitReady(m)));
    return cluster;
  }

  private static async describe(
    root: string,
    index: number,
    name: string,
    options: LocalClusterOptions,
    reserved: Set<number>,
    dataDir = join(root, name),
  ): Promise<MemberProcess> {
    const peerUrl = `${options.peerScheme ?? "http"}://127.0.0.1:${await unusedPort(reserved)}`;
    return {
      index,
      name,
      clientUrl: `${options.clientScheme ?? "http"}://127.0.0.1:${await unusedPort(reserved)}`,
      tlsClientUrl: options.tlsClientUrls ? `https://127.0.0.1:${await unusedPort(reserved)}` : undefined,
      peerUrl,
      listenPeerUrl: peerUrl,
      dataDir,
      child: undefined,
      output: "",
      ready: false,
      paused: false,
      logFile: options.logFiles ? join(root, `${name}.log`) : undefined,
    };
  }

  /** The running members' client addresses (host:port), for clients that take no URLs. */
  get addresses(): string[] {
    return this.members.filter((m) => m.child !== undefined).map((m) => addressOf(m));
  }

  get endpoints(): string {
    return this.members
      .filter((m) => m.child !== undefined)
      .map((m) => m.clientUrl)
      .join(",");
  }

  /** The --initial-cluster value naming every member by its advertised peer URL. */
  initialCluster(): string {
    return this.members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  }

  /** Each running member's pid, by index. */
  pids(): Map<number, number> {
    const out = new Map<number, number>();
    for (const m of this.members) if (m.child?.pid !== undefined) out.set(m.index, m.child.pid);
    return out;
  }

  /**
   * The member a peer's `X-Server-From` names. A member added at runtime got its ID from
   * MemberAdd (time-salted, as in etcd): it is looked up in a running member's member list, by
   * its peer URL, the first time it dials.
   */
  async senderIndex(idHex: string): Promise<number | undefined> {
    const known = this.memberIndexes.get(idHex);
    if (known !== undefined) return known;
    for (const m of this.answering()) {
      try {
        const list = await emptyRequestCall(
          addressOf(m),
          "/etcdserverpb.Cluster/MemberList",
          (b) => etcdserverpb.MemberListResponse.decode(b),
          1_000,
        );
        for (const member of list.members) {
          const index = this.members.findIndex((x) => member.peerURLs.includes(x.peerUrl));
          if (index >= 0) this.memberIndexes.set(formatId(member.ID), index);
        }
        break;
      } catch {
        // Not serving (starting, partitioned): ask the next.
      }
    }
    return this.memberIndexes.get(idHex);
  }

  /** The flags a member is started with. */
  flagsFor(m: MemberProcess, initialCluster: string, state: "new" | "existing"): string[] {
    return [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      m.tlsClientUrl === undefined ? m.clientUrl : `${m.clientUrl},${m.tlsClientUrl}`,
      "--advertise-client-urls",
      m.clientUrl,
      "--listen-peer-urls",
      m.listenPeerUrl,
      "--initial-advertise-peer-urls",
      m.peerUrl,
      "--initial-cluster",
      initialCluster,
      "--initial-cluster-state",
      state,
      "--initial-cluster-token",
      this.options.token ?? "test-cluster",
      ...(this.options.peerScheme === "https" && !(this.options.flags ?? []).includes("--peer-cert-file")
        ? ["--peer-auto-tls"]
        : []),
      ...(this.options.flags ?? []),
      ...(this.options.memberFlags?.[m.name] ?? []),
    ];
  }

  /** Starts every member without waiting for them. */
  startAll(): void {
    for (const m of this.members) this.spawn(m);
  }

  /**
   * Starts a member's process without waiting for it (`waitReady`), with its flags and
   * `extraFlags`. A member once started with state "existing" (a joining one) keeps that state
   * on later starts: it never bootstraps a cluster of its own from an empty data dir. Etcd and
   * our member ignore both once the data dir exists.
   */
  spawn(
    m: MemberProcess,
    {
      initialCluster = this.initialCluster(),
      state = this.joining.has(m) ? "existing" : "new",
      extraFlags = [],
    }: { initialCluster?: string; state?: "new" | "existing"; extraFlags?: string[] } = {},
  ): void {
    if (m.child !== undefined) throw new Error(`${m.name} is already running`);
    if (state === "existing") this.joining.add(m);
    const flags = [...this.flagsFor(m, initialCluster, state), ...extraFlags];
    const { binary, build, main } = this.options;
    const command = binary ?? process.execPath;
    const args =
      binary !== undefined
        ? flags
        : [...(this.options.nodeFlags?.(m) ?? []), ...memberCommand(build, main), ...flags];
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: this.options.env ?? process.env,
    });
    m.child = child;
    m.output = "";
    m.ready = false;
    m.paused = false;
    running.add(child);
    const log = this.logOf(m);
    const toLog = (text: string | Buffer) => {
      if (log !== undefined && !log.writableEnded) log.write(text);
    };
    toLog(`\n==== ${new Date().toISOString()} starting: ${command} ${args.join(" ")}\n`);
    const collect = (chunk: Buffer) => {
      toLog(chunk);
      m.output += chunk.toString();
      if (!m.ready && m.output.includes(READY_LINE)) m.ready = true;
      if (log !== undefined && m.output.length > 2 * OUTPUT_TAIL) m.output = m.output.slice(-OUTPUT_TAIL);
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    child.once("exit", (code, signal) => {
      running.delete(child);
      if (m.child === child) {
        m.child = undefined;
        m.paused = false;
      }
      // stdout/stderr may still hold output: the log line goes after them.
      child.once("close", () => toLog(`\n==== exited code=${code} signal=${signal}\n`));
      this.keepLastCounts(child);
      const exit = {
        member: m.index,
        code,
        signal,
        unexpected: !this.expected.has(child),
        at: performance.now(),
      };
      this.exits.push(exit);
      this.emit("exit", exit);
    });
  }

  private logOf(m: MemberProcess): WriteStream | undefined {
    if (m.logFile === undefined) return undefined;
    let log = this.logs.get(m);
    if (log === undefined) {
      log = createWriteStream(m.logFile, { flags: "a" });
      this.logs.set(m, log);
    }
    return log;
  }

  /** Resolves once the member printed etcd's ready line; rejects if it exits first or after `timeoutMs`. */
  async waitReady(m: MemberProcess, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!m.ready) {
      if (m.child === undefined) throw new Error(`${m.name} exited before it was ready:\n${m.output}`);
      if (Date.now() > deadline) throw new Error(`${m.name} not ready after ${timeoutMs} ms:\n${m.output}`);
      await sleep(50);
    }
  }

  /**
   * Starts a member on its data dir with its flags and `extraFlags`, and resolves with "ready"
   * once it serves, or with its exit (output complete) if it exits first: a check that refuses
   * to start, a disk that fails.
   */
  async startUntilServingOrExit(
    m: MemberProcess,
    extraFlags: string[] = [],
    timeoutMs = 60_000,
  ): Promise<"ready" | { code: number | null; signal: NodeJS.Signals | null }> {
    this.spawn(m, { extraFlags });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void this.exited(m).then((e) => {
      exit = e;
    });
    const deadline = Date.now() + timeoutMs;
    while (!m.ready) {
      if (exit !== undefined) return exit;
      if (Date.now() > deadline)
        throw new Error(`${m.name} neither ready nor exited after ${timeoutMs} ms:\n${m.output}`);
      await sleep(50);
    }
    return "ready";
  }

  /** The running member's exit, once its output is complete (the child's stdio closed). */
  exited(m: MemberProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = m.child;
    if (child === undefined) return Promise.reject(new Error(`${m.name} is not running`));
    return new Promise((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  }

  /** The member's coming exit is expected (its disk is being filled): not a crash. */
  expectExit(m: MemberProcess): void {
    if (m.child !== undefined) this.expected.add(m.child);
  }

  /** Stops a member with `signal` and waits for it to exit (SIGKILL after `graceMs`); returns its exit code or signal. */
  async stop(m: MemberProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 15_000): Promise<string> {
    const child = m.child;
    if (child === undefined) return "not running";
    await this.keepCounters(m);
    this.expected.add(child);
    const exited = new Promise<string>((resolve) =>
      child.once("exit", (code, sig) => resolve(sig ?? String(code))),
    );
    if (m.paused) child.kill("SIGCONT");
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGSTOP: the process keeps its sockets and state but does nothing, as a long GC pause or a hung VM. */
  pause(m: MemberProcess): void {
    if (m.child === undefined || m.paused) return;
    m.child.kill("SIGSTOP");
    m.paused = true;
  }

  resume(m: MemberProcess): void {
    if (m.child === undefined || !m.paused) return;
    m.child.kill("SIGCONT");
    m.paused = false;
  }

  /** Running and not paused: the members that can answer. */
  private answering(): MemberProcess[] {
    return this.members.filter((m) => m.child !== undefined && !m.paused);
  }

  /**
   * The running member every running, unpaused member names as leader, once they all answer and
   * agree (polled every 200 ms, at most `timeoutMs`), with its ID in hex as etcdctl prints it.
   * Fails at once if a member exits on its own meanwhile.
   */
  async agreedLeader(timeoutMs = 15_000): Promise<{ member: MemberProcess; idHex: string }> {
    const deadline = Date.now() + timeoutMs;
    const exitsBefore = this.exits.length;
    let last = "nothing yet";
    while (Date.now() < deadline) {
      const crash = this.exits.slice(exitsBefore).find((e) => e.unexpected);
      if (crash !== undefined) {
        const m = this.members[crash.member];
        const tail = m.output.trimEnd().split("\n").slice(-12).join("\n");
        throw new Error(
          `${m.name} exited (code=${crash.code} signal=${crash.signal}) while waiting for a leader; its output ends:\n${tail}`,
        );
      }
      const members = this.answering();
      const answers = await Promise.all(
        members.map((m) => memberStatus(addressOf(m), 2_000).catch(() => undefined)),
      );
      const leaders = new Set(answers.map((a) => a?.leader));
      const leaderId = [...leaders][0];
      const leader = members.find((_, i) => answers[i]?.id === leaderId);
      last = JSON.stringify(members.map((m, i) => ({ name: m.name, ...answers[i] })));
      if (leaders.size === 1 && leaderId !== undefined && leaderId !== "0" && leader !== undefined) {
        return { member: leader, idHex: leaderId };
      }
      await sleep(200);
    }
    throw new Error(
      `members never agreed on a leader within ${timeoutMs} ms: ${last}; files in ${this.root}`,
    );
  }

  /** The member most running, unpaused members name as leader now (one Status round), if any. */
  async leader(timeoutMs = 1_000): Promise<MemberProcess | undefined> {
    const members = this.answering();
    const answers = await Promise.all(
      members.map((m) => memberStatus(addressOf(m), timeoutMs).catch(() => undefined)),
    );
    const votes = new Map<string, number>();
    for (const a of answers) if (a && a.leader !== "0") votes.set(a.leader, (votes.get(a.leader) ?? 0) + 1);
    const [leaderId] = [...votes].sort((a, b) => b[1] - a[1])[0] ?? [];
    return leaderId === undefined ? undefined : members.find((_, i) => answers[i]?.id === leaderId);
  }

  /**
   * The member's Prometheus series `name` (from its client URL's /metrics) summed over labels;
   * undefined when it does not answer within a second.
   */
  async metric(m: MemberProcess, name: string): Promise<number | undefined> {
    try {
      const text = await (
        await fetch(`${m.clientUrl}/metrics`, { signal: AbortSignal.timeout(1000) })
      ).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").at(-1));
      }
      return sum;
    } catch {
      return undefined;
    }
  }

  /**
   * A counter of `countersAcrossRestarts` summed over every process this cluster ran: the
   * exited ones' last counts (read at the stop, or the last reading of one that exited on its
   * own) and the running ones' now (a paused one's last reading).
   */
  async counterTotal(name: string): Promise<number> {
    if (!this.options.countersAcrossRestarts?.includes(name))
      throw new Error(`${name} is not kept across restarts`);
    await this.sampleCounters();
    let total = this.stoppedCounts.get(name) ?? 0;
    for (const m of this.members)
      if (m.child !== undefined) total += this.lastCounts.get(m.child)?.get(name) ?? 0;
    return total;
  }

  /** How many processes exited without a reading at their end: their counts are as of their last sample. */
  get sampledExits(): number {
    return this.exitsOnLastReading;
  }

  /**
   * Reads `countersAcrossRestarts` from every running, unpaused member. A counter only grows,
   * so a reading that fails or is lower (never, for one process) keeps the previous one.
   */
  async sampleCounters(members: readonly MemberProcess[] = this.answering()): Promise<void> {
    const names = this.options.countersAcrossRestarts ?? [];
    if (names.length === 0) return;
    await Promise.all(
      members.map(async (m) => {
        const child = m.child!;
        const counts = await Promise.all(names.map((name) => this.metric(m, name)));
        // The process may have exited during the reads: its exit already counted what it had.
        if (child.exitCode !== null || child.signalCode !== null) return;
        const last = this.lastCounts.get(child) ?? new Map<string, number>();
        names.forEach((name, i) => {
          last.set(name, Math.max(last.get(name) ?? 0, counts[i] ?? 0));
        });
        this.lastCounts.set(child, last);
      }),
    );
  }

  /** Before a stop: the member's counters now (its last reading if it cannot answer). */
  private async keepCounters(m: MemberProcess): Promise<void> {
    if (m.paused || m.child === undefined) return;
    await this.sampleCounters([m]);
    this.readAtStop.add(m.child);
  }

  /** A process exited: its last counts go to the stopped ones'. */
  private keepLastCounts(child: ChildProcess): void {
    const last = this.lastCounts.get(child);
    this.lastCounts.delete(child);
    if (!this.readAtStop.has(child) && (this.options.countersAcrossRestarts ?? []).length > 0)
      this.exitsOnLastReading++;
    for (const [name, n] of last ?? []) this.stoppedCounts.set(name, (this.stoppedCounts.get(name) ?? 0) + n);
  }

  /** Restarts a stopped member from its data dir and waits until it is ready. */
  async restart(m: MemberProcess): Promise<void> {
    this.spawn(m);
    await this.waitReady(m);
  }

  /** Describes a new member (not started): add it with `member add`, then `join` it. */
  async newMember(name: string): Promise<MemberProcess> {
    const m = await LocalCluster.describe(
      this.root,
      this.members.length,
      name,
      this.options,
      this.reservedPorts,
    );
    this.members.push(m);
    return m;
  }

  /** Starts a member that joins the running cluster (added with `member add`) and waits until it is ready. */
  async join(m: MemberProcess, initialCluster: string): Promise<void> {
    this.spawn(m, { initialCluster, state: "existing" });
    await this.waitReady(m);
  }

  /** Kills every member, stops the peer proxies, and removes the files unless asked to keep them. */
  async close(options: { keepFiles?: boolean } = {}): Promise<void> {
    await Promise.all(this.members.map((m) => this.stop(m, "SIGKILL")));
    await this.network?.close();
    await Promise.all([...this.logs.values()].map((log) => new Promise((r) => log.end(r))));
    this.logs.clear();
    if (this.ownsRoot && !options.keepFiles) await rm(this.root, { recursive: true, force: true });
  }
}
