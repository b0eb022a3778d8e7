// The compose topology (deploy/compose, offline override) in real containers, one compose project
// for the whole file: the image is built with no network; `up -d` returns with members, gateways,
// auth, backup and the S3 stand-in healthy; etcdctl and etcd3 work through the published port;
// three gateway replicas all get load; one put's trace reaches the OTLP receiver stand-in with
// gateway and member spans; a scheduled backup lands in the S3 stand-in and restores into a
// member holding the keys; the leader's process killed with SIGKILL: writes go on, the restart
// policy brings it back and it catches up; a rolling restart of every member under writes loses
// no acknowledged write; users, a login through the gateway and the auth service, and RBAC.
// Operations (deploy/README.md's recipes): gateways scaled 3 -> 1 -> 3 under load with no
// failed call; a fourth member added as a learner, promoted and removed; a dead member replaced
// by a fresh one under writes; a backup taken now and restored into the members' volumes.
// Skips with the reason when no container engine can be reached (run scripts/docker-setup.sh first).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import { getContainerRuntimeClient, ImageName } from "testcontainers";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "../../../..");
const composeDir = join(root, "deploy/compose");
const project = `etcdts-test-${process.pid}`;
// One tag per checkout: other checkouts on the same engine build their own image at the same
// time, and a tag they retag must not swap this run's image (the build cache is reused per tag).
const image = `etcd-ts:test-${createHash("sha256").update(root).digest("hex").slice(0, 12)}`;
const clientPort = "42379";
const jsonPort = "42378";
const otlpPort = "44318";

process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";

let compose: string[] | undefined;

async function engineMissing(): Promise<string | false> {
  try {
    const client = await getContainerRuntimeClient();
    if (!(await client.image.exists(ImageName.fromString("node:20-bookworm-slim")))) {
      return "base image node:20-bookworm-slim missing (run scripts/docker-setup.sh)";
    }
  } catch (err) {
    return `no container engine (${(err as Error).message.split("\n")[0]}); run scripts/docker-setup.sh`;
  }
  for (const cmd of [["docker-compose"], ["docker", "compose"]]) {
    const ok = await run(cmd[0] as string, [...cmd.slice(1), "version"]).then(
      () => true,
      () => false,
    );
    if (ok) {
      compose = cmd;
      return false;
    }
  }
  return "neither docker-compose nor `docker compose` found";
}

