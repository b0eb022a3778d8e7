// Real processes for tests and benchmarks: a 3-member cluster (LocalCluster), N auth service
// processes pointed at the members' peer URLs, and one gateway sending Authenticate to them,
// all on free loopback ports. Spawned with this process's Node flags, so the same code runs
// from the TypeScript sources (tsx) and from the build.
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { LocalCluster } from "@etcd-ts/raft-node";
import { freePort } from "@etcd-ts/testing";

const fromSource = import.meta.url.endsWith(".ts");
const mainOf = (service: string) =>
  fileURLToPath(
    new URL(`../../../${service}/${fromSource ? "src/main.ts" : "dist/main.js"}`, import.meta.url),
  );

export interface ServiceProcess {
  child: ChildProcess;
  /** stdout and stderr so far (pino's JSON lines). */
  output: { text: string };
}

export interface AuthServiceProcess extends ServiceProcess {
  grpcAddr: string;
  httpUrl: string;
}

export interface AuthStackOptions {
  authReplicas: number;
  /** Extra flags for every auth service. */
  authFlags?: string[];
  /** Extra flags for every member. */
  memberFlags?: string[];
  /** Extra flags for the gateway. */
  gatewayFlags?: string[];
  /** false: the gateway is not told of the auth services (members answer Authenticate). */
  gatewayUsesAuth?: boolean;
  /**
   * A directory made by scripts/gen-test-certs.sh: every link is TLS with client certificates
   * required (clients to members and gateway, gateway to members and auth, auth to members' peer
   * port, member to member).
   */
  tlsCerts?: string;
  /** Every process's environment (OTEL_* for tracing tests); this process's by default. */
  env?: NodeJS.ProcessEnv;
}

/** The flags each process gets for `tlsCerts`. */
function tlsFlags(certs: string | undefined) {
  if (certs === undefined) return { member: [], auth: [], gateway: [] };
  const file = (name: string) => `${certs}/${name}`;
  const serve = [
    `--cert-file=${file("server.crt")}`,
    `--key-file=${file("server.key")}`,
    `--trusted-ca-file=${file("ca.crt")}`,
    "--client-cert-auth",
  ];
  return {
    member: [
      ...serve,
      `--peer-cert-file=${file("peer.crt")}`,
      `--peer-key-file=${file("peer.key")}`,
      `--peer-trusted-ca-file=${file("ca.crt")}`,
      "--peer-client-cert-auth",
    ],
    auth: [
      ...serve,
      `--peer-trusted-ca-file=${file("ca.crt")}`,
      `--peer-cert-file=${file("peer.crt")}`,
      `--peer-key-file=${file("peer.key")}`,
    ],
    gateway: [
      ...serve,
      `--cacert=${file("ca.crt")}`,
      `--cert=${file("server.crt")}`,
      `--key=${file("server.key")}`,
    ],
  };
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function spawnService(main: string, args: string[], env: NodeJS.ProcessEnv = process.env): ServiceProcess {
  const execArgv = process.execArgv.filter((a) => !a.startsWith("--test"));
  const child = spawn(process.execPath, [...execArgv, main, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  const output = { text: "" };
  const collect = (chunk: Buffer) => {
    output.text += chunk.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  return { child, output };
}

async function waitForLine(p: ServiceProcess, line: string, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!p.output.text.includes(line)) {
    if (p.child.exitCode !== null || p.child.signalCode !== null)
      throw new Error(`${what} exited:\n${p.output.text}`);
    if (Date.now() > deadline) throw new Error(`${what} not ready:\n${p.output.text}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopProcess(p: ServiceProcess): Promise<void> {
  const { child } = p;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 8_000);
  await exited;
  clearTimeout(timer);
}

export class AuthStack {
  private constructor(
    readonly cluster: LocalCluster,
    readonly auth: AuthServiceProcess[],
    readonly gateway: ServiceProcess,
    readonly gatewayAddr: string,
    /** The gateway's JSON port (its /metrics). */
    readonly gatewayHttpUrl: string,
  ) {}

  static async start(options: AuthStackOptions): Promise<AuthStack> {
    const tls = tlsFlags(options.tlsCerts);
    const scheme = options.tlsCerts === undefined ? "http" : "https";
    const cluster = await LocalCluster.start({
      size: 3,
      flags: [...tls.member, ...(options.memberFlags ?? [])],
      clientScheme: scheme,
      peerScheme: scheme,
      ...(options.env === undefined ? {} : { env: options.env }),
    });
    const started: ServiceProcess[] = [];
    try {
      const peerUrls = cluster.members.map((m) => m.peerUrl).join(",");
      const auth: AuthServiceProcess[] = [];
      for (let i = 0; i < options.authReplicas; i++) {
        const grpcAddr = `127.0.0.1:${await freePort()}`;
        const httpPort = await freePort();
        const p = spawnService(
          mainOf("auth"),
          [
            `--endpoints=${peerUrls}`,
            `--listen-addr=${grpcAddr}`,
            `--http-listen-addr=127.0.0.1:${httpPort}`,
            ...tls.auth,
            ...(options.authFlags ?? []),
          ],
          options.env,
        );
        started.push(p);
        auth.push({ ...p, grpcAddr, httpUrl: `${scheme}://127.0.0.1:${httpPort}` });
      }
      await Promise.all(auth.map((p, i) => waitForLine(p, "auth service listening", `auth service ${i}`)));
      const gatewayAddr = `127.0.0.1:${await freePort()}`;
      const gatewayHttpPort = await freePort();
      const gateway = spawnService(
        mainOf("api-gateway"),
        [
          `--endpoints=${cluster.endpoints}`,
          `--listen-addr=${gatewayAddr}`,
          `--json-listen-addr=127.0.0.1:${gatewayHttpPort}`,
          "--refresh-interval-ms=500",
          ...tls.gateway,
          ...(options.gatewayUsesAuth === false
            ? []
            : [`--auth-endpoints=${auth.map((a) => a.grpcAddr).join(",")}`]),
          ...(options.gatewayFlags ?? []),
        ],
        options.env,
      );
      started.push(gateway);
      await waitForLine(gateway, "gateway listening", "gateway");
      return new AuthStack(cluster, auth, gateway, gatewayAddr, `${scheme}://127.0.0.1:${gatewayHttpPort}`);
    } catch (err) {
      await Promise.all(started.map(stopProcess));
      await cluster.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    await stopProcess(this.gateway);
    await Promise.all(this.auth.map(stopProcess));
    await this.cluster.close();
  }
}
