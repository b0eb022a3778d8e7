// A real nats-server (Debian's package) on a loopback port, for tests and benchmarks: started,
// killed, and started again on the same port (to prove services resubscribe).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";

/** Where Debian's nats-server package puts the binary; PATH otherwise. */
export function natsServerBinary(): string {
  for (const path of ["/usr/sbin/nats-server", "/usr/bin/nats-server"]) if (existsSync(path)) return path;
  return "nats-server";
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export class NatsServerProcess {
  private child: ChildProcess | undefined;
  /** Everything the server logged, across restarts. */
  output = "";

  /** The client port (the one the server picked when started with none). */
  port = -1;

  private constructor() {}

  /** Starts nats-server on 127.0.0.1 (on a free port the server picks, unless given one). */
  static async start(port = -1): Promise<NatsServerProcess> {
    const server = new NatsServerProcess();
    server.port = await server.spawn(port);
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** SIGKILL (no goodbye to clients), waiting for the exit. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGKILL");
    await exited;
  }

  /** Starts it again on the same port. */
  async restart(): Promise<void> {
    if (this.child !== undefined) throw new Error("nats-server is still running");
    await this.spawn(this.port);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  /** Resolves with the client port once the server listens; rejects if it exits or takes 15 s. */
  private spawn(port: number): Promise<number> {
    const child = spawn(natsServerBinary(), ["-a", "127.0.0.1", "-p", String(port)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    running.add(child);
    child.once("exit", () => {
      running.delete(child);
      if (this.child === child) this.child = undefined;
    });
    return new Promise((resolve, reject) => {
      let log = "";
      const timer = setTimeout(() => reject(new Error(`nats-server not ready:\n${log}`)), 15_000);
      const onData = (chunk: Buffer) => {
        log += chunk.toString();
        this.output += chunk.toString();
        const listening = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
        if (listening !== null && log.includes("Server is ready")) {
          clearTimeout(timer);
          resolve(Number(listening[1]));
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited (${code}):\n${log}`));
      });
    });
  }
}
