import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, DEFAULT_QUOTA_BACKEND_BYTES, memberConfig, parseFlags } from "./flags.js";

test("defaults are etcd's", () => {
  const c = memberConfig(parseFlags([], {}));
  assert.equal(c.name, "default");
  assert.equal(c.dataDir, "default.etcd");
  assert.equal(c.listenClientUrls[0].href, "http://localhost:2379/");
  assert.equal(c.heartbeatMs, 100);
  assert.equal(c.electionMs, 1000);
  assert.equal(c.quotaBackendBytes, DEFAULT_QUOTA_BACKEND_BYTES);
  assert.equal(c.maxRequestBytes, 1572864);
  assert.equal(c.maxTxnOps, 128);
  assert.deepEqual([...c.initialCluster.keys()], ["default"]);
  assert.equal(c.initialClusterState, "new");
});

test("Go flag forms: -f v, --f v, --f=v, bare booleans and --f=false", () => {
  const v = parseFlags(
    ["-name", "a", "--data-dir", "/d", "--snapshot-count=5", "--enable-v2", "--strict-reconfig-check=false"],
    {},
  );
  assert.equal(v.name, "a");
  assert.equal(v["data-dir"], "/d");
  assert.equal(v["snapshot-count"], "5");
  assert.equal(v["enable-v2"], "true");
  assert.equal(memberConfig(v).strictReconfigCheck, false);
});

test("environment fills flags not given; a given flag wins", () => {
  const v = parseFlags(["--name", "flag"], {
    ETCD_NAME: "env",
    ETCD_DATA_DIR: "/env",
    ETCD_ELECTION_TIMEOUT: "2000",
  });
  assert.equal(v.name, "flag");
  assert.equal(v["data-dir"], "/env");
  assert.equal(memberConfig(v).electionMs, 2000);
});

test("initial cluster groups URLs per member in order", () => {
  const c = memberConfig(
    parseFlags(
      ["--name", "a", "--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2,a=http://127.0.0.1:3"],
      {},
    ),
  );
  assert.deepEqual(
    [...c.initialCluster].map(([n, urls]) => [n, urls.map((u) => u.host)]),
    [
      ["a", ["127.0.0.1:1", "127.0.0.1:3"]],
      ["b", ["127.0.0.1:2"]],
    ],
  );
});

test("bad input is refused with a message naming the flag", () => {
  assert.throws(
    () => parseFlags(["--no-such-flag", "x"], {}),
    /flag provided but not defined: -no-such-flag/,
  );
  assert.throws(() => parseFlags(["--name"], {}), /flag needs an argument: -name/);
  assert.throws(() => memberConfig(parseFlags(["--heartbeat-interval", "abc"], {})), /heartbeat-interval/);
  assert.throws(
    () => memberConfig(parseFlags(["--heartbeat-interval", "300", "--election-timeout", "1000"], {})),
    /at least as 5 times/,
  );
  assert.throws(() => memberConfig(parseFlags(["--initial-cluster-state", "old"], {})), ConfigError);
  assert.throws(() => memberConfig(parseFlags(["--listen-client-urls", "ftp://x:1"], {})), /scheme/);
  assert.throws(() => memberConfig(parseFlags(["--initial-cluster", "nourl"], {})), /name=url/);
  assert.throws(() => memberConfig(parseFlags(["--enable-v2=maybe"], {})), ConfigError);
});

test("flags accepted for compatibility but not implemented are refused when used", () => {
  assert.throws(
    () => memberConfig(parseFlags(["--client-cert-auth"], {})),
    /--client-cert-auth is not supported yet/,
  );
});

test("auto-TLS flags are read", () => {
  const config = memberConfig(parseFlags(["--auto-tls", "--peer-auto-tls=true"], {}));
  assert.equal(config.autoTls, true);
  assert.equal(config.peerAutoTls, true);
  assert.equal(memberConfig(parseFlags([], {})).peerAutoTls, false);
});
