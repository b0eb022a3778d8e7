// services/auth with TLS on every link (scripts/gen-test-certs.sh makes a fresh CA): members
// require client and peer certificates, the auth service serves the gateways over TLS with
// client certificates required and reaches the members' peer port with a peer certificate, the
// gateway dials both with its own. etcdctl logs in through the gateway; a caller without a
// certificate is refused at the auth service's handshake, with etcd's log line.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { AuthStack } from "./testing/auth-stack.js";

const script = resolve(import.meta.dirname, "../../../scripts/gen-test-certs.sh");

function etcdctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      "/usr/bin/etcdctl",
      ["--dial-timeout=3s", "--command-timeout=8s", ...args],
      { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 20_000 },
      (err, stdout, stderr) =>
        done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** GET over HTTPS trusting only `caFile`; the body. */
function getTrusting(url: string, caFile: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const req = httpsGet(url, { ca: readFileSync(caFile) }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolvePromise(body));
    });
    req.on("error", reject);
  });
}

describe("services/auth over TLS, members and gateway over TLS", { timeout: 180_000 }, () => {
  const certs = mkdtempSync(join(tmpdir(), "auth-tls-"));
  const file = (name: string) => join(certs, name);
  const client = [
    `--cacert=${file("ca.crt")}`,
    `--cert=${file("client.crt")}`,
    `--key=${file("client.key")}`,
  ];
  let stack: AuthStack;
  const viaGateway = (...args: string[]) => etcdctl([`--endpoints=${stack.gatewayAddr}`, ...client, ...args]);

  before(async () => {
    execFileSync("bash", [script, certs]);
    stack = await AuthStack.start({ authReplicas: 1, tlsCerts: certs, memberFlags: ["--bcrypt-cost=4"] });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      ["auth", "enable"],
    ]) {
      const r = await viaGateway(...args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
    }
  });
  after(async () => {
    await stack?.close();
    rmSync(certs, { recursive: true, force: true });
  });

  test("etcdctl logs in through the gateway; the auth service checked the password over peer TLS", async () => {
    const put = await viaGateway("--user=alice:alicepw", "put", "/a/x", "1");
    assert.equal(put.code, 0, put.stderr);
    const wrong = await viaGateway("--user=alice:nope", "get", "/a/x");
    assert.match(wrong.stderr, /etcdserver: authentication failed, invalid user ID or password/);
    const metrics = await getTrusting(`${stack.auth[0]!.httpUrl}/metrics`, file("ca.crt"));
    assert.match(metrics, /etcd_auth_service_authenticate_total\{result="ok"\} [1-9]/);
    assert.match(metrics, /etcd_auth_service_authenticate_total\{result="failed"\} [1-9]/);
  });

  test("a caller without a client certificate is refused at the auth service's handshake, and logged", async () => {
    const auth = stack.auth[0]!;
    const r = await etcdctl([
      `--endpoints=${auth.grpcAddr}`,
      `--cacert=${file("ca.crt")}`,
      "--user=alice:alicepw",
      "get",
      "/a/x",
    ]);
    assert.notEqual(r.code, 0);
    assert.match(
      auth.output.text,
      /rejected connection from \\"127\.0\.0\.1:\d+\\" \(error \\".*certificate/,
    );
    // Plaintext to a TLS port gets nowhere either.
    const plain = await etcdctl([`--endpoints=${auth.grpcAddr}`, "--user=alice:alicepw", "get", "/a/x"]);
    assert.notEqual(plain.code, 0);
  });

  test("the HTTP port (public keys, health, metrics) is HTTPS with the same certificate, no client certificate asked", async () => {
    const url = stack.auth[0]!.httpUrl;
    assert.match(url, /^https:/);
    const jwks = JSON.parse(await getTrusting(`${url}/.well-known/jwks.json`, file("ca.crt"))) as {
      keys: { kid: string }[];
    };
    assert.ok(jwks.keys.length > 0);
    assert.equal(JSON.parse(await getTrusting(`${url}/health`, file("ca.crt"))).health, "true");
    // A client that does not trust the CA refuses the server, and plain HTTP gets no answer.
    await assert.rejects(
      getTrusting(`${url}/health`, file("other-ca.crt")),
      /self-signed|unable to verify|certificate/,
    );
    await assert.rejects(fetch(`${url.replace(/^https:/, "http:")}/health`));
  });
});
