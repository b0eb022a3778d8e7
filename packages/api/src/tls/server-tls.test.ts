import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import { opensslCiphers } from "./cipher-suites.js";
import { revokedSerials, serialHex } from "./revocation-list.js";
import {
  createTlsServer,
  loadServerTls,
  type TlsFiles,
  type TlsRejection,
  verifiedCommonName,
} from "./server-tls.js";

const script = resolve(import.meta.dirname, "../../../../scripts/gen-test-certs.sh");
let dir = "";
const file = (name: string) => join(dir, name);

before(() => {
  dir = mkdtempSync(join(tmpdir(), "server-tls-"));
  execFileSync("bash", [script, dir]);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("opensslCiphers", () => {
  it("maps Go's names in order and keeps TLS 1.3's suites", () => {
    const list = opensslCiphers([
      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
      "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
      "TLS_AES_128_GCM_SHA256",
    ])!;
    const names = list.split(":");
    assert.deepEqual(names.slice(-2), ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]);
    assert.ok(names.includes("TLS_AES_256_GCM_SHA384"));
    assert.equal(opensslCiphers([]), undefined);
  });

  it("refuses an unknown name with etcd's message", () => {
    assert.throws(() => opensslCiphers(["TLS_FOO"]), { message: 'unexpected TLS cipher suite "TLS_FOO"' });
  });
});

describe("revokedSerials", () => {
  it("reads the serial numbers of a PEM and a DER CRL", () => {
    const serialOf = (name: string) =>
      serialHex(
        execFileSync("openssl", ["x509", "-in", file(name), "-noout", "-serial"])
          .toString()
          .trim()
          .split("=")[1]!,
      );
    const pem = readFileSync(file("ca.crl"));
    const der = execFileSync("openssl", ["crl", "-in", file("ca.crl"), "-outform", "DER"]);
    for (const crl of [pem, der]) {
      const serials = revokedSerials(crl);
      assert.ok(serials.has(serialOf("revoked.crt")));
      assert.ok(!serials.has(serialOf("client.crt")));
    }
  });

  it("normalises serial numbers as etcd compares them (no leading zeros, any case)", () => {
    assert.equal(serialHex("00AB01"), "ab01");
    assert.equal(serialHex(Buffer.from([0, 0x7f])), "7f");
  });
});

/** A TLS server with `files`; `connect` dials it with a client certificate and reports the outcome. */
async function withServer(
  files: Partial<TlsFiles>,
  run: (ctx: {
    connect(cert?: string): Promise<"open" | "closed">;
    connectPlain(): Promise<string>;
    rejections: TlsRejection[];
    commonNames: (string | undefined)[];
    plain: string[];
  }) => Promise<void>,
): Promise<void> {
  const config = loadServerTls({ certFile: file("server.crt"), keyFile: file("server.key"), ...files });
  const rejections: TlsRejection[] = [];
  const commonNames: (string | undefined)[] = [];
  const plain: string[] = [];
  const server = createTlsServer(config, ["h2"], {
    secure: (socket) => {
      commonNames.push(verifiedCommonName(socket));
      socket.end("hello");
    },
    plain: (socket) => {
      socket.once("data", (d: Buffer) => {
        plain.push(d.toString());
        socket.end("plain");
      });
    },
    rejected: (r) => rejections.push(r),
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const connect = (cert?: string) =>
    new Promise<"open" | "closed">((resolveOutcome) => {
      const socket = tls.connect({
        host: "127.0.0.1",
        port,
        ca: readFileSync(file("ca.crt")),
        ...(cert === undefined
          ? {}
          : { cert: readFileSync(file(`${cert}.crt`)), key: readFileSync(file(`${cert}.key`)) }),
        ALPNProtocols: ["h2"],
      });
      let data = "";
      socket.on("data", (d: Buffer) => {
        data += d.toString();
      });
      socket.on("error", () => {});
      socket.on("close", () => resolveOutcome(data === "hello" ? "open" : "closed"));
    });
  const connectPlain = () =>
    new Promise<string>((resolveAnswer, reject) => {
      const socket = netConnect({ host: "127.0.0.1", port }, () => socket.write("ping"));
      let data = "";
      socket.on("data", (d: Buffer) => {
        data += d.toString();
      });
      socket.on("error", reject);
      socket.on("close", () => resolveAnswer(data));
    });
  try {
    await run({ connect, connectPlain, rejections, commonNames, plain });
  } finally {
    server.close();
  }
}

describe("createTlsServer", () => {
  it("with a trusted CA, accepts its client certificates and names the caller by CN", async () => {
    await withServer({ trustedCaFile: file("ca.crt"), clientCertAuth: true }, async (s) => {
      assert.equal(await s.connect("root"), "open");
      assert.deepEqual(s.commonNames, ["root"]);
      assert.deepEqual(s.rejections, []);
    });
  });

  it("refuses a wrong CA, an expired certificate and none at all, each logged with its reason", async () => {
    await withServer({ trustedCaFile: file("ca.crt"), clientCertAuth: true }, async (s) => {
      assert.equal(await s.connect("wrong-ca"), "closed");
      assert.equal(await s.connect("expired"), "closed");
      assert.equal(await s.connect(), "closed");
      assert.equal(s.commonNames.length, 0);
      assert.match(s.rejections[0]!.error, /certificate signed by unknown authority/);
      assert.match(s.rejections[1]!.error, /certificate has expired/);
      assert.equal(s.rejections[2]!.error, "tls: client didn't provide a certificate");
      assert.match(s.rejections[0]!.remoteAddress, /^127\.0\.0\.1:\d+$/);
    });
  });

  it("refuses a certificate the CRL revokes, and only that one", async () => {
    await withServer(
      { trustedCaFile: file("ca.crt"), clientCertAuth: true, crlFile: file("ca.crl") },
      async (s) => {
        assert.equal(await s.connect("revoked"), "closed");
        assert.equal(await s.connect("client"), "open");
        assert.equal(s.rejections.length, 1);
        assert.match(s.rejections[0]!.error, /^transport: certificate serial [0-9a-f]+ revoked$/);
      },
    );
  });

  it("accepts only the allowed CN (etcd's --peer-cert-allowed-cn)", async () => {
    await withServer({ trustedCaFile: file("ca.crt"), allowedCn: "peer" }, async (s) => {
      assert.equal(await s.connect("client"), "closed");
      assert.equal(await s.connect("peer"), "open");
      assert.equal(s.rejections[0]!.error, "client certificate authentication failed");
    });
  });

  it("--cipher-suites: a TLS 1.2 client offering only other suites is refused", async () => {
    const config = loadServerTls({
      certFile: file("server.crt"),
      keyFile: file("server.key"),
      cipherSuites: ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"],
    });
    const rejections: TlsRejection[] = [];
    const server = createTlsServer(config, ["h2"], {
      secure: (socket) => socket.end("hello"),
      rejected: (r) => rejections.push(r),
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    const dial = (ciphers: string) =>
      new Promise<string>((done) => {
        const socket = tls.connect({
          host: "127.0.0.1",
          port,
          ca: readFileSync(file("ca.crt")),
          maxVersion: "TLSv1.2",
          ciphers,
        });
        socket.on("secureConnect", () => {
          done(socket.getCipher().name);
          socket.destroy();
        });
        socket.on("error", (err) => done(`error: ${err.message}`));
      });
    try {
      assert.equal(await dial("ECDHE-ECDSA-AES128-GCM-SHA256"), "ECDHE-ECDSA-AES128-GCM-SHA256");
      assert.match(await dial("ECDHE-ECDSA-AES256-GCM-SHA384"), /^error: .*handshake failure/);
      assert.equal(rejections.length, 1);
      assert.match(rejections[0]!.error, /no shared cipher/);
    } finally {
      server.close();
    }
  });

  it("without a trusted CA asks no certificate; plaintext on the same port goes to `plain`", async () => {
    await withServer({}, async (s) => {
      assert.equal(await s.connect(), "open");
      assert.deepEqual(s.commonNames, [undefined]);
      assert.equal(await s.connectPlain(), "plain");
      assert.deepEqual(s.plain, ["ping"]);
      assert.equal(await s.connect("client"), "open");
    });
  });
});