const env = {
  ...process.env,
  ETCD_TS_IMAGE: image,
  ETCD_TS_CLIENT_PORT: clientPort,
  ETCD_TS_JSON_PORT: jsonPort,
  ETCD_TS_OTLP_PORT: otlpPort,
  MINIO_CONSOLE_PORT: "49001",
  JAEGER_UI_PORT: "46686",
  // A full backup every 10 s (croner's leading seconds field), the newest 3 kept.
  ETCD_BACKUP_CRON: "*/10 * * * * *",
  ETCD_BACKUP_KEEP_LAST: "3",
};
/** `docker compose` on this project, with `extraEnv` on top of the project's variables. */
async function dcWith(extraEnv: Record<string, string>, ...args: string[]): Promise<string> {
  const [cmd, ...pre] = compose as string[];
  const files = ["-p", project, "-f", "compose.yaml", "-f", "compose.offline.yaml"];
  const { stdout } = await run(cmd as string, [...pre, ...files, ...args], {
    cwd: composeDir,
    env: { ...env, ...extraEnv },
    // `up` on a loaded 2-core machine (other compose projects beside it) has taken over 5 min.
    timeout: 600_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}
const dc = (...args: string[]) => dcWith({}, ...args);

async function etcdctl(...args: string[]): Promise<string> {
  const { stdout } = await run(
    "etcdctl",
    [`--endpoints=127.0.0.1:${clientPort}`, "--command-timeout=10s", ...args],
    { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
  );
  return stdout;
}

async function containerOf(service: string, index = 1): Promise<string> {
  return (await dc("ps", "-q", service)).trim().split("\n")[index - 1] as string;
}

async function inContainer(container: string, ...cmd: string[]): Promise<string> {
  const { stdout } = await run("docker", ["exec", container, ...cmd], {
    timeout: 60_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

/** An HTTP request made inside `container` (ports that are not published): the body it answers. */
async function httpIn(container: string, url: string, body?: unknown): Promise<string> {
  const init = body === undefined ? "{}" : `{method:'POST',body:${JSON.stringify(JSON.stringify(body))}}`;
  const script = `fetch(${JSON.stringify(url)},${init}).then(r=>r.text()).then(t=>process.stdout.write(t))`;
  return inContainer(container, "node", "-e", script);
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** Polls `check` every `everyMs` until it returns a value, for at most `withinMs`. */
async function eventually<T>(
  what: string,
  withinMs: number,
  everyMs: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`${what}: not within ${withinMs / 1000} s${last ? ` (${(last as Error).message})` : ""}`);
}

interface MemberStatus {
  header: { member_id: string; revision: string };
  leader: string;
}
const statusOf = async (container: string) =>
  JSON.parse(await httpIn(container, "http://127.0.0.1:2379/v3/maintenance/status", {})) as MemberStatus;

async function healthy(container: string): Promise<true | undefined> {
  const { stdout } = await run("docker", ["inspect", "-f", "{{.State.Health.Status}}", container]);
  return stdout.trim() === "healthy" ? true : undefined;
}

/** The values of the keys under `prefix`, read from `container`'s own member (serializable). */
async function memberValues(container: string, prefix: string): Promise<Map<string, string>> {
  const body = JSON.parse(
    await httpIn(container, "http://127.0.0.1:2379/v3/kv/range", {
      key: b64(prefix),
      range_end: b64(
        `${prefix.slice(0, -1)}${String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)}`,
      ),
      serializable: true,
    }),
  ) as { kvs?: { key: string; value: string }[] };
  const text = (v: string) => Buffer.from(v, "base64").toString();
  return new Map((body.kvs ?? []).map((kv) => [text(kv.key), text(kv.value)]));
}

/** `etcdctl member list`'s rows: id, status, name, peer URLs, client URLs, is learner. */
async function memberRows(): Promise<string[][]> {
  return (await etcdctl("member", "list"))
    .trim()
    .split("\n")
    .map((line) => line.split(", "));
}

/**
 * Puts `${prefix}${i}` (its value: the key itself) for i = 0, 1, ... in sequence until stopped;
 * a put that fails is recorded and retried with the same value (at most 60 times), so every
 * acknowledged key is known. Bounded in time too: a writer must not outlive a test that timed out.
 */
function keepWriting(prefix: string, put: (key: string, value: string) => Promise<unknown>, forMs = 540_000) {
  const acknowledged: string[] = [];
  const failures: string[] = [];
  let writing = true;
  const done = (async () => {
    const until = Date.now() + forMs;
    for (let i = 0; writing && i < 10_000 && Date.now() < until; i++) {
      for (let attempt = 0; attempt < 60; attempt++) {
        try {
          await put(`${prefix}${i}`, `${prefix}${i}`);
          acknowledged.push(`${prefix}${i}`);
          break;
        } catch (err) {
          // The first line that is not clientv3's retry log: the error the client reported.
          const lines = (err as Error).message
            .split("\n")
            .filter((l) => l && !l.includes("retry_interceptor"));
          failures.push(lines.slice(0, 2).join(" | "));
          await sleep(250);
        }
      }
    }
  })();
  return {
    acknowledged,
    failures,
    stop: async () => {
      writing = false;
      await done;
    },
  };
}

/** One KV.Put on a plain grpc-js channel: no retry above gRPC's own (transparent) ones. */
function rawPut(channel: grpc.Client, key: string, value: string): Promise<Buffer> {
  const field = (tag: number, text: string) => {
    const bytes = Buffer.from(text);
    assert.ok(bytes.length < 128, "one-byte varint lengths");
    return Buffer.concat([Buffer.from([tag, bytes.length]), bytes]);
  };
  const request = Buffer.concat([field(0x0a, key), field(0x12, value)]); // PutRequest key = 1, value = 2
  const bytes = (b: Buffer) => b;
  return new Promise((resolve, reject) =>
    channel.makeUnaryRequest(
      "/etcdserverpb.KV/Put",
      bytes,
      bytes,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => (err ? reject(err) : resolve(res as Buffer)),
    ),
  );
}
// Each client its own connection (grpc-js shares one between channels to the same target
// otherwise), so the balancer spreads them over the replicas.
const ownConnection = { "grpc.use_local_subchannel_pool": 1 };

const missing = await engineMissing();
if (missing) console.log(`# container tests skipped: ${missing}`);
const opts = { skip: missing || false, timeout: 240_000 };
const learnerContainer = `${project}-etcd4`;

before(async () => {
  if (missing) return;
  const started = Date.now();
  await run("docker", ["build", "-q", "--network", "none", "-f", "deploy/Dockerfile", "-t", image, "."], {
    cwd: root,
    timeout: 600_000,
  });
  const built = Date.now();
  await dc("up", "-d");
  const { stdout: size } = await run("docker", ["image", "inspect", "-f", "{{.Size}}", image]);
  console.log(
    `# image build ${((built - started) / 1000).toFixed(1)} s, size ${(Number(size) / 2 ** 20).toFixed(0)} MiB; ` +
      `compose up to healthy ${((Date.now() - built) / 1000).toFixed(1)} s`,
  );
});

after(async () => {
  if (missing) return;
  // The learner test's member runs beside the project, on its network: gone before `down`.
  await run("docker", ["rm", "-f", "-v", learnerContainer]).catch(() => {});
  await dc("down", "-v", "-t", "5").catch((err) => console.log(`# compose down: ${err.message}`));
});

test(
  "up -d returns with every service healthy; etcdctl and etcd3 work through the published port",
  opts,
  async () => {
    for (const service of ["etcd1", "etcd2", "etcd3", "api-gateway", "auth", "backup", "minio"]) {
      const { stdout } = await run("docker", [
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        await containerOf(service),
      ]);
      assert.equal(stdout.trim(), "healthy", `${service} after up -d`);
    }
    assert.equal((await etcdctl("put", "deploy/a", "1")).trim(), "OK");
    assert.equal((await etcdctl("get", "--print-value-only", "deploy/a")).trim(), "1");
    assert.equal((await etcdctl("member", "list")).trim().split("\n").length, 3);
    const client = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
    try {
      await client.put("deploy/b").value("2");
      assert.equal(await client.get("deploy/b").string(), "2");
      assert.equal(await client.get("deploy/a").string(), "1");
    } finally {
      client.close();
    }
  },
);

test("three gateway replicas behind the balancer all get load", opts, async () => {
  await dc("up", "-d", "--scale", "api-gateway=3");
  // Each etcdctl run is a new connection; the balancer spreads connections round-robin once it
  // has resolved every replica.
  await sleep(5000);
  // Six clients at a time (each etcdctl run is one connection), 30 in all.
  for (let batch = 0; batch < 5; batch++) {
    await Promise.all([0, 1, 2, 3, 4, 5].map((i) => etcdctl("put", `deploy/spread${batch * 6 + i}`, "x")));
  }
  const puts: number[] = [];
  for (let n = 1; n <= 3; n++) {
    const metrics = await httpIn(await containerOf("api-gateway", n), "http://127.0.0.1:2378/metrics");
    const lines = metrics.split("\n").filter((l) => l.startsWith('etcd_gateway_requests_total{method="Put"'));
    puts.push(lines.reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0));
  }
  console.log(`# puts per gateway replica: ${puts.join(", ")}`);
  for (const count of puts) assert.ok(count > 0, `a replica got no load: ${puts}`);
});

test(
  "gateways scaled 3 -> 1 -> 3 under load: stopped replicas drain, no client call fails",
  opts,
  async () => {
    // Writers on their own connections through the balancer (round-robin: most of them on the
    // replicas about to go): plain grpc-js channels with no retries of ours, etcd3 clients with
    // their default policies, and etcdctl runs (a new connection each).
    const channels = [0, 1, 2, 3, 4, 5].map(
      () => new grpc.Client(`127.0.0.1:${clientPort}`, grpc.credentials.createInsecure(), ownConnection),
    );
    const clients = [0, 1, 2].map(
      () => new Etcd3({ hosts: `127.0.0.1:${clientPort}`, grpcOptions: ownConnection }),
    );
    const writers = [
      ...channels.map((c, n) => keepWriting(`deploy/scale/raw${n}/`, (k, v) => rawPut(c, k, v), 180_000)),
      ...clients.map((c, n) =>
        keepWriting(`deploy/scale/etcd3-${n}/`, (k, v) => c.put(k).value(v).exec(), 180_000),
      ),
      keepWriting("deploy/scale/etcdctl/", (k, v) => etcdctl("put", k, v), 180_000),
    ];
    const progressed = (what: string) => {
      const mark = writers.map((w) => w.acknowledged.length);
      return eventually(what, 60_000, 200, async () =>
        writers.every((w, i) => w.acknowledged.length >= (mark[i] as number) + 2) ? true : undefined,
      );
    };
    const took: string[] = [];
    try {
      await progressed("every writer acknowledged");
      for (const replicas of [1, 3]) {
        // Down: compose stops the extra replicas with SIGTERM; each closes its listener, sends
        // GOAWAY and finishes its calls in flight before it exits.
        const started = Date.now();
        await dc("up", "-d", "--no-deps", "--scale", `api-gateway=${replicas}`, "api-gateway");
        took.push(`-> ${replicas}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
        assert.equal((await dc("ps", "-q", "api-gateway")).trim().split("\n").length, replicas);
        await progressed(`every writer acknowledged with ${replicas} gateway(s)`);
      }
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
      for (const c of channels) c.close();
      for (const c of clients) c.close();
    }
    const acknowledged = writers.flatMap((w) => w.acknowledged);
    const failures = writers.flatMap((w) => w.failures);
    console.log(
      `# scale ${took.join(", ")}; ${acknowledged.length} puts acknowledged by ${writers.length} writers, ` +
        `failed calls: ${failures.length}${failures.length ? ` (${failures.join("; ")})` : ""}`,
    );
    if (failures.length > 0) {
      // The balancer's view of the connections that did not end normally (flags other than --).
      const { stdout } = await run("docker", [
        "logs",
        "--since",
        `${Math.ceil(took.length * 60 + 120)}s`,
        await containerOf("lb"),
      ]);
      const abnormal = stdout.split("\n").filter((l) => l.includes(" gateways-grpc/") && !l.includes(" -- "));
      console.log(
        `# balancer, connections that ended abnormally (last 40):\n${abnormal
          .slice(-40)
          .map((l) => `#   ${l}`)
          .join("\n")}`,
      );
    }
    assert.deepEqual(failures, [], "no call failed while replicas went and came");
    const check = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
    try {
      const stored = new Set(await check.getAll().prefix("deploy/scale/").keys());
      assert.deepEqual(
        acknowledged.filter((k) => !stored.has(k)),
        [],
        "every acknowledged put is stored",
      );
    } finally {
      check.close();
    }
  },
);

test("one put's trace reaches the OTLP receiver stand-in with gateway and member spans", opts, async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const res = await fetch(`http://127.0.0.1:${jsonPort}/v3/kv/put`, {
    method: "POST",
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    body: JSON.stringify({ key: b64("deploy/traced"), value: b64("t") }),
  });
  assert.equal(res.status, 200, await res.text());
  // Spans leave in batches (a few seconds), each process its own: the leader's propose may come
  // after a follower's WAL append.
  const wanted = [
    "api-gateway etcdserverpb.KV/Put",
    "raft-node etcdserver.propose",
    "raft-node raft.wal_append",
  ];
  let names: string[] = [];
  await eventually("gateway and member spans of the put", 30_000, 1000, async () => {
    const r = await fetch(`http://127.0.0.1:${otlpPort}/api/traces/${traceId}`);
    const { spans } = (await r.json()) as { spans: { service: string; name: string }[] };
    names = spans.map((s) => `${s.service} ${s.name}`);
    return wanted.every((w) => names.includes(w)) ? true : undefined;
  }).catch((err: Error) => assert.fail(`${err.message}; got ${names.join(", ")}`));
});

test(
  "a scheduled backup lands in the S3 stand-in and restores into a member holding the keys",
  opts,
  async () => {
    for (let i = 0; i < 5; i++)
      assert.equal((await etcdctl("put", `deploy/backup${i}`, `v${i}`)).trim(), "OK");
    // Backup IDs are their UTC start time: the first one that starts after these puts holds them.
    const since = new Date().toISOString().replace(/[:.]/g, "-");
    const backup = await containerOf("backup");
    const listing = () => inContainer(backup, "backup", "list");
    // The newest one: retention (keep 3, one every 10 s) removes older ones while the test runs.
    const id = await eventually("a scheduled backup after the puts", 60_000, 2000, async () =>
      (await listing())
        .split("\n")
        .map((line) => line.split("\t")[0] as string)
        .filter((id) => id > since)
        .sort()
        .at(-1),
    );
    // In the stand-in's own bucket directory, the snapshot and its checksum written last.
    const stored = await inContainer(await containerOf("minio"), "ls", "-R", "/var/lib/etcd/s3/etcd-backups");
    assert.match(stored, new RegExp(`${id}\\.db\\.sha256`));
    const dataDir = `/tmp/restore-${id}`;
    const peer = "http://127.0.0.1:12380";
    await inContainer(
      backup,
      "backup",
      "restore",
      id,
      "--name",
      "r1",
      "--data-dir",
      dataDir,
      "--initial-cluster",
      `r1=${peer}`,
      "--initial-cluster-token",
      "restored",
      "--initial-advertise-peer-urls",
      peer,
    );
    // A member on the restored data, inside the backup container (loopback ports of its own).
    await run("docker", [
      "exec",
      "-d",
      backup,
      "raft-node",
      "--name",
      "r1",
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      "http://127.0.0.1:12379",
      "--advertise-client-urls",
      "http://127.0.0.1:12379",
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `r1=${peer}`,
    ]);
    const kvs = await eventually("the restored member answering", 30_000, 1000, async () => {
      const r = JSON.parse(
        await httpIn(backup, "http://127.0.0.1:12379/v3/kv/range", {
          key: b64("deploy/backup"),
          range_end: b64("deploy/backup~"),
        }),
      ) as { kvs?: { key: string; value: string }[] };
      return r.kvs;
    });
    assert.deepEqual(
      kvs.map((kv) => [Buffer.from(kv.key, "base64").toString(), Buffer.from(kv.value, "base64").toString()]),
      [0, 1, 2, 3, 4].map((i) => [`deploy/backup${i}`, `v${i}`]),
    );
    // Retention (ETCD_BACKUP_KEEP_LAST=3) holds while the schedule keeps running: a new backup is
    // listed before the oldest goes, so four may show for a moment; more than 3 for long may not.
    await sleep(12_000);
    await eventually("at most 3 backups kept", 15_000, 500, async () =>
      (await listing()).trim().split("\n").length <= 3 ? true : undefined,
    );
  },
);

test("the leader's process killed with SIGKILL: writes go on, it restarts and catches up", opts, async () => {
  const members = await Promise.all(["etcd1", "etcd2", "etcd3"].map((m) => containerOf(m)));
  const statuses = await Promise.all(members.map(statusOf));
  const leaderAt = statuses.findIndex((s) => s.header.member_id === s.leader);
  assert.ok(leaderAt >= 0, JSON.stringify(statuses));
  const victim = members[leaderAt] as string;
  const restartsBefore = Number((await run("docker", ["inspect", "-f", "{{.RestartCount}}", victim])).stdout);
  // SIGKILL to the member's node process itself (not `docker kill`, which the restart policy
  // treats as a deliberate stop): the init exits with it and Docker restarts the container.
  // Matched by its whole command line from the start, so this `node -e` never matches itself;
  // it prints the pid first (a pipe write is synchronous), as the container's end may end it too.
  const killed = await inContainer(
    victim,
    "node",
    "-e",
    "const fs=require('fs');for(const p of fs.readdirSync('/proc'))if(/^\\d+$/.test(p)&&fs.readFileSync('/proc/'+p+'/cmdline','utf8').startsWith('node\\0/app/services/raft-node/dist/main.js')){console.log(p);process.kill(+p,'SIGKILL')}",
  ).catch((err: { stdout?: string }) => err.stdout ?? "");
  assert.match(killed, /^\d+\n$/, "one member process killed");
  // Writes through the published port: a write racing the leader's death may fail once (never
  // acknowledged), so each key is tried until acknowledged, boundedly.
  let failures = 0;
  for (let i = 0; i < 20; i++) {
    await eventually(`put deploy/kill${i}`, 30_000, 500, async () => {
      try {
        return (await etcdctl("put", `deploy/kill${i}`, `k${i}`)).trim() === "OK" ? true : undefined;
      } catch (err) {
        failures++;
        throw err;
      }
    });
  }
  console.log(`# puts that failed around the leader's death and were retried: ${failures}`);
  const revision = Number((await statusOf(members[(leaderAt + 1) % 3] as string)).header.revision);
  const restarted = await eventually(
    "the killed member restarted by the restart policy",
    90_000,
    1000,
    async () => {
      const { stdout } = await run("docker", [
        "inspect",
        "-f",
        "{{.RestartCount}} {{.State.Health.Status}}",
        victim,
      ]);
      const [count, health] = stdout.trim().split(" ");
      return Number(count) > restartsBefore && health === "healthy" ? stdout.trim() : undefined;
    },
  );
  console.log(`# killed member back: restarts, health = ${restarted}`);
  await eventually("the restarted member at the cluster's revision", 30_000, 1000, async () =>
    Number((await statusOf(victim)).header.revision) >= revision ? true : undefined,
  );
  const got = JSON.parse(
    await httpIn(victim, "http://127.0.0.1:2379/v3/kv/range", {
      key: b64("deploy/kill19"),
      serializable: true,
    }),
  ) as { kvs?: { value: string }[] };
  assert.equal(Buffer.from(got.kvs?.[0]?.value ?? "", "base64").toString(), "k19");
  for (let i = 0; i < 20; i++)
    assert.equal((await etcdctl("get", "--print-value-only", `deploy/kill${i}`)).trim(), `k${i}`);
});

test(
  "auth through the containers: users, a login through the gateway and the auth service, RBAC",
  opts,
  async () => {
    const as = (user: string, ...args: string[]) => etcdctl(`--user=${user}`, ...args);
    await etcdctl("user", "add", "root:rootpw");
    await etcdctl("role", "add", "root");
    await etcdctl("user", "grant-role", "root", "root");
    await etcdctl("user", "add", "alice:alicepw");
    await etcdctl("role", "add", "app");
    await etcdctl("role", "grant-permission", "app", "readwrite", "app/", "--prefix=true");
    await etcdctl("user", "grant-role", "alice", "app");
    await etcdctl("auth", "enable");
    const okLogins = async () => {
      const metrics = await httpIn(await containerOf("auth"), "http://127.0.0.1:2392/metrics");
      const line = metrics
        .split("\n")
        .find((l) => l.startsWith("etcd_auth_service_authenticate_total") && l.includes('result="ok"'));
      return Number(line?.split(" ").at(-1) ?? 0);
    };
    const loginsBefore = await okLogins();
    try {
      assert.equal((await as("alice:alicepw", "put", "app/x", "1")).trim(), "OK");
      assert.equal((await as("alice:alicepw", "get", "--print-value-only", "app/x")).trim(), "1");
      await assert.rejects(as("alice:alicepw", "put", "other", "1"), /permission denied/);
      await assert.rejects(as("alice:wrong", "get", "app/x"), /authentication failed/);
      await assert.rejects(
        etcdctl("get", "app/x"),
        /user name is empty|invalid auth token|permission denied/,
      );
      // The logins went to the auth service (the gateway's --auth-endpoints in the compose file).
      assert.ok((await okLogins()) >= loginsBefore + 2, "the auth service answered the logins");
    } finally {
      await as("root:rootpw", "auth", "disable");
    }
    assert.equal((await etcdctl("get", "--print-value-only", "app/x")).trim(), "1", "auth off again");
  },
);

test(
  "a fourth member joins as a learner, catches up, is promoted, serves a linearizable read, leaves",
  opts,
  async () => {
    assert.equal((await etcdctl("put", "deploy/before-learner", "old")).trim(), "OK");
    const added = await etcdctl("member", "add", "etcd4", "--learner", "--peer-urls=http://etcd4:2380");
    // etcdctl prints the ID with %16x: an ID with leading zero digits is padded with spaces.
    const id = /Member\s+([0-9a-f]+) added/.exec(added)?.[1];
    assert.ok(id, added);
    try {
      // The ETCD_* lines etcdctl prints, as they are, plus where to listen and what to advertise.
      const printed = [...added.matchAll(/^(ETCD_[A-Z_]+)="(.*)"$/gm)].map((m) => `${m[1]}=${m[2]}`);
      assert.ok(printed.includes("ETCD_INITIAL_CLUSTER_STATE=existing"), added);
      const vars = [
        ...printed,
        "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379",
        "ETCD_ADVERTISE_CLIENT_URLS=http://etcd4:2379",
        "ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380",
      ];
      await run("docker", [
        "run",
        "-d",
        "--init",
        "--name",
        learnerContainer,
        "--network",
        `${project}_default`,
        "--network-alias",
        "etcd4",
        ...vars.flatMap((v) => ["-e", v]),
        image,
      ]);
      // By ID: the name is empty until the new member has published itself.
      const row = async () => (await memberRows()).find((r) => r[0] === id);
      assert.equal((await row())?.[5], "true", "a learner until promoted");
      // etcd refuses the promotion until the learner is in sync with the leader.
      await eventually("member promote accepted", 60_000, 1000, async () =>
        /promoted/.test(await etcdctl("member", "promote", id)) ? true : undefined,
      );
      // A voter now; listed by name once it has published itself (its own proposal, which may
      // commit after the promotion).
      const voter = ["started", "etcd4", "http://etcd4:2380", "http://etcd4:2379", "false"].join();
      await eventually("etcd4 listed as a started voter", 30_000, 1000, async () =>
        (await row())?.slice(1).join() === voter ? true : undefined,
      );
      // A linearizable read on the new voter itself (a ReadIndex round through the leader).
      const read = JSON.parse(
        await httpIn(learnerContainer, "http://127.0.0.1:2379/v3/kv/range", {
          key: b64("deploy/before-learner"),
        }),
      ) as { kvs?: { value: string }[] };
      assert.equal(Buffer.from(read.kvs?.[0]?.value ?? "", "base64").toString(), "old");
    } finally {
      await etcdctl("member", "remove", id);
      await run("docker", ["rm", "-f", "-v", learnerContainer]);
    }
    assert.deepEqual((await memberRows()).map((r) => r[2]).sort(), ["etcd1", "etcd2", "etcd3"]);
    assert.equal((await etcdctl("put", "deploy/after-learner", "x")).trim(), "OK");
  },
);

test("a dead member replaced by a fresh one under writes: every key served, none lost", opts, async () => {
  for (let i = 0; i < 10; i++)
    assert.equal((await etcdctl("put", `deploy/replace/pre${i}`, `p${i}`)).trim(), "OK");
  const members = ["etcd1", "etcd2", "etcd3"];
  const statuses = await Promise.all(members.map(async (m) => statusOf(await containerOf(m))));
  // A follower: a leader's death is the SIGKILL test's.
  const dead = members[statuses.findIndex((s) => s.header.member_id !== s.leader)] as string;
  const oldId = (await memberRows()).find((r) => r[2] === dead)?.[0];
  const client = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
  const writer = keepWriting("deploy/replace/w", (k, v) => client.put(k).value(v).exec(), 180_000);
  let replacement = "";
  try {
    await eventually("writes acknowledged", 30_000, 200, async () =>
      writer.acknowledged.length > 3 ? true : undefined,
    );
    // Dead for good: killed, its container and its data gone.
    await dc("kill", dead);
    await dc("rm", "-f", dead);
    await run("docker", ["volume", "rm", `${project}_${dead}-data`]);
    const started = Date.now();
    // deploy/README.md's recipe: remove the dead member, add its replacement (same name and
    // peer URL, so the compose service and the others' --initial-cluster stay as they are),
    // start it on an empty volume with ETCD_INITIAL_CLUSTER_STATE=existing.
    await etcdctl("member", "remove", oldId as string);
    const added = await etcdctl("member", "add", dead, `--peer-urls=http://${dead}:2380`);
    assert.match(added, /ETCD_INITIAL_CLUSTER_STATE="existing"/);
    await dcWith({ ETCD_INITIAL_CLUSTER_STATE: "existing" }, "up", "-d", "--no-deps", dead);
    replacement = await containerOf(dead);
    await eventually(`the new ${dead} healthy`, 120_000, 1000, () => healthy(replacement));
    console.log(
      `# replacement: remove, add, start, healthy in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    const mark = writer.acknowledged.length;
    await eventually("writes acknowledged after the replacement", 30_000, 200, async () =>
      writer.acknowledged.length > mark + 3 ? true : undefined,
    );
  } finally {
    await writer.stop();
  }
  try {
    const rows = await memberRows();
    assert.equal(rows.length, 3);
    const newId = rows.find((r) => r[2] === dead)?.[0];
    assert.ok(newId !== undefined && newId !== oldId, `${dead} is a new member (${oldId} -> ${newId})`);
    console.log(
      `# replacement under writes: ${writer.acknowledged.length} puts acknowledged, ` +
        `${writer.failures.length} attempts failed and retried`,
    );
    // Every key, the ones from before and every acknowledged one, on the new member's own store
    // (serializable: what it holds itself) and through the gateway.
    const expected = new Map([
      ...Array.from({ length: 10 }, (_, i) => [`deploy/replace/pre${i}`, `p${i}`] as const),
      ...writer.acknowledged.map((k) => [k, k] as const),
    ]);
    await eventually(`every key on the new ${dead}`, 30_000, 500, async () => {
      const held = await memberValues(replacement, "deploy/replace/");
      return [...expected].every(([k, v]) => held.get(k) === v) ? true : undefined;
    });
    const stored = new Map(Object.entries(await client.getAll().prefix("deploy/replace/").strings()));
    assert.deepEqual(
      [...expected].filter(([k, v]) => stored.get(k) !== v),
      [],
    );
  } finally {
    client.close();
  }
});

// Three restarts, each waiting for health: minutes on a loaded machine.
test("a rolling restart of every member under writes: no acknowledged write lost", {
  ...opts,
  timeout: 600_000,
}, async () => {
  // One writer through the published port, puts in sequence; a put that fails (its member
  // stopping under it) is retried with the same value, so every acknowledged key is known.
  const client = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
  const writer = keepWriting("deploy/roll", (k, v) => client.put(k).value(v).exec());
  try {
    for (const member of ["etcd1", "etcd2", "etcd3"]) {
      const before = writer.acknowledged.length;
      // SIGTERM (a leader hands leadership over first), then the same container again.
      await dc("restart", "-t", "20", member);
      const container = await containerOf(member);
      await eventually(`${member} healthy after its restart`, 180_000, 1000, () => healthy(container)).catch(
        async (err: Error) => {
          // What the members said and what their last health checks answered, for whoever
          // reads the failure.
          for (const m of ["etcd1", "etcd2", "etcd3"]) {
            const id = await containerOf(m);
            const { stdout, stderr } = await run("docker", ["logs", "--tail", "25", id]);
            const checks = await run("docker", ["inspect", "-f", "{{json .State.Health.Log}}", id]);
            console.log(
              `# ${m}:\n${`${stdout}${stderr}\nhealth checks: ${checks.stdout}`.replace(/^/gm, "#   ")}`,
            );
          }
          throw err;
        },
      );
      await eventually(`writes acknowledged after ${member} came back`, 30_000, 200, async () =>
        writer.acknowledged.length > before + 5 ? true : undefined,
      );
    }
  } finally {
    await writer.stop();
  }
  try {
    const { acknowledged } = writer;
    console.log(
      `# rolling restart: ${acknowledged.length} puts acknowledged, ${writer.failures.length} attempts failed and retried`,
    );
    assert.ok(acknowledged.length > 20, `only ${acknowledged.length} puts acknowledged`);
    // One range for all of them (a get each took minutes on a loaded machine).
    const stored = await client.getAll().prefix("deploy/roll").strings();
    assert.deepEqual(
      acknowledged.filter((key) => stored[key] !== key),
      [],
    );
    // Every member holds them: the last one, read serializably from each member's own port.
    const last = acknowledged.at(-1) as string;
    for (const member of ["etcd1", "etcd2", "etcd3"]) {
      const container = await containerOf(member);
      await eventually(`${last} on ${member}`, 30_000, 500, async () =>
        (await memberValues(container, last)).get(last) === last ? true : undefined,
      );
    }
  } finally {
    client.close();
  }
});

// Stops and starts the whole cluster: last.
test("deploy/README.md's restore recipe: a backup taken now, restored into the members' volumes", {
  ...opts,
  timeout: 300_000,
}, async () => {
  assert.equal((await etcdctl("put", "deploy/restore/kept", "1")).trim(), "OK");
  // A backup now (POST /backups; 409 while a scheduled one runs).
  const backup = await containerOf("backup");
  const id = await eventually("a backup taken now", 60_000, 1000, async () => {
    const taken = JSON.parse(await httpIn(backup, "http://127.0.0.1:2390/backups", {})) as { id?: string };
    return taken.id;
  });
  assert.equal((await etcdctl("put", "deploy/restore/after", "2")).trim(), "OK");
  const started = Date.now();
  await dc("stop", "etcd1", "etcd2", "etcd3", "api-gateway", "auth", "backup");
  const cluster = "etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380";
  for (const n of [1, 2, 3]) {
    await dc(
      "run",
      "--rm",
      "--no-deps",
      "-v",
      `${project}_etcd${n}-data:/restore`,
      "backup",
      "sh",
      "-c",
      `rm -rf /restore/* && backup restore ${id} --name etcd${n} --data-dir /restore/member-data ` +
        `--initial-cluster ${cluster} --initial-cluster-token etcd-ts-compose ` +
        `--initial-advertise-peer-urls http://etcd${n}:2380 && ` +
        "mv /restore/member-data/* /restore/ && rmdir /restore/member-data",
    );
  }
  await dc("up", "-d");
  console.log(
    `# restore recipe: stop, restore 3 volumes, up to healthy in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  assert.equal((await etcdctl("get", "--print-value-only", "deploy/restore/kept")).trim(), "1");
  assert.equal(
    (await etcdctl("get", "--print-value-only", "deploy/restore/after")).trim(),
    "",
    "written after the backup",
  );
  // Every restored member answers on its own: deploy/README.md's etcdctl on the compose network.
  const status = await dc(
    "run",
    "--rm",
    "--no-deps",
    "-v",
    "/usr/bin/etcdctl:/usr/local/bin/etcdctl:ro",
    "backup",
    "etcdctl",
    "--endpoints=etcd1:2379,etcd2:2379,etcd3:2379",
    "endpoint",
    "status",
  );
  assert.deepEqual(
    status
      .trim()
      .split("\n")
      .map((line) => line.split(", ")[0]),
    ["etcd1:2379", "etcd2:2379", "etcd3:2379"],
    status,
  );
  assert.equal((await etcdctl("put", "deploy/restore/new", "3")).trim(), "OK");
});
