import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { connect, createServer } from "node:tls";
import { ipBytes, makeSelfSigned, selfSignedKeyPair, serialNumber, subjectAltNames } from "./auto-tls.js";

describe("auto TLS", () => {
  it("names loopback and every listen host in the certificate", () => {
    assert.deepEqual(subjectAltNames(["127.0.0.1", "node1.example", "[::1]"]), [
      { type: "DNS", value: "localhost" },
      { type: "IP", value: "127.0.0.1" },
      { type: "DNS", value: "node1.example" },
      { type: "IP", value: "::1" },
    ]);
  });

  it("writes IP addresses as their 4 or 16 bytes", () => {
    assert.deepEqual([...ipBytes("10.0.0.7")], [10, 0, 0, 7]);
    assert.deepEqual([...ipBytes("::1")], [...new Array(15).fill(0), 1]);
    assert.deepEqual([...ipBytes("fe80::1:2%eth0")], [0xfe, 0x80, ...new Array(10).fill(0), 0, 1, 0, 2]);
    assert.deepEqual([...ipBytes("::ffff:10.0.0.1")], [...new Array(10).fill(0), 0xff, 0xff, 10, 0, 0, 1]);
    assert.deepEqual(
      Buffer.from(ipBytes("2001:db8:0:0:8:800:200c:417a")).toString("hex"),
      "20010db80000000000080800200c417a",
    );
    assert.throws(() => ipBytes("node1"), /not an IP address/);
  });

  it("makes a self-signed certificate once (key readable by the owner only) and reuses it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "auto-tls-"));
    try {
      const first = await selfSignedKeyPair(dir, ["10.0.0.7", "[fd00::7]", "node7.example"]);
      const cert = new X509Certificate(first.cert);
      assert.equal(cert.subject, "O=etcd");
      assert.equal(cert.issuer, "O=etcd");
      assert.equal(cert.ca, false);
      assert.equal(
        cert.subjectAltName,
        "DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.0.7, IP Address:FD00:0:0:0:0:0:0:7, DNS:node7.example",
      );
      assert.deepEqual(cert.keyUsage, ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]);
      assert.equal(cert.checkPrivateKey(createPrivateKey(first.key)), true);
      assert.equal(cert.verify(cert.publicKey), true, "signed by its own key");
      assert.equal((await stat(join(dir, "key.pem"))).mode & 0o777, 0o600);
      const again = await selfSignedKeyPair(dir, ["10.0.0.7"]);
      assert.deepEqual(again.cert, first.cert);
      assert.deepEqual(await readFile(join(dir, "cert.pem")), first.cert);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("draws serials DER allows (a leading zero byte before one below 0x80 is illegal padding)", async () => {
    for (let first = 0; first < 256; first++) {
      const serial = serialNumber(Uint8Array.from([first, 0x05, ...new Uint8Array(14)]));
      assert.equal(serial.length, 16);
      assert.ok(serial[0]! >= 0x40 && serial[0]! <= 0x7f, `first byte ${first} -> ${serial[0]}`);
    }
    // Certificates OpenSSL reads, many in a row (the old serials failed 1 in 256).
    for (let i = 0; i < 100; i++) {
      const pair = await makeSelfSigned(subjectAltNames(["127.0.0.1"]));
      assert.ok(new X509Certificate(pair.cert).serialNumber.length > 0);
    }
  });

  it("serves TLS that a client trusting the certificate accepts for its IP and DNS names", async () => {
    const pair = await makeSelfSigned(subjectAltNames(["127.0.0.1"]));
    const server = createServer({ cert: pair.cert, key: pair.key }, (socket) => socket.end("ok"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const fetchOver = (servername: string | undefined) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect({
          host: "127.0.0.1",
          port,
          ca: pair.cert,
          ...(servername ? { servername } : {}),
        });
        let body = "";
        socket.on("data", (d) => {
          body += d;
        });
        socket.on("end", () => resolve(body));
        socket.on("error", reject);
      });
    try {
      assert.equal(await fetchOver(undefined), "ok");
      assert.equal(await fetchOver("localhost"), "ok");
      await assert.rejects(fetchOver("elsewhere.example"), /does not match certificate's altnames/);
    } finally {
      server.close();
    }
  });
});
