#!/usr/bin/env node
// `npm start`: nats-server, three raft-node members, one api-gateway, the auth service and the
// backup service on loopback, data under ./data. NATS carries control-plane events (leader changes
// re-route the gateway at once); without nats-server installed everything runs on polling alone.
// Runs the compiled services (npm start builds first), prefixes each process's output with its
// name, and supervises them: a process that dies (kill -9 a member to watch the cluster carry
// on) is reported and started again on its data after a back-off, while the others keep serving.
// Ctrl-C stops the gateway, then the members, each with SIGTERM.
//
// `npm start -- --tls`: the same cluster over TLS end to end, with a test CA made by
// scripts/gen-test-certs.sh under data/tls/certs (clients need a certificate from it; peers
// verify each other; the gateway dials members with mTLS). Its data is kept apart (data/tls),
// and every service speaks TLS. The backup service dials members with root.crt: its CN is etcd's
// root user, so backups go on if auth is enabled.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const useTls = process.argv.slice(2).includes("--tls");
const dataRoot = resolve(process.env.ETCD_TS_DATA_DIR ?? join(root, "data"), useTls ? "tls" : ".");
const certs = join(dataRoot, "certs");
const scheme = useTls ? "https" : "http";
const host = "127.0.0.1";
const members = [1, 2, 3].map((n) => ({
  name: `n${n}`,
  client: `${scheme}://${host}:${n}2379`,
  peer: `${scheme}://${host}:${n}2380`,
}));
if (useTls && !existsSync(join(certs, "ca.crt"))) {
  execFileSync("bash", [join(root, "scripts/gen-test-certs.sh"), certs], { stdio: "inherit" });
}
const cert = (name) => join(certs, name);
const memberTlsFlags = useTls
  ? [
      ...["--cert-file", cert("server.crt"), "--key-file", cert("server.key")],
      ...["--trusted-ca-file", cert("ca.crt"), "--client-cert-auth"],
      ...["--peer-cert-file", cert("peer.crt"), "--peer-key-file", cert("peer.key")],
      ...["--peer-trusted-ca-file", cert("ca.crt"), "--peer-client-cert-auth"],
    ]
  : [];
const gatewayTlsFlags = useTls
  ? [
      ...["--cert-file", cert("server.crt"), "--key-file", cert("server.key")],
      ...["--trusted-ca-file", cert("ca.crt"), "--client-cert-auth"],
      ...["--cacert", cert("ca.crt"), "--cert", cert("server.crt"), "--key", cert("server.key")],
    ]
  : [];
const gateway = { grpc: `${host}:2379`, json: `${host}:2378` };
const initialCluster = members.map((m) => `${m.name}=${m.peer}`).join(",");

const backup = {
  listen: `${host}:2390`,
  dir: join(dataRoot, "backups"),
  cron: "0 * * * *",
  deltaCron: "*/5 * * * *",
};
// Answers Authenticate for the gateway (password checks, JWTs); its keys live in the members.
const auth = { grpc: `${host}:2391`, http: `${host}:2392` };

// Debian's nats-server package (scripts/setup.sh installs it) puts it in /usr/sbin.
const natsServer = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p));
const nats = natsServer === undefined ? undefined : { port: 4222, url: `nats://${host}:4222` };
const natsFlags = nats === undefined ? [] : ["--nats-url", nats.url];

const memberMain = join(root, "services/raft-node/dist/main.js");
const gatewayMain = join(root, "services/api-gateway/dist/main.js");
const backupMain = join(root, "services/backup/dist/main.js");
const authMain = join(root, "services/auth/dist/main.js");
for (const main of [memberMain, gatewayMain, backupMain, authMain]) {
  if (!existsSync(main)) {
    console.error(`missing ${main}: build first (npm run build)`);
    process.exit(1);
  }
}

/** Supervised processes by name: the current child and the restart back-off. */
const children = [];
let stopping = false;
const FIRST_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
/** A process that stayed up this long starts its next back-off from the beginning. */
const HEALTHY_RUN_MS = 60_000;

function prefixed(name, stream) {
  const prefix = `${name.padEnd(7)}| `;
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) process.stdout.write(`${prefix}${line}\n`);
  });
}

function run(name, args, command = process.execPath) {
  const entry = { name, child: undefined, backoffMs: FIRST_BACKOFF_MS, timer: undefined };
  const start = () => {
    entry.timer = undefined;
    const startedAt = Date.now();
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    entry.child = child;
    prefixed(name, child.stdout);
    prefixed(name, child.stderr);
    child.on("exit", (code, signal) => {
      if (stopping) {
        process.stdout.write(`${name.padEnd(7)}| exited (${signal ?? code})\n`);
        return;
      }
      if (Date.now() - startedAt > HEALTHY_RUN_MS) entry.backoffMs = FIRST_BACKOFF_MS;
      const wait = entry.backoffMs;
      entry.backoffMs = Math.min(entry.backoffMs * 2, MAX_BACKOFF_MS);
      process.stdout.write(
        `${name.padEnd(7)}| exited (${signal ?? code}); the others keep serving; restarting it in ${wait / 1000} s\n`,
      );
      entry.timer = setTimeout(start, wait);
    });
  };
  children.push(entry);
  start();
}

if (nats === undefined) {
  console.warn("nats-server not found (bash scripts/setup.sh installs it): running without NATS events");
} else {
  run("nats", ["-a", host, "-p", String(nats.port)], natsServer);
}

