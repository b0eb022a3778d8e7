import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { selfSignedKeyPair, subjectAltNames } from "./auto-tls.js";

describe("auto TLS", () => {
  it("names loopback and every listen host in the certificate", () => {
    assert.equal(
      subjectAltNames(["127.0.0.1", "node1.example", "[::1]"]),
      "DNS:localhost,IP:127.0.0.1,DNS:node1.example,IP:::1",
    );
  });

  it("makes a self-signed certificate once and reuses it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "auto-tls-"));
    try {
      const first = await selfSignedKeyPair(dir, ["10.0.0.7"]);
      const cert = new X509Certificate(first.cert);
      assert.match(cert.subjectAltName ?? "", /IP Address:10\.0\.0\.7/);
      assert.equal(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(first.key)), true);
      const again = await selfSignedKeyPair(dir, ["10.0.0.7"]);
      assert.deepEqual(again.cert, first.cert);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
