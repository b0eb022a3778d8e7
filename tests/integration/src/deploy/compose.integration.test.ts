// The compose topology (deploy/compose, offline override) in real containers, one compose project
// for the whole file: the image is built with no network; `up -d` returns with members, gateways,
// auth, backup and the S3 stand-in healthy; etcdctl and etcd3 work through the published port;
// three gateway replicas all get load; one put's trace reaches the OTLP receiver stand-in with
// gateway and member spans; a scheduled backup lands in the S3 stand-in and restores into a
// member holding the keys; the leader's process killed with SIGKILL: writes go on, the restart
// policy brings it back and it catches up; a rolling restart of every member under writes loses
// no acknowledged write; users, a login through the gateway and the auth service, and RBAC.
// Skips with the reason when no container engine can be reached (run scripts/docker-setup.sh first).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
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
async function dc(...args: string[]): Promise<string> {
  const [cmd, ...pre] = compose as string[];
  const files = ["-p", project, "-f", "compose.yaml", "-f", "compose.offline.yaml"];
  const { stdout } = await run(cmd as string, [...pre, ...files, ...args], {
    cwd: composeDir,
    env,
    // `up` on a loaded 2-core machine (other compose projects beside it) has taken over 5 min.
    timeout: 600_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

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

const missing = await engineMissing();
if (missing) console.log(`# container tests skipped: ${missing}`);
const opts = { skip: missing || false, timeout: 240_000 };

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

test("one put's trace reaches the OTLP receiver stand-in with gateway and member spans", opts, async () => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const res = await fetch(`http://127.0.0.1:${jsonPort}/v3/kv/put`, {
    method: "POST",
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
    body: JSON.stringify({ key: b64("deploy/traced"), value: b64("t") }),
  });
  assert.equal(res.status, 200, await res.text());
  // Spans leave in batches (a few seconds); the member's follow its gateway's.
  const spans = await eventually("gateway and member spans of the put", 30_000, 1000, async () => {
    const r = await fetch(`http://127.0.0.1:${otlpPort}/api/traces/${traceId}`);
    const { spans } = (await r.json()) as { spans: { service: string; name: string }[] };
    const services = new Set(spans.map((s) => s.service));
    return services.has("api-gateway") && services.has("raft-node") ? spans : undefined;
  });
  const names = spans.map((s) => `${s.service} ${s.name}`);
  assert.ok(names.includes("raft-node etcdserver.propose"), names.join(", "));
  assert.ok(names.includes("raft-node raft.wal_append"), names.join(", "));
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

// Three restarts, each waiting for health: minutes on a loaded machine.
test("a rolling restart of every member under writes: no acknowledged write lost", {
  ...opts,
  timeout: 600_000,
}, async () => {
  // One writer through the published port, puts in sequence; a put that fails (its member
  // stopping under it) is retried with the same value, so every acknowledged key is known.
  const client = new Etcd3({ hosts: `127.0.0.1:${clientPort}` });
  const acknowledged: number[] = [];
  let failures = 0;
  let writing = true;
  const writer = (async () => {
    // Bounded in time too: if the test times out, its writer must not outlive it.
    const writeUntil = Date.now() + 540_000;
    for (let i = 0; writing && i < 5_000 && Date.now() < writeUntil; i++) {
      for (let attempt = 0; attempt < 60; attempt++) {
        try {
          await client.put(`deploy/roll${i}`).value(`r${i}`);
          acknowledged.push(i);
          break;
        } catch {
          failures++;
          await sleep(250);
        }
      }
    }
  })();
  try {
    for (const member of ["etcd1", "etcd2", "etcd3"]) {
      const before = acknowledged.length;
      // SIGTERM (a leader hands leadership over first), then the same container again.
      await dc("restart", "-t", "20", member);
      const container = await containerOf(member);
      await eventually(`${member} healthy after its restart`, 180_000, 1000, async () => {
        const { stdout } = await run("docker", ["inspect", "-f", "{{.State.Health.Status}}", container]);
        return stdout.trim() === "healthy" ? true : undefined;
      }).catch(async (err: Error) => {
        // What the members said, for whoever reads the failure.
        for (const m of ["etcd1", "etcd2", "etcd3"]) {
          const { stdout, stderr } = await run("docker", ["logs", "--tail", "25", await containerOf(m)]);
          console.log(`# ${m}:\n${`${stdout}${stderr}`.replace(/^/gm, "#   ")}`);
        }
        throw err;
      });
      await eventually(`writes acknowledged after ${member} came back`, 30_000, 200, async () =>
        acknowledged.length > before + 5 ? true : undefined,
      );
    }
  } finally {
    writing = false;
    await writer;
  }
  try {
    console.log(
      `# rolling restart: ${acknowledged.length} puts acknowledged, ${failures} attempts failed and retried`,
    );
    assert.ok(acknowledged.length > 20, `only ${acknowledged.length} puts acknowledged`);
    for (const i of acknowledged)
      assert.equal(await client.get(`deploy/roll${i}`).string(), `r${i}`, `deploy/roll${i}`);
    // Every member holds them: the last one, read serializably from each member's own port.
    const last = acknowledged.at(-1)!;
    for (const member of ["etcd1", "etcd2", "etcd3"]) {
      const got = await eventually(`deploy/roll${last} on ${member}`, 30_000, 500, async () => {
        const body = JSON.parse(
          await httpIn(await containerOf(member), "http://127.0.0.1:2379/v3/kv/range", {
            key: b64(`deploy/roll${last}`),
            serializable: true,
          }),
        ) as { kvs?: { value: string }[] };
        return body.kvs?.[0] === undefined ? undefined : Buffer.from(body.kvs[0].value, "base64").toString();
      });
      assert.equal(got, `r${last}`);
    }
  } finally {
    client.close();
  }
});
