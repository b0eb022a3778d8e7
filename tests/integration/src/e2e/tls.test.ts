// TLS from certificate files, end to end (scripts/gen-test-certs.sh makes a fresh CA per run):
// three members with client and peer certificates (client certificates required, a CRL, peer
// CN restricted), a gateway serving TLS to clients and dialling members with mTLS. etcdctl
// (--cacert --cert --key) and the npm etcd3 client to a member and through the gateway; each
// refused certificate is logged with its reason and changes nothing; with --client-cert-auth a
// client certificate's CN is the auth user when no token is sent.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { Etcd3 } from "etcd3";
import { etcdctl, lastLine, Stack, sleep } from "./stack.js";

const script = resolve(import.meta.dirname, "../../../../scripts/gen-test-certs.sh");
describe("TLS from certificate files", { timeout: 240_000 }, () => {
  const certs = mkdtempSync(join(tmpdir(), "tls-certs-"));
  const file = (name: string) => join(certs, name);
  const as = (who: string) => [
    `--cacert=${file("ca.crt")}`,
    `--cert=${file(`${who}.crt`)}`,
    `--key=${file(`${who}.key`)}`,
  ];
  let stack: Stack;
  const member = (i: number) => stack.cluster.members[i]!;

  before(async () => {
    execFileSync("bash", [script, certs]);
    stack = await Stack.start(
      [
        "--bcrypt-cost=4",
        ...["--cert-file", file("server.crt"), "--key-file", file("server.key")],
        ...["--trusted-ca-file", file("ca.crt"), "--client-cert-auth", "--client-crl-file", file("ca.crl")],
        ...["--peer-cert-file", file("peer.crt"), "--peer-key-file", file("peer.key")],
        ...[
          "--peer-trusted-ca-file",
          file("ca.crt"),
          "--peer-client-cert-auth",
          "--peer-cert-allowed-cn",
          "peer",
        ],
      ],
      {},
      [
        ...["--cert-file", file("server.crt"), "--key-file", file("server.key")],
        ...["--trusted-ca-file", file("ca.crt"), "--client-cert-auth", "--client-crl-file", file("ca.crl")],
        ...["--cacert", file("ca.crt"), "--cert", file("server.crt"), "--key", file("server.key")],
      ],
      { clientScheme: "https", peerScheme: "https", etcdctlTlsFlags: as("client") },
    );
  });
  after(async () => {
    await stack?.close();
    rmSync(certs, { recursive: true, force: true });
  });

  test("etcdctl to a member and through the gateway; writes replicate over peer TLS", async () => {
    assert.equal((await etcdctl(member(0).clientUrl, [...as("client"), "put", "/tls/a", "1"])).code, 0);
    for (const endpoint of [member(2).clientUrl, stack.gatewayAddr]) {
      let value = "";
      for (let i = 0; i < 50 && value !== "1\n"; i++) {
        value = (
          await etcdctl(endpoint, [...as("client"), "get", "/tls/a", "--print-value-only", "--consistency=s"])
        ).stdout;
        if (value !== "1\n") await sleep(100);
      }
      assert.equal(value, "1\n", endpoint);
    }
    // A lease kept alive through every member: followers forward to the leader's https client URL.
    const grant = await etcdctl(member(1).clientUrl, [...as("client"), "lease", "grant", "60"]);
    const id = /lease ([0-9a-f]+) granted/.exec(grant.stdout)?.[1];
    assert.ok(id, grant.stdout + grant.stderr);
    for (let i = 0; i < 3; i++) {
      const res = await etcdctl(member(i).clientUrl, [...as("client"), "lease", "keep-alive", "--once", id]);
      assert.match(res.stdout, /keepalived with TTL/, res.stderr);
    }
  });

  test("the npm etcd3 client to a member and through the gateway", async () => {
    const credentials = {
      rootCertificate: readFileSync(file("ca.crt")),
      certChain: readFileSync(file("client.crt")),
      privateKey: readFileSync(file("client.key")),
    };
    for (const host of [member(1).clientUrl, `https://${stack.gatewayAddr}`]) {
      const client = new Etcd3({ hosts: host, credentials });
      try {
        await client.put(`/tls/etcd3${host}`).value("v");
        assert.equal(await client.get(`/tls/etcd3${host}`).string(), "v");
      } finally {
        client.close();
      }
    }
  });

  test("HTTP/1.1 on the TLS client ports: /health, /version, /metrics and the JSON gateway with curl", async () => {
    const curl = (url: string, ...extra: string[]) =>
      new Promise<string>((done, fail) =>
        execFile(
          "curl",
          [
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            file("ca.crt"),
            "--cert",
            file("client.crt"),
            "--key",
            file("client.key"),
            ...extra,
            url,
          ],
          (err, stdout, stderr) => (err ? fail(new Error(`${err.message}: ${stderr}`)) : done(stdout)),
        ),
      );
    assert.equal(await curl(`${member(0).clientUrl}/health`), '{"health":"true"}');
    assert.match(await curl(`${member(0).clientUrl}/version`), /"etcdserver":"3\.4\.23"/);
    assert.match(await curl(`${member(0).clientUrl}/metrics`), /^etcd_server_has_leader 1$/m);
    const key = Buffer.from("/tls/a").toString("base64");
    for (const base of [`https://${stack.gatewayAddr}`, stack.jsonUrl]) {
      const answer = await curl(`${base}/v3/kv/range`, "-X", "POST", "-d", JSON.stringify({ key }));
      assert.match(answer, new RegExp(`"value":"${Buffer.from("1").toString("base64")}"`), base);
    }
  });

  test("a wrong CA, an expired or a revoked certificate is refused, logged, and changes nothing", async () => {
    const cases: [string, RegExp][] = [
      ["wrong-ca", /certificate signed by unknown authority/],
      ["expired", /certificate has expired/],
      ["revoked", /transport: certificate serial [0-9a-f]+ revoked/],
    ];
    for (const [who, reason] of cases) {
      for (const [endpoint, output] of [
        [member(0).clientUrl, () => member(0).output],
        [stack.gatewayAddr, () => stack.gatewayOutput.text],
      ] as const) {
        const before = output().length;
        const res = await etcdctl(endpoint, [
          ...as(who),
          "--dial-timeout=2s",
          "--command-timeout=3s",
          "put",
          `/tls/bad/${who}`,
          "x",
        ]);
        assert.notEqual(res.code, 0, `${who} via ${endpoint}`);
        const logged = output().slice(before);
        assert.match(
          logged,
          /rejected connection from \\"127\.0\.0\.1:\d+\\" \(error \\"[^"]*/,
          `${who} via ${endpoint}`,
        );
        assert.match(logged, reason, `${who} via ${endpoint}`);
      }
    }
    const written = await etcdctl(member(0).clientUrl, [
      ...as("client"),
      "get",
      "/tls/bad/",
      "--prefix",
      "--keys-only",
    ]);
    assert.equal(written.code, 0, written.stderr);
    assert.equal(written.stdout, "");
  });

  test("a peer certificate whose CN is not --peer-cert-allowed-cn is refused", async () => {
    const peerUrl = new URL(member(0).peerUrl);
    const before = member(0).output.length;
    const outcome = await new Promise<string>((done) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port: Number(peerUrl.port),
        ca: readFileSync(file("ca.crt")),
        cert: readFileSync(file("client.crt")),
        key: readFileSync(file("client.key")),
        ALPNProtocols: ["h2"],
      });
      socket.on("error", () => {});
      socket.on("close", () => done("closed"));
    });
    assert.equal(outcome, "closed");
    for (
      let i = 0;
      i < 50 && !member(0).output.slice(before).includes("client certificate authentication failed");
      i++
    ) {
      await sleep(50);
    }
    assert.match(
      member(0).output.slice(before),
      /rejected connection from .*client certificate authentication failed/,
    );
    // The members' own peer certificates (CN=peer) still carry the cluster.
    assert.equal(
      (await etcdctl(member(2).clientUrl, [...as("client"), "put", "/tls/after-peer", "ok"])).code,
      0,
    );
  });

  test("with --client-cert-auth, the certificate's CN is the user when the request has no token", async () => {
    const m = member(0).clientUrl;
    for (const args of [
      ["user", "add", "root:rootpw"],
      ["role", "add", "root"],
      ["user", "grant-role", "root", "root"],
      ["auth", "enable"],
    ]) {
      const res = await etcdctl(m, [...as("root"), ...args]);
      assert.equal(res.code, 0, `${args.join(" ")}: ${res.stderr}`);
    }
    try {
      // CN=root: root, with no password.
      assert.equal((await etcdctl(m, [...as("root"), "put", "/tls/cn", "by-root"])).code, 0);
      // CN=client names no user: refused, nothing written.
      const denied = await etcdctl(m, [...as("client"), "put", "/tls/cn", "by-client"]);
      assert.equal(lastLine(denied.stderr), "etcdserver: permission denied");
      // A token wins over the certificate.
      assert.equal(
        (await etcdctl(m, [...as("client"), "--user=root:rootpw", "put", "/tls/cn2", "t"])).code,
        0,
      );
      assert.equal(
        (await etcdctl(m, [...as("root"), "get", "/tls/cn", "--print-value-only"])).stdout,
        "by-root\n",
      );
    } finally {
      assert.equal((await etcdctl(m, [...as("root"), "auth", "disable"])).code, 0);
    }
  });
});
