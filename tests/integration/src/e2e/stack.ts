// The full stack for end-to-end tests: three real member processes (LocalCluster) behind one
// real gateway process, all on free loopback ports with temporary data dirs. The gateway is
// spawned with this process's own Node flags, so the same code runs under
// `node --conditions=source --import tsx --test` (main.ts) and from the compiled dist (main.js).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LocalCluster, type MemberProcess } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";

const fromSource = import.meta.url.endsWith(".ts");
export const gatewayMain = fileURLToPath(
  new URL(
    fromSource
      ? "../../../../services/api-gateway/src/main.ts"
      : "../../../../services/api-gateway/dist/main.js",
    import.meta.url,
  ),
);

export const ETCDCTL = "/usr/bin/etcdctl";

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs etcdctl (API v3) with `args`, never throwing: the exit code and both streams are returned. */
export function etcdctl(
  endpoints: string,
  args: string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      ETCDCTL,
      [`--endpoints=${endpoints}`, "--dial-timeout=3s", "--command-timeout=8s", ...args],
      // maxBuffer: a `get --prefix` of a large store prints megabytes (1 MiB by default).
      {
        env: { ...process.env, ETCDCTL_API: "3" },
        timeout: options.timeoutMs ?? 20_000,
        maxBuffer: 256 * 2 ** 20,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

/** etcdctl's error as etcd words it: the last line of its stderr without "Error: ". */
export function lastLine(text: string): string {
  return text
    .trim()
    .split("\n")
    .pop()!
    .replace(/^Error: /, "");
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface StackOptions {
  /** "https": members serve client URLs over TLS (give the certificate flags in memberFlags). */
  clientScheme?: "http" | "https";
  peerScheme?: "http" | "https";
  /** etcdctl flags to reach the gateway when it serves TLS (readiness is then checked with etcdctl). */
  etcdctlTlsFlags?: string[];
  /** Every process's environment (OTEL_* for the tracing tests); this process's by default. */
  env?: NodeJS.ProcessEnv;
}

export class Stack {
  private constructor(
    readonly cluster: LocalCluster,
    readonly gatewayAddr: string,
    readonly jsonUrl: string,
    private gateway: ChildProcess | undefined,
    readonly gatewayOutput: { text: string },
    private readonly etcdctlTlsFlags: string[] | undefined = undefined,
  ) {}

  /**
   * `perMember`: extra flags for one member, by name (m1, m2, m3); `gatewayFlags` win over the
   * defaults; `options`: TLS (https URLs, and how etcdctl reaches a TLS gateway) and `env`, every
   * process's environment.
   */
  static async start(
    memberFlags: string[] = [],
    perMember: Record<string, string[]> = {},
    gatewayFlags: string[] = [],
    options: StackOptions = {},
  ): Promise<Stack> {
    const env = options.env ?? process.env;
    const cluster = await LocalCluster.start({
      size: 3,
      flags: memberFlags,
      memberFlags: perMember,
      ...(options.env === undefined ? {} : { env: options.env }),
      ...(options.clientScheme === undefined ? {} : { clientScheme: options.clientScheme }),
      ...(options.peerScheme === undefined ? {} : { peerScheme: options.peerScheme }),
    });
    let stack: Stack | undefined;
    try {
      const grpcPort = await freePort();
      const jsonPort = await freePort();
      const gatewayAddr = `127.0.0.1:${grpcPort}`;
      const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
      const child = spawn(
        process.execPath,
        [
          ...execArgv,
          gatewayMain,
          `--endpoints=${cluster.endpoints}`,
          `--listen-addr=${gatewayAddr}`,
          `--json-listen-addr=127.0.0.1:${jsonPort}`,
          "--refresh-interval-ms=500",
          ...gatewayFlags,
        ],
        { stdio: ["ignore", "pipe", "pipe"], env },
      );
      const output = { text: "" };
      const collect = (chunk: Buffer) => {
        output.text += chunk.toString();
      };
      child.stdout?.on("data", collect);
      child.stderr?.on("data", collect);
      const scheme = options.etcdctlTlsFlags === undefined ? "http" : "https";
      stack = new Stack(
        cluster,
        gatewayAddr,
        `${scheme}://127.0.0.1:${jsonPort}`,
        child,
        output,
        options.etcdctlTlsFlags,
      );
      const started = stack;
      child.once("exit", () => {
        started.gateway = undefined;
      });
      await stack.waitGatewayReady();
      return stack;
    } catch (err) {
      // close() stops the gateway (if it was spawned) and the members.
      if (stack) await stack.close();
      else await cluster.close();
      throw err;
    }
  }

  /** Waits for the gateway's "gateway listening" line, then for a write through it to succeed. */
  private async waitGatewayReady(): Promise<void> {
    const deadline = Date.now() + 60_000;
    while (!this.gatewayOutput.text.includes("gateway listening")) {
      if (this.gateway === undefined) throw new Error(`gateway exited:\n${this.gatewayOutput.text}`);
      if (Date.now() > deadline) throw new Error(`gateway not ready:\n${this.gatewayOutput.text}`);
      await sleep(50);
    }
    let last = "";
    if (this.etcdctlTlsFlags !== undefined) {
      for (let attempt = 0; attempt < 60; attempt++) {
        const res = await etcdctl(this.gatewayAddr, [...this.etcdctlTlsFlags, "put", "__e2e_ready", ""]);
        if (res.code === 0) return;
        last = res.stderr;
        await sleep(300);
      }
      throw new Error(`no write through the gateway: ${last}\n${this.gatewayOutput.text}`);
    }
    // A write through the JSON port proves a leader is known; no etcdctl needed for that.
    for (let attempt = 0; attempt < 60; attempt++) {
      try {
        const res = await fetch(`${this.jsonUrl}/v3/kv/put`, {
          method: "POST",
          body: JSON.stringify({ key: Buffer.from("__e2e_ready").toString("base64") }),
          signal: AbortSignal.timeout(5_000),
        });
        last = `${res.status} ${await res.text()}`;
        if (res.status === 200) return;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(300);
    }
    throw new Error(`no write through the gateway: ${last}\n${this.gatewayOutput.text}`);
  }

  /** The gateway process's PID (with --workers, the primary's), while it runs. */
  get gatewayPid(): number | undefined {
    return this.gateway?.pid;
  }

  /** The leader all running members agree on (LocalCluster.agreedLeader). */
  findLeader(): Promise<{ member: MemberProcess; idHex: string }> {
    return this.cluster.agreedLeader();
  }

  /** Member client URLs joined by commas (only the running ones). */
  get memberEndpoints(): string {
    return this.cluster.endpoints;
  }

  async close(): Promise<void> {
    const child = this.gateway;
    if (child !== undefined) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 8_000);
      await exited;
      clearTimeout(timer);
    }
    await this.cluster.close();
  }
}

/** A long-running etcdctl (watch, lock, elect): output is collected until it is stopped. */
export class EtcdctlProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  private readonly exited: Promise<number | string>;

  constructor(endpoints: string, args: string[]) {
    this.child = spawn(ETCDCTL, [`--endpoints=${endpoints}`, "--dial-timeout=3s", ...args], {
      env: { ...process.env, ETCDCTL_API: "3" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.on("data", (c: Buffer) => {
      this.stdout += c.toString();
    });
    this.child.stderr?.on("data", (c: Buffer) => {
      this.stderr += c.toString();
    });
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => resolve(signal ?? code ?? -1)),
    );
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until stdout satisfies `done` (true) or `timeoutMs` passes or the process exits (false). */
  async waitFor(done: (stdout: string) => boolean, timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.stdout)) {
      if (!this.running || Date.now() > deadline) return done(this.stdout);
      await sleep(50);
    }
    return true;
  }

  /** Resolves with the exit code (or signal name) once the process has exited. */
  wait(): Promise<number | string> {
    return this.exited;
  }

  async stop(signal: NodeJS.Signals = "SIGINT"): Promise<number | string> {
    if (this.running) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
