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
  assert.throws(() => memberConfig(parseFlags(["--nats-url", "http://127.0.0.1:4222"], {})), /--nats-url/);
});

test("--nats-url / ETCD_NATS_URL: absent is no NATS", () => {
  assert.equal(memberConfig(parseFlags([], {})).natsUrl, "");
  assert.equal(
    memberConfig(parseFlags([], { ETCD_NATS_URL: "nats://127.0.0.1:4222" })).natsUrl,
    "nats://127.0.0.1:4222",
  );
  assert.equal(
    memberConfig(parseFlags(["--nats-url=nats://a:1,nats://b:2"], {})).natsUrl,
    "nats://a:1,nats://b:2",
  );
});

test("flags accepted for compatibility but not implemented are refused when used", () => {
  assert.throws(
    () => memberConfig(parseFlags(["--experimental-compaction-batch-limit=10"], {})),
    /--experimental-compaction-batch-limit is not supported yet/,
  );
  assert.throws(() => memberConfig(parseFlags(["--proxy=on"], {})), /--proxy is refused: etcd's v2 proxy/);
  assert.throws(
    () => memberConfig(parseFlags(["--discovery-srv=example.com"], {})),
    /--discovery-srv is refused: .*--initial-cluster/,
  );
});

test("--max-wals is read (0: unlimited) and refuses a negative count as Go's uint flag does", () => {
  assert.equal(memberConfig(parseFlags([], {})).maxWals, 5);
  assert.equal(memberConfig(parseFlags(["--max-wals=0"], {})).maxWals, 0);
  assert.throws(
    () => memberConfig(parseFlags(["--max-wals=-1"], {})),
    /invalid value "-1" for flag -max-wals: parse error/,
  );
});

test("--cors takes '*' or origins with a port and no path, as etcd's URL check; --host-whitelist a list", () => {
  const defaults = memberConfig(parseFlags([], {}));
  assert.deepEqual([defaults.corsOrigins, defaults.hostWhitelist], [["*"], ["*"]]);
  const set = memberConfig(
    parseFlags(["--cors=http://a.example:8080,https://b.example:443", "--host-whitelist=a,b"], {}),
  );
  assert.deepEqual(set.corsOrigins, ["http://a.example:8080", "https://b.example:443"]);
  assert.deepEqual(set.hostWhitelist, ["a", "b"]);
  assert.throws(
    () => memberConfig(parseFlags(["--cors=http://a.example"], {})),
    /invalid value "http:\/\/a.example" for flag -cors: URL address does not have the form "host:port": http:\/\/a.example/,
  );
  assert.throws(
    () => memberConfig(parseFlags(["--cors=a.example:80"], {})),
    /URL scheme must be http, https, unix, or unixs/,
  );
  assert.throws(() => memberConfig(parseFlags(["--cors=http://a:1/x"], {})), /URL must not contain a path/);
});

test("--log-output follows etcd 3.4's rules against --log-outputs", () => {
  assert.deepEqual(memberConfig(parseFlags(["--log-output=stdout,stderr"], {})).logOutputs, [
    "stdout",
    "stderr",
  ]);
  const alone = memberConfig(parseFlags(["--log-output=stdout"], {}));
  assert.deepEqual(alone.logOutputs, ["stderr"], "the same count: --log-outputs (default) is used");
  assert.match(alone.warnings.join("\n"), /Deprecated '--log-output' flag is set to \["stdout"\]/);
  assert.throws(
    () => memberConfig(parseFlags(["--log-output=stdout", "--log-outputs=stdout"], {})),
    /'--log-output=\["stdout"\]' and '--log-outputs=\["stdout"\]' are incompatible/,
  );
  assert.throws(
    () => memberConfig(parseFlags(["--log-output=a,b", "--log-outputs=c,d"], {})),
    /both '--log-output' and '--log-outputs' are set/,
  );
});

test("--experimental-enable-lease-checkpoint-persist needs checkpoints; --backend-batch-* are logged", () => {
  assert.throws(
    () =>
      memberConfig(
        parseFlags(
          ["--experimental-enable-lease-checkpoint-persist", "--experimental-enable-lease-checkpoint=false"],
          {},
        ),
      ),
    /setting experimental-enable-lease-checkpoint-persist requires experimental-enable-lease-checkpoint/,
  );
  memberConfig(parseFlags(["--experimental-enable-lease-checkpoint-persist"], {}));
  const batched = memberConfig(
    parseFlags(["--backend-batch-interval=10ms", "--backend-batch-limit=100"], {}),
  );
  assert.match(batched.warnings.join("\n"), /--backend-batch-interval/);
});

test("--unsafe-no-fsync, --max-snapshots and --experimental-warning-apply-duration are read", () => {
  const defaults = memberConfig(parseFlags([], {}));
  assert.deepEqual(
    [defaults.unsafeNoFsync, defaults.maxSnapshots, defaults.warningApplyDurationMs],
    [false, 5, 100],
  );
  const set = memberConfig(
    parseFlags(["--unsafe-no-fsync", "--max-snapshots=0", "--experimental-warning-apply-duration=1s"], {}),
  );
  assert.deepEqual([set.unsafeNoFsync, set.maxSnapshots, set.warningApplyDurationMs], [true, 0, 1000]);
  assert.match(set.warnings.join("\n"), /--unsafe-no-fsync/);
});

test("etcd 3.4's other flags start at etcd's defaults, however spelled, and are refused otherwise", () => {
  const config = memberConfig(
    parseFlags(
      [
        "--grpc-keepalive-interval=2h",
        "--grpc-keepalive-min-time=5000ms",
        "--initial-election-tick-advance=1",
        "--metrics=basic",
        "--host-whitelist=*",
        "--experimental-warning-apply-duration=100ms",
      ],
      {},
    ),
  );
  assert.equal(config.grpcGateway, true);
  assert.deepEqual(
    [
      config.grpcKeepaliveIntervalMs,
      config.grpcKeepaliveMinTimeMs,
      config.grpcKeepaliveTimeoutMs,
      config.extensiveMetrics,
    ],
    [7_200_000, 5000, 20_000, false],
  );
  assert.equal(memberConfig(parseFlags(["--metrics=extensive"], {})).extensiveMetrics, true);
  memberConfig(parseFlags(["--initial-election-tick-advance=false"], {}));
});

test("--force-new-cluster, --experimental-initial-corrupt-check, --enable-grpc-gateway, --version are read", () => {
  const config = memberConfig(
    parseFlags(
      [
        "--force-new-cluster",
        "--experimental-initial-corrupt-check",
        "--enable-grpc-gateway=false",
        "--version",
      ],
      {},
    ),
  );
  assert.equal(config.forceNewCluster, true);
  assert.equal(config.initialCorruptCheck, true);
  assert.equal(config.grpcGateway, false);
  assert.equal(config.printVersion, true);
  const defaults = memberConfig(parseFlags([], {}));
  assert.equal(defaults.forceNewCluster, false);
  assert.equal(defaults.initialCorruptCheck, false);
});

test("--experimental-corrupt-check-time is read as a duration, 0 (off) by default", () => {
  assert.equal(
    memberConfig(parseFlags(["--experimental-corrupt-check-time=2m30s"], {})).corruptCheckIntervalMs,
    150_000,
  );
  assert.equal(memberConfig(parseFlags([], {})).corruptCheckIntervalMs, 0);
  assert.throws(
    () => memberConfig(parseFlags(["--experimental-corrupt-check-time=often"], {})),
    /invalid duration/,
  );
});

test("TLS flags: each side's files, --client-cert-auth, --cipher-suites checked with etcd's message", () => {
  const config = memberConfig(
    parseFlags(
      [
        "--cert-file=s.crt",
        "--key-file=s.key",
        "--trusted-ca-file=ca.crt",
        "--client-cert-auth",
        "--client-crl-file=c.crl",
        "--peer-cert-file=p.crt",
        "--peer-key-file=p.key",
        "--peer-cert-allowed-cn=etcd-peer",
        "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
      ],
      {},
    ),
  );
  assert.equal(config.clientCertAuth, true);
  assert.equal(config.clientTls?.certFile, "s.crt");
  assert.equal(config.clientTls?.trustedCaFile, "ca.crt");
  assert.equal(config.clientTls?.crlFile, "c.crl");
  assert.equal(config.peerTls?.allowedCn, "etcd-peer");
  assert.equal(config.peerTls?.clientCertAuth, false);
  assert.deepEqual(config.peerTls?.cipherSuites, config.cipherSuites);
  assert.equal(config.cipherSuites.length, 2);
  assert.equal(memberConfig(parseFlags([], {})).clientTls, undefined);
  assert.throws(() => memberConfig(parseFlags(["--cipher-suites=RC5"], {})), {
    message: 'unexpected TLS cipher suite "RC5"',
  });
  assert.throws(
    () =>
      memberConfig(
        parseFlags(
          [
            "--peer-cert-file=p",
            "--peer-key-file=k",
            "--peer-cert-allowed-cn=a",
            "--peer-cert-allowed-hostname=b",
          ],
          {},
        ),
      ),
    /AllowedCN and AllowedHostname are mutually exclusive/,
  );
  assert.throws(() => memberConfig(parseFlags(["--cert-file=s.crt"], {})), /must be given together/);
});

test("auto-TLS flags are read", () => {
  const config = memberConfig(parseFlags(["--auto-tls", "--peer-auto-tls=true"], {}));
  assert.equal(config.autoTls, true);
  assert.equal(config.peerAutoTls, true);
  assert.equal(memberConfig(parseFlags([], {})).peerAutoTls, false);
});

test("Go durations: 10m0s, 1.5h, 300ms, 0; garbage is refused", async () => {
  const { parseGoDuration } = await import("./flags.js");
  assert.equal(parseGoDuration("x", "10m0s"), 600_000);
  assert.equal(parseGoDuration("x", "1.5h"), 5_400_000);
  assert.equal(parseGoDuration("x", "300ms"), 300);
  assert.equal(parseGoDuration("x", "1m30s"), 90_000);
  assert.equal(parseGoDuration("x", "0"), 0);
  assert.throws(() => parseGoDuration("x", "10"), ConfigError);
  assert.throws(() => parseGoDuration("x", "5 s"), ConfigError);
  const c = memberConfig(parseFlags(["--experimental-watch-progress-notify-interval=2s"], {}));
  assert.equal(c.watchProgressNotifyIntervalMs, 2000);
  assert.equal(memberConfig(parseFlags([], {})).watchProgressNotifyIntervalMs, 600_000);
});

test("--config-file: etcd's YAML (its own sample) replaces flags and environment", async () => {
  const { readFileSync, existsSync } = await import("node:fs");
  const sample = "../shared/tools/etcd-e2e/files/etcd.conf.yml.sample";
  const fallback = `
name: 'default'
snapshot-count: 10000
listen-client-urls: http://localhost:2379
client-transport-security:
  auto-tls: false
peer-transport-security:
  auto-tls: false
enable-pprof: true
logger: zap
log-outputs: [stderr]
`;
  const files: Record<string, string> = {
    "/etc/etcd.yml": existsSync(sample) ? readFileSync(sample, "utf8") : fallback,
    "/etc/mine.yml": `name: from-file
data-dir: /var/lib/x
initial-cluster: from-file=http://127.0.0.1:2380
listen-client-urls: http://127.0.0.1:2379,http://127.0.0.1:22379
heartbeat-interval: 50
election-timeout: 500
client-transport-security:
  auto-tls: true
log-outputs: [stdout, /tmp/etcd.log]
experimental-watch-progress-notify-interval: 5s
`,
  };
  const read = (p: string) => {
    const text = files[p];
    if (text === undefined) throw new Error(`open ${p}: no such file or directory`);
    return text;
  };
  const sampled = memberConfig(parseFlags(["--config-file", "/etc/etcd.yml"], {}, read));
  assert.equal(sampled.name, "default");
  assert.equal(sampled.snapshotCount, 10000);
  assert.equal(sampled.logger, "zap");
  assert.deepEqual(sampled.logOutputs, ["stderr"]);
  assert.match(sampled.warnings.join(), /enable-pprof/);

  // Flags and ETCD_* next to --config-file are ignored, as in etcd.
  const c = memberConfig(
    parseFlags(["--config-file=/etc/mine.yml", "--name", "flag"], { ETCD_NAME: "env" }, read),
  );
  assert.equal(c.name, "from-file");
  assert.equal(c.dataDir, "/var/lib/x");
  assert.deepEqual(
    c.listenClientUrls.map((u) => u.host),
    ["127.0.0.1:2379", "127.0.0.1:22379"],
  );
  assert.equal(c.heartbeatMs, 50);
  assert.equal(c.autoTls, true);
  assert.deepEqual(c.logOutputs, ["stdout", "/tmp/etcd.log"]);
  assert.equal(c.watchProgressNotifyIntervalMs, 5000);
  assert.deepEqual([...c.initialCluster.keys()], ["from-file"]);

  assert.throws(() => parseFlags(["--config-file", "/nope.yml"], {}, read), /--config-file: open \/nope.yml/);
  assert.throws(() => parseFlags(["--config-file", "/bad.yml"], {}, () => "a: [1,"), ConfigError);
});

test("logger and log outputs as etcd checks them", () => {
  assert.throws(() => memberConfig(parseFlags(["--logger", "syslog"], {})), /unknown logger option "syslog"/);
  assert.throws(
    () => memberConfig(parseFlags(["--log-outputs", "default,stdout"], {})),
    /multi logoutput for "default" is not supported/,
  );
  assert.deepEqual(memberConfig(parseFlags(["--logger=zap", "--log-outputs=stdout"], {})).logOutputs, [
    "stdout",
  ]);
  assert.equal(memberConfig(parseFlags(["--debug"], {})).logLevel, "debug");
  assert.equal(memberConfig(parseFlags(["--pre-vote=false"], {})).preVote, false);
});
