// The compose topology (deploy/compose, offline override) in real containers: the image is
// built with no network, 3 members + gateways come up behind the published port, etcdctl and
// etcd3 work through it, and three gateway replicas all get load. Skips with the reason when
// no container engine can be reached (run scripts/docker-setup.sh first).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Etcd3 } from "etcd3";
import { getContainerRuntimeClient, ImageName } from "testcontainers";

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), "../../../..");
const composeDir = join(root, "deploy/compose");
const project = `etcdts-test-${process.pid}`;
const image = "etcd-ts:integration-test";
const clientPort = "42379";
const jsonPort = "42378";

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
};
async function dc(...args: string[]): Promise<string> {
  const [cmd, ...pre] = compose as string[];
  const files = ["-p", project, "-f", "compose.yaml", "-f", "compose.offline.yaml"];
  const { stdout } = await run(cmd as string, [...pre, ...files, ...args], {
    cwd: composeDir,
    env,
    timeout: 240_000,
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

async function memberJson(container: string, path: string): Promise<string> {
  const script = `fetch('http://127.0.0.1:${path}').then(r=>r.text()).then(t=>process.stdout.write(t))`;
  const { stdout } = await run("docker", ["exec", container, "node", "-e", script], { timeout: 20_000 });
  return stdout;
}

const missing = await engineMissing();
if (missing) console.log(`# container tests skipped: ${missing}`);
const opts = { skip: missing || false, timeout: 300_000 };

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

test("etcdctl and the etcd3 client work through the published port", opts, async () => {
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
});

test("three gateway replicas behind the balancer all get load", opts, async () => {
  await dc("up", "-d", "--scale", "api-gateway=3");
  // Each etcdctl run is a new connection; the balancer spreads connections round-robin once it
  // has resolved every replica.
  await new Promise((r) => setTimeout(r, 5000));
  for (let i = 0; i < 30; i++) await etcdctl("put", `deploy/spread${i}`, "x");
  const puts: number[] = [];
  for (let n = 1; n <= 3; n++) {
    const metrics = await memberJson(await containerOf("api-gateway", n), "2378/metrics");
    const lines = metrics.split("\n").filter((l) => l.startsWith('etcd_gateway_requests_total{method="Put"'));
    puts.push(lines.reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0));
  }
  console.log(`# puts per gateway replica: ${puts.join(", ")}`);
  for (const count of puts) assert.ok(count > 0, `a replica got no load: ${puts}`);
});
