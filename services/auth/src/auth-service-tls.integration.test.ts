// services/auth with TLS on every link (scripts/gen-test-certs.sh makes a fresh CA): members
// require client and peer certificates, the auth service serves the gateways over TLS with
// client certificates required and reaches the members' peer port with a peer certificate, the
// gateway dials both with its own. etcdctl logs in through the gateway; a caller without a
// certificate is refused at the auth service's handshake, with etcd's log line.
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
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
    stack = await AuthStack.start({
      authReplicas: 1,
      tlsCerts: certs,
      memberFlags: ["--bcrypt-cost=4"],
      // The gateway shows server.crt (CN=server) to the auth service.
      authFlags: ["--trusted-gateway-cn=server"],
    });
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["user", "add", "alice:alicepw"],
      ["role", "add", "a-rw"],
      ["role", "grant-permission", "a-rw", "readwrite", "/a/", "--prefix"],
      ["user", "grant-role", "alice", "a-rw"],
      // client.crt's CN: a user without a password, for certificate logins only.
      ["user", "add", "client", "--no-password"],
      ["role", "add", "c-rw"],
      ["role", "grant-permission", "c-rw", "readwrite", "/c/", "--prefix"],
      ["user", "grant-role", "client", "c-rw"],
      ["auth", "enable"],
      ["--user=root:rootpw", "put", "/a/secret", "alice-only"],
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

  test("a client certificate's CN is the user through the gateway, as on a member: it sees only its prefix", async () => {
    const member = stack.cluster.members[0]!.clientUrl.replace(/^https:\/\//, "");
    const as = (endpoint: string, cert: string, ...args: string[]) =>
      etcdctl([
        `--endpoints=${endpoint}`,
        `--cacert=${file("ca.crt")}`,
        `--cert=${file(`${cert}.crt`)}`,
        `--key=${file(`${cert}.key`)}`,
        ...args,
      ]);
    for (const endpoint of [member, stack.gatewayAddr]) {
      const put = await as(endpoint, "client", "put", "/c/k", `v-${endpoint}`);
      assert.equal(put.code, 0, `${endpoint}: ${put.stderr}`);
      const own = await as(endpoint, "client", "get", "/c/", "--prefix", "--print-value-only");
      assert.equal(own.stdout, `v-${endpoint}\n`, endpoint);
      for (const args of [
        ["get", "/a/secret"],
        ["get", "/", "--prefix"],
        ["put", "/a/secret", "x"],
      ]) {
        const r = await as(endpoint, "client", ...args);
        assert.notEqual(r.code, 0, `${endpoint} ${args.join(" ")}`);
        assert.match(r.stderr, /etcdserver: permission denied/, `${endpoint} ${args.join(" ")}`);
        assert.equal(r.stdout, "", `${endpoint} ${args.join(" ")}`);
      }
      // root.crt's CN is root: everything, no password.
      const root = await as(endpoint, "root", "get", "/a/secret", "--print-value-only");
      assert.equal(root.stdout, "alice-only\n", endpoint);
    }
    // An auth change makes the CN's held token old on every member: the gateway takes a new one
    // (the client, as with etcd, never sees "revision of auth store is old").
    const granted = await viaGateway(
      "--user=root:rootpw",
      "role",
      "grant-permission",
      "c-rw",
      "read",
      "/a/secret",
    );
    assert.equal(granted.code, 0, granted.stderr);
    // A watch cannot be sent again: once the gateway has seen the new auth revision (its probe,
    // every 500 ms here), a CN's watch starts with a new token.
    await new Promise((r) => setTimeout(r, 1_500));
    const watcher = spawn(
      "/usr/bin/etcdctl",
      [
        `--endpoints=${stack.gatewayAddr}`,
        `--cacert=${file("ca.crt")}`,
        `--cert=${file("client.crt")}`,
        `--key=${file("client.key")}`,
        "watch",
        "/c/",
        "--prefix",
      ],
      { env: { ...process.env, ETCDCTL_API: "3" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let watched = "";
    watcher.stdout.on("data", (c: Buffer) => {
      watched += c.toString();
    });
    watcher.stderr.on("data", (c: Buffer) => {
      watched += c.toString();
    });
    try {
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal((await viaGateway("--user=root:rootpw", "put", "/c/w", "event-value")).code, 0);
      for (let i = 0; i < 50 && !watched.includes("event-value"); i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(
        watched,
        /\/c\/w\nevent-value/,
        "the CN's watch, started after the change, sees its prefix",
      );
    } finally {
      watcher.kill();
    }
    const now = await as(stack.gatewayAddr, "client", "get", "/a/secret", "--print-value-only");
    assert.equal(now.stdout, "alice-only\n", now.stderr);
    // A token still wins over the certificate, as in etcd.
    const alice = await viaGateway("--user=alice:alicepw", "get", "/c/k");
    assert.match(alice.stderr, /etcdserver: permission denied/);
  });

  test("without a trusted certificate nobody gets a CN's rights: no or an untrusted client certificate is refused at the gateway, and only a trusted gateway may ask the auth service for a CN's token", async () => {
    const gatewayLogBefore = stack.gateway.output.text.length;
    const none = await etcdctl([
      `--endpoints=${stack.gatewayAddr}`,
      `--cacert=${file("ca.crt")}`,
      "get",
      "/c/k",
    ]);
    assert.notEqual(none.code, 0);
    const untrusted = await etcdctl([
      `--endpoints=${stack.gatewayAddr}`,
      `--cacert=${file("ca.crt")}`,
      `--cert=${file("wrong-ca.crt")}`,
      `--key=${file("wrong-ca.key")}`,
      "get",
      "/c/k",
    ]);
    assert.notEqual(untrusted.code, 0);
    assert.equal(untrusted.stdout, "");
    const log = stack.gateway.output.text.slice(gatewayLogBefore);
    assert.match(log, /rejected connection from .*certificate/);

    // A client with a certificate of the right CA is not a gateway: the auth service refuses it.
    const auth = stack.auth[0]!;
    const credentials = grpc.credentials.createSsl(
      readFileSync(file("ca.crt")),
      readFileSync(file("client.key")),
      readFileSync(file("client.crt")),
    );
    const client = new grpc.Client(auth.grpcAddr, credentials);
    try {
      const request = etcdserverpb.AuthenticateRequest.encode({ name: "root", password: "" }).finish();
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(
          "/etcdts.gatewayauth.GatewayAuth/CommonNameToken",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from(request),
          new grpc.Metadata(),
          { deadline: Date.now() + 10_000 },
          (e) => resolve(e),
        ),
      );
      assert.deepEqual(
        [err?.code, err?.details],
        [
          grpc.status.PERMISSION_DENIED,
          "etcd-ts auth: only a trusted gateway may ask for a certificate's token",
        ],
      );
      // The log line may reach this process after the answer did.
      const refusedLine =
        /"caller":"client".*refused a certificate token: the caller is not a trusted gateway/;
      for (let i = 0; i < 50 && !refusedLine.test(auth.output.text); i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.match(auth.output.text, refusedLine);
    } finally {
      client.close();
    }
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
