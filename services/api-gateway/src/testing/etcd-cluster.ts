// Starts a real etcd cluster on loopback for integration tests: fresh data directories,
// free ports, health wait, and teardown that leaves nothing behind. etcd (3.4 from Debian)
// is the reference the gateway is tested against until our own members exist.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { freePort } from "@etcd-ts/testing";

export const ETCD_BINARY = process.env.ETCD_BINARY ?? "/usr/bin/etcd";
export const ETCDCTL_BINARY = process.env.ETCDCTL_BINARY ?? "/usr/bin/etcdctl";

/** Why integration tests cannot run here, or undefined when they can. */
export function etcdMissingReason(): string | undefined {
  if (!existsSync(ETCD_BINARY)) return `${ETCD_BINARY} not found (install etcd-server or set ETCD_BINARY)`;
  if (!existsSync(ETCDCTL_BINARY))
    return `${ETCDCTL_BINARY} not found (install etcd-client or set ETCDCTL_BINARY)`;
  return undefined;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  /** host:port for gRPC clients. */
  readonly clientAddress: string;
  process: ChildProcess | undefined;
  readonly dataDir: string;
  stderrTail: string;
}

export interface EtcdClusterOptions {
  size?: number;
  /** Shorter than etcd's 1 s default so leader-loss tests finish quickly. */
  electionTimeoutMs?: number;
  heartbeatMs?: number;
}

export class EtcdCluster {
  private constructor(
    readonly members: EtcdMember[],
    private readonly rootDir: string,
    private readonly args: (m: EtcdMember) => string[],
  ) {}

  static async start(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const size = options.size ?? 3;
    const rootDir = await mkdtemp(path.join(os.tmpdir(), "gateway-etcd-"));
    const members: EtcdMember[] = [];
    for (let i = 0; i < size; i++) {
      const clientPort = await freePort();
      const peerPort = await freePort();
      members.push({
        name: `m${i}`,
        clientPort,
        peerPort,
        clientAddress: `127.0.0.1:${clientPort}`,
        process: undefined,
        dataDir: path.join(rootDir, `m${i}`),
        stderrTail: "",
      });
    }
    const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
    const token = `gw-test-${process.pid}-${Date.now()}`;
    const args = (m: EtcdMember) => [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--advertise-client-urls=http://127.0.0.1:${m.clientPort}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${m.peerPort}`,
      `--initial-cluster=${initialCluster}`,
      `--initial-cluster-token=${token}`,
      "--initial-cluster-state=new",
      `--heartbeat-interval=${options.heartbeatMs ?? 50}`,
      `--election-timeout=${options.electionTimeoutMs ?? 500}`,
      "--logger=zap",
      "--log-level=error",
    ];
    const cluster = new EtcdCluster(members, rootDir, args);
    for (const m of members) cluster.spawnMember(m);
    try {
      await cluster.waitHealthy();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get endpoints(): string[] {
    return this.members.map((m) => m.clientAddress);
  }

  private spawnMember(m: EtcdMember): void {
    const child = spawn(ETCD_BINARY, this.args(m), { stdio: ["ignore", "ignore", "pipe"] });
    child.stderr?.on("data", (chunk: Buffer) => {
      m.stderrTail = (m.stderrTail + chunk.toString()).slice(-4000);
    });
    m.process = child;
  }

  /** Waits until every running member answers a serializable get through etcdctl. */
  async waitHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const m of this.members) {
      if (m.process === undefined) continue;
      for (;;) {
        const res = await runEtcdctl([m.clientAddress], ["endpoint", "health"], 3000);
        if (res.code === 0) break;
        if (Date.now() > deadline) {
          throw new Error(`etcd member ${m.name} not healthy: ${res.stderr}\n${m.stderrTail}`);
        }
        await sleep(100);
      }
    }
  }

  /** SIGKILLs a member (no graceful leader hand-off), as a crash would. */
  async kill(member: EtcdMember): Promise<void> {
    const child = member.process;
    if (child === undefined) return;
    member.process = undefined;
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
  }

  async restart(member: EtcdMember): Promise<void> {
    if (member.process !== undefined) return;
    this.spawnMember(member);
    await this.waitHealthy();
  }

  /** The member the cluster currently follows, by asking each running member. */
  async leader(): Promise<EtcdMember | undefined> {
    const running = this.members.filter((m) => m.process !== undefined);
    const res = await runEtcdctl(
      running.map((m) => m.clientAddress),
      ["endpoint", "status", "-w", "json"],
      5000,
    );
    if (res.code !== 0) return undefined;
    const statuses = JSON.parse(res.stdout) as {
      Endpoint: string;
      Status: { header: { member_id: number }; leader: number };
    }[];
    for (const s of statuses) {
      // etcdctl's JSON prints IDs as numbers (lossy above 2^53): compare leader to own ID the same way.
      if (s.Status.leader === s.Status.header.member_id) {
        return running.find((m) => s.Endpoint.endsWith(m.clientAddress));
      }
    }
    return undefined;
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m)));
    await rm(this.rootDir, { recursive: true, force: true });
  }
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runEtcdctl(
  endpoints: string[],
  args: string[],
  timeoutMs = 10_000,
  input?: string,
): Promise<CommandResult> {
  return runCommand(ETCDCTL_BINARY, [`--endpoints=${endpoints.join(",")}`, "--dial-timeout=2s", ...args], {
    timeoutMs,
    input,
    env: { ...process.env, ETCDCTL_API: "3" },
  });
}

export function runCommand(
  file: string,
  args: string[],
  opts: { timeoutMs: number; input?: string | undefined; env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
