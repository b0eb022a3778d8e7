import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { describe, it } from "node:test";
import { ConfigError, parseConfig, splitHostPort } from "./gateway-config.js";

describe("parseConfig", () => {
  it("applies defaults and normalises endpoints", () => {
    const c = parseConfig(["--endpoints=http://127.0.0.1:2379,127.0.0.1:22379/"], {});
    assert.deepEqual(c.endpoints, ["127.0.0.1:2379", "127.0.0.1:22379"]);
    assert.equal(c.listenAddr, "127.0.0.1:2379");
    assert.equal(c.jsonListenAddr, "127.0.0.1:2378");
    assert.equal(c.refreshIntervalMs, 2000);
    assert.equal(c.electionTimeoutMs, 1000);
    assert.equal(c.serializableCacheEntries, 10_000);
  });

  it("takes the members' election timeout as etcd's flag names it", () => {
    assert.equal(parseConfig(["--endpoints=a:1", "--election-timeout=500"], {}).electionTimeoutMs, 500);
    assert.equal(
      parseConfig(["--endpoints=a:1"], { ETCD_GATEWAY_ELECTION_TIMEOUT: "2500" }).electionTimeoutMs,
      2500,
    );
    assert.throws(() => parseConfig(["--endpoints=a:1", "--election-timeout=0"], {}), ConfigError);
  });

  it("sizes or turns off the serializable Range cache, flag over environment", () => {
    const env = { ETCD_GATEWAY_SERIALIZABLE_CACHE_ENTRIES: "500" };
    assert.equal(parseConfig(["--endpoints=a:1"], env).serializableCacheEntries, 500);
    assert.equal(
      parseConfig(["--endpoints=a:1", "--serializable-cache-entries=0"], env).serializableCacheEntries,
      0,
    );
    assert.throws(() => parseConfig(["--endpoints=a:1", "--serializable-cache-entries=-1"], {}), ConfigError);
  });

  it("runs one process unless asked for workers; auto is one per core", () => {
    assert.equal(parseConfig(["--endpoints=a:1"], {}).workers, 1);
    assert.equal(parseConfig(["--endpoints=a:1"], { ETCD_GATEWAY_WORKERS: "3" }).workers, 3);
    assert.equal(parseConfig(["--endpoints=a:1", "--workers=auto"], {}).workers, availableParallelism());
    for (const bad of ["0", "-1", "1.5", "two", "257"]) {
      assert.throws(() => parseConfig(["--endpoints=a:1", `--workers=${bad}`], {}), /--workers/);
    }
  });

  it("waits before draining only when given a shutdown delay", () => {
    assert.equal(parseConfig(["--endpoints=a:1"], {}).shutdownDelayMs, 0);
    const env = { ETCD_GATEWAY_SHUTDOWN_DELAY_MS: "2500" };
    assert.equal(parseConfig(["--endpoints=a:1"], env).shutdownDelayMs, 2500);
    assert.throws(
      () => parseConfig(["--endpoints=a:1", "--shutdown-delay-ms=-1"], {}),
      /--shutdown-delay-ms/,
    );
  });

  it("follows NATS only when given a nats:// URL", () => {
    assert.equal(parseConfig(["--endpoints=a:1"], {}).natsUrl, "");
    const env = { ETCD_GATEWAY_NATS_URL: "nats://127.0.0.1:4222" };
    assert.equal(parseConfig(["--endpoints=a:1"], env).natsUrl, "nats://127.0.0.1:4222");
    assert.throws(() => parseConfig(["--endpoints=a:1", "--nats-url=127.0.0.1:4222"], {}), /--nats-url/);
  });

  it("reads the Range cache's user as name:password, the environment preferred", () => {
    assert.equal(parseConfig(["--endpoints=a:1"], {}).rangeCacheUser, undefined);
    const env = { ETCD_GATEWAY_RANGE_CACHE_USER: "root:pw:with:colons" };
    assert.deepEqual(parseConfig(["--endpoints=a:1"], env).rangeCacheUser, {
      name: "root",
      password: "pw:with:colons",
    });
    assert.throws(() => parseConfig(["--endpoints=a:1", "--range-cache-user=root"], {}), /name:password/);
    assert.throws(() => parseConfig(["--endpoints=a:1", "--range-cache-user=:pw"], {}), /name:password/);
  });

  it("takes environment variables, flags overriding them, in both flag styles", () => {
    const c = parseConfig(["--listen-addr", "0.0.0.0:3000"], {
      ETCD_GATEWAY_ENDPOINTS: "a:1",
      ETCD_GATEWAY_LISTEN_ADDR: "127.0.0.1:9",
      ETCD_GATEWAY_JSON_LISTEN_ADDR: "127.0.0.1:10",
    });
    assert.deepEqual(c.endpoints, ["a:1"]);
    assert.equal(c.listenAddr, "0.0.0.0:3000");
    assert.equal(c.jsonListenAddr, "127.0.0.1:10");
  });

  it("rejects what it cannot serve", () => {
    assert.throws(() => parseConfig([], {}), ConfigError);
    assert.throws(() => parseConfig(["--endpoints=https://a:1"], {}), /TLS/);
    assert.throws(() => parseConfig(["--endpoints=a"], {}), ConfigError);
    assert.throws(() => parseConfig(["--endpoints=a:1", "--bogus=1"], {}), /unknown flag/);
    assert.throws(() => parseConfig(["--endpoints"], {}), /needs a value/);
    assert.throws(() => parseConfig(["--endpoints=a:1", "--refresh-interval-ms=0"], {}), ConfigError);
  });

  it("reads etcd grpc-proxy's TLS flags: to clients and to members", () => {
    const c = parseConfig(
      [
        "--endpoints=https://127.0.0.1:2379",
        "--cert-file=s.crt",
        "--key-file",
        "s.key",
        "--client-cert-auth",
        "--trusted-ca-file=ca.crt",
        "--cacert=ca.crt",
        "--cert=c.crt",
        "--key=c.key",
      ],
      {},
    );
    assert.deepEqual(c.endpoints, ["127.0.0.1:2379"]);
    assert.equal(c.serverTls?.certFile, "s.crt");
    assert.equal(c.serverTls?.keyFile, "s.key");
    assert.equal(c.serverTls?.clientCertAuth, true);
    assert.equal(c.serverTls?.trustedCaFile, "ca.crt");
    assert.deepEqual(c.upstreamTls, { cacert: "ca.crt", cert: "c.crt", key: "c.key" });
    const plain = parseConfig(["--endpoints=a:1"], {});
    assert.equal(plain.serverTls, undefined);
    assert.equal(plain.upstreamTls, undefined);
    assert.throws(() => parseConfig(["--endpoints=a:1", "--cert-file=s.crt"], {}), /together/);
    assert.throws(() => parseConfig(["--endpoints=a:1", "--client-cert-auth"], {}), /need --cert-file/);
    assert.throws(() => parseConfig(["--endpoints=http://a:1", "--cacert=ca.crt"], {}), /over TLS/);
  });

  it("splits listen addresses, IPv6 included", () => {
    assert.deepEqual(splitHostPort("127.0.0.1:2379"), { host: "127.0.0.1", port: 2379 });
    assert.deepEqual(splitHostPort("[::1]:2379"), { host: "::1", port: 2379 });
  });
});