for (const m of members) {
  const dataDir = join(dataRoot, m.name);
  mkdirSync(dataDir, { recursive: true });
  run(m.name, [
    memberMain,
    "--name",
    m.name,
    "--data-dir",
    dataDir,
    "--listen-client-urls",
    m.client,
    "--advertise-client-urls",
    m.client,
    "--listen-peer-urls",
    m.peer,
    "--initial-advertise-peer-urls",
    m.peer,
    "--initial-cluster",
    initialCluster,
    "--initial-cluster-token",
    "etcd-ts-local",
    ...memberTlsFlags,
    ...natsFlags,
  ]);
}
// With --tls the auth service serves the gateway over TLS (client certificates required) and
// reaches the members' peer port with the peer certificate, as a member would; the gateway's
// certificate (CN=server) may ask it for tokens for its clients' certificate CNs.
run("auth", [
  authMain,
  "--endpoints",
  members.map((m) => m.peer).join(","),
  "--listen-addr",
  auth.grpc,
  "--http-listen-addr",
  auth.http,
  ...(useTls
    ? [
        ...["--cert-file", cert("server.crt"), "--key-file", cert("server.key")],
        ...["--trusted-ca-file", cert("ca.crt"), "--client-cert-auth"],
        ...["--trusted-gateway-cn", "server"],
        ...["--peer-trusted-ca-file", cert("ca.crt")],
        ...["--peer-cert-file", cert("peer.crt"), "--peer-key-file", cert("peer.key")],
      ]
    : []),
  ...natsFlags,
]);
run("gateway", [
  gatewayMain,
  "--auth-endpoints",
  auth.grpc,
  "--endpoints",
  members.map((m) => m.client).join(","),
  "--listen-addr",
  gateway.grpc,
  "--json-listen-addr",
  gateway.json,
  ...gatewayTlsFlags,
  ...natsFlags,
]);

run("backup", [
  backupMain,
  "serve",
  "--endpoints",
  members.map((m) => m.client).join(","),
  ...(useTls ? ["--cacert", cert("ca.crt"), "--cert", cert("root.crt"), "--key", cert("root.key")] : []),
  "--dir",
  backup.dir,
  "--cron",
  backup.cron,
  "--delta-cron",
  backup.deltaCron,
  "--keep-last",
  "24",
  "--listen",
  backup.listen,
  ...natsFlags,
]);

const etcdctlTls = `--cacert ${cert("ca.crt")} --cert ${cert("client.crt")} --key ${cert("client.key")}`;
const curlTls = `--cacert ${cert("ca.crt")} --cert ${cert("client.crt")} --key ${cert("client.key")}`;
if (useTls) {
  console.log(`
etcd-ts is starting over TLS: 3 members (data in ${dataRoot}) behind one gateway; test CA in ${certs}.
  gRPC (etcdctl, clients): ${gateway.grpc}      JSON gateway: https://${gateway.json}
  members: ${members.map((m) => m.client).join("  ")}
  every client needs a certificate from the test CA (client.crt; root.crt's CN is etcd's root user)
Try:
  ETCDCTL_API=3 etcdctl ${etcdctlTls} put hello world
  curl -s ${curlTls} https://${gateway.json}/v3/kv/range -d '{"key":"aGVsbG8="}'
  backups: hourly, deltas every 5 minutes, into ${backup.dir} (as root.crt's CN, root); take one now: curl -X POST http://${backup.listen}/backups
  auth: Authenticate for the gateway on ${auth.grpc} (TLS); its public keys: curl --cacert ${cert("ca.crt")} https://${auth.http}/.well-known/jwks.json
Ctrl-C stops everything.
`);
} else
  console.log(`
etcd-ts is starting: 3 members (data in ${dataRoot}) behind one gateway, an auth service and a
backup service.
  gRPC (etcdctl, clients): ${gateway.grpc}      JSON gateway: http://${gateway.json}
  members: ${members.map((m) => m.client).join("  ")}
  backups: hourly, deltas every 5 minutes, into ${backup.dir}; take one now: curl -X POST http://${backup.listen}/backups
  auth: Authenticate for the gateway on ${auth.grpc}; its public keys: curl http://${auth.http}/.well-known/jwks.json
  NATS: ${nats === undefined ? "not running (polling only)" : `${nats.url}  (subjects: etcd.<cluster-id>.leader|members|alarm|compaction|auth, auth.logins, backup.*)`}
Try:
  ETCDCTL_API=3 etcdctl put hello world && ETCDCTL_API=3 etcdctl get hello
  curl -s http://${gateway.json}/v3/kv/range -d '{"key":"aGVsbG8="}'
A member that dies is restarted on its data (try: kill -9 a member's pid, then etcdctl put).
Ctrl-C stops everything.
`);

function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const entry of children) clearTimeout(entry.timer);
  const running = (name) =>
    children
      .filter((c) => (name === "gateway") === (c.name === "gateway"))
      .map((c) => c.child)
      .filter((child) => child !== undefined && child.exitCode === null && child.signalCode === null);
  const exited = (child) => new Promise((r) => child.once("exit", r));
  const stop = async () => {
    for (const child of running("gateway")) {
      child.kill("SIGTERM");
      await exited(child);
    }
    const memberChildren = running("member");
    for (const child of memberChildren) child.kill("SIGTERM");
    await Promise.all(memberChildren.map(exited));
    process.exit(code);
  };
  // A member that does not stop within 10 s is killed: Ctrl-C must always end the run.
  setTimeout(() => {
    for (const { child } of children) child?.kill("SIGKILL");
    process.exit(code || 1);
  }, 10_000).unref();
  void stop();
}

process.on("SIGINT", () => stopAll(0));
process.on("SIGTERM", () => stopAll(0));
