// Starts real member processes on loopback with free ports, for tests and benchmarks. Spawns
// main.ts (or main.js in a build) with this process's own Node flags, so it works both under
// `node --import tsx` and from the compiled dist.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import grpc from "@grpc/grpc-js";

export interface MemberProcess {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  child: ChildProcess | undefined;
  /** Everything the process wrote, stdout and stderr interleaved. */
  output: string;
}

export interface LocalClusterOptions {
  size: number;
  /** Extra flags for every member. */
  flags?: string[];
  /** Extra flags for one member, by name (m1, m2, ...), after `flags`. */
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
  /** A member's data dir by name (one on a file system of the test's), instead of one under the cluster's root. */
  dataDirs?: Record<string, string>;
  /** The member's entry file (another build's main.js, for a before/after benchmark); this build's by default. */
  main?: string;
  /**
   * An executable that takes etcd's flags, started instead of this member: `/usr/bin/etcd` for
   * tests against the reference (the gateway's). It must print etcd's "ready to serve client
   * requests" line, as etcd 3.4 does at its default log level.
   */
  binary?: string;
}

/** Members of every cluster started by this process, killed if the process exits first. */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

const mainPath = fileURLToPath(
  new URL(import.meta.url.endsWith(".ts") ? "../main.ts" : "../main.js", import.meta.url),
);

/**
 * One member process started with exactly `args` (a test that needs flags LocalCluster does not
 * choose: a config file, auto-TLS), resolved once it serves clients; rejected with its output if
 * it exits or is not ready within 30 s. Killed with this process.
 */
export function startMemberProcess(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<ChildProcess> {
  const execArgv = import.meta.url.endsWith(".ts") ? ["--conditions=source", "--import", "tsx"] : [];
  const child = spawn(process.execPath, [...execArgv, mainPath, ...args], {
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
      if (log.includes("ready to serve client requests")) {
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

/** One Maintenance.Status call: the member's ID and the leader it follows, in hex. */
async function memberStatus(address: string, timeoutMs: number): Promise<{ id: string; leader: string }> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const res = await new Promise<etcdserverpb.StatusResponse>((resolve, reject) => {
      client.makeUnaryRequest(
        "/etcdserverpb.Maintenance/Status",
        () => Buffer.alloc(0),
        (b: Buffer) => etcdserverpb.StatusResponse.decode(b),
        {},
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      );
    });
    return { id: res.header!.memberId.toString(16), leader: res.leader.toString(16) };
  } finally {
    client.close();
  }
}

export class LocalCluster {
  private constructor(
    readonly root: string,
    readonly members: MemberProcess[],
    private readonly options: LocalClusterOptions,
  ) {}

  static async start(options: LocalClusterOptions): Promise<LocalCluster> {
    const root = await mkdtemp(join(tmpdir(), "raft-node-cluster-"));
    const members: MemberProcess[] = [];
    for (let i = 0; i < options.size; i++) {
      members.push(
        await LocalCluster.describe(
          root,
          `m${i + 1}`,
          options.peerScheme ?? "http",
          options.clientScheme ?? "http",
          options.dataDirs?.[`m${i + 1}`],
        ),
      );
    }
    const cluster = new LocalCluster(root, members, options);
    const initial = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
    await options.prepare?.(members, initial);
    for (const m of members) cluster.spawn(m, initial, "new");
    await Promise.all(members.map((m) => cluster.waitReady(m)));
    return cluster;
  }

  private static async describe(
    root: string,
    name: string,
    peerScheme: string,
    clientScheme: string,
    dataDir = join(root, name),
  ): Promise<MemberProcess> {
    return {
      name,
      clientUrl: `${clientScheme}://127.0.0.1:${await freePort()}`,
      peerUrl: `${peerScheme}://127.0.0.1:${await freePort()}`,
      dataDir,
      child: undefined,
      output: "",
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

  /** The flags a member is started with. */
  flagsFor(m: MemberProcess, initialCluster: string, state: "new" | "existing"): string[] {
    return [
      "--name",
      m.name,
      "--data-dir",
      m.dataDir,
      "--listen-client-urls",
      m.clientUrl,
      "--advertise-client-urls",
      m.clientUrl,
      "--listen-peer-urls",
      m.peerUrl,
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

  spawn(m: MemberProcess, initialCluster: string, state: "new" | "existing"): void {
    const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
    const flags = this.flagsFor(m, initialCluster, state);
    const { binary } = this.options;
    const child = spawn(
      binary ?? process.execPath,
      binary !== undefined ? flags : [...execArgv, this.options.main ?? mainPath, ...flags],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: this.options.env ?? process.env,
      },
    );
    m.child = child;
    running.add(child);
    m.output = "";
    const collect = (chunk: Buffer) => {
      m.output += chunk.toString();
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    child.once("exit", () => {
      running.delete(child);
      if (m.child === child) m.child = undefined;
    });
  }

  /** Resolves once the member printed etcd's ready line; rejects if it exits first or after `timeoutMs`. */
  async waitReady(m: MemberProcess, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!m.output.includes("ready to serve client requests")) {
      if (m.child === undefined) throw new Error(`${m.name} exited before it was ready:\n${m.output}`);
      if (Date.now() > deadline) throw new Error(`${m.name} not ready after ${timeoutMs} ms:\n${m.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops a member with `signal` and waits for it to exit; returns its exit code or signal. */
  async stop(m: MemberProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<string> {
    const child = m.child;
    if (child === undefined) return "not running";
    const exited = new Promise<string>((resolve) =>
      child.once("exit", (code, sig) => resolve(sig ?? String(code))),
    );
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The running member every running member names as leader, once they all answer and agree
   * (polled every 200 ms, at most `timeoutMs`), with its ID in hex as etcdctl prints it.
   */
  async agreedLeader(timeoutMs = 15_000): Promise<{ member: MemberProcess; idHex: string }> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      const running = this.members.filter((m) => m.child !== undefined);
      const answers = await Promise.all(
        running.map((m) => memberStatus(addressOf(m), 2_000).catch(() => undefined)),
      );
      const leaders = new Set(answers.map((a) => a?.leader));
      const leaderId = [...leaders][0];
      const leader = running.find((_, i) => answers[i]?.id === leaderId);
      last = JSON.stringify(running.map((m, i) => ({ name: m.name, ...answers[i] })));
      if (leaders.size === 1 && leaderId !== undefined && leaderId !== "0" && leader !== undefined) {
        return { member: leader, idHex: leaderId };
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`members never agreed on a leader: ${last}`);
  }

  /** Restarts a stopped member from its data dir. */
  async restart(m: MemberProcess): Promise<void> {
    const initial = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(",");
    this.spawn(m, initial, "new");
    await this.waitReady(m);
  }

  /** Describes a new member (not started): add it with `member add`, then `join` it. */
  async newMember(name: string): Promise<MemberProcess> {
    const m = await LocalCluster.describe(
      this.root,
      name,
      this.options.peerScheme ?? "http",
      this.options.clientScheme ?? "http",
    );
    this.members.push(m);
    return m;
  }

  async join(m: MemberProcess, initialCluster: string): Promise<void> {
    this.spawn(m, initialCluster, "existing");
    await this.waitReady(m);
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => this.stop(m, "SIGKILL")));
    await rm(this.root, { recursive: true, force: true });
  }
}
