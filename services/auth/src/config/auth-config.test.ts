import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, defaultConfig, parseConfig } from "./auth-config.js";

describe("auth service configuration", () => {
  it("takes etcd-style flags over ETCD_AUTH_* variables over defaults", () => {
    const config = parseConfig(
      ["--endpoints=http://127.0.0.1:2380,http://127.0.0.1:3380", "--token-ttl", "60", "--sign-method=EdDSA"],
      { ETCD_AUTH_TOKEN_TTL: "30", ETCD_AUTH_MAX_FAILURES_PER_USER: "9", ETCD_AUTH_TRUSTED_PROXIES: "*" },
    );
    assert.deepEqual(config, {
      ...defaultConfig(),
      endpoints: ["http://127.0.0.1:2380", "http://127.0.0.1:3380"],
      tokenTtlMs: 60_000,
      signMethod: "EdDSA",
      maxFailuresPerUser: 9,
      trustedProxies: ["*"],
    });
  });

  it("refuses what it cannot run with", () => {
    assert.throws(() => parseConfig([], {}), /--endpoints is required/);
    assert.throws(() => parseConfig(["--endpoints=a", "--sign-method=HS256"], {}), ConfigError);
    assert.throws(() => parseConfig(["--endpoints=a", "--token-ttl=0"], {}), /positive number of seconds/);
    assert.throws(
      () => parseConfig(["--endpoints=a", "--max-failures-per-user=1.5"], {}),
      /positive integer/,
    );
    assert.throws(() => parseConfig(["--endpoints=a", "--nope=1"], {}), /unknown flag --nope/);
    assert.throws(() => parseConfig(["--endpoints=a", "--nats-url=127.0.0.1:4222"], {}), /--nats-url/);
  });

  it("shares failed logins over NATS only when given a nats:// URL", () => {
    assert.equal(parseConfig(["--endpoints=a"], {}).natsUrl, "");
    const env = { ETCD_AUTH_NATS_URL: "nats://127.0.0.1:4222" };
    assert.equal(parseConfig(["--endpoints=a"], env).natsUrl, "nats://127.0.0.1:4222");
  });

  it("takes etcd's TLS flags for both sides, a bare --client-cert-auth included, and checks they fit", () => {
    const config = parseConfig(
      [
        "--endpoints=https://127.0.0.1:2380",
        "--cert-file=s.crt",
        "--key-file",
        "s.key",
        "--client-cert-auth",
        "--trusted-ca-file=ca.crt",
        "--peer-trusted-ca-file=ca.crt",
      ],
      { ETCD_AUTH_PEER_CERT_FILE: "p.crt", ETCD_AUTH_PEER_KEY_FILE: "p.key" },
    );
    assert.deepEqual(
      [config.certFile, config.keyFile, config.trustedCaFile, config.clientCertAuth],
      ["s.crt", "s.key", "ca.crt", true],
    );
    assert.deepEqual(
      [config.peerCertFile, config.peerKeyFile, config.peerTrustedCaFile],
      ["p.crt", "p.key", "ca.crt"],
    );
    assert.equal(
      parseConfig(["--endpoints=a", "--cert-file=c", "--key-file=k", "--client-cert-auth", "false"], {})
        .clientCertAuth,
      false,
    );
    assert.deepEqual(
      parseConfig(
        [
          "--endpoints=a",
          "--cert-file=c",
          "--key-file=k",
          "--client-cert-auth",
          "--trusted-gateway-cn=gw1, gw2",
        ],
        {},
      ).trustedGatewayCns,
      ["gw1", "gw2"],
    );
    const bad: [string[], RegExp][] = [
      [["--cert-file=c"], /--cert-file and --key-file go together/],
      [["--client-cert-auth"], /need --cert-file/],
      [["--peer-key-file=k"], /--peer-cert-file and --peer-key-file go together/],
      [
        ["--cert-file=c", "--key-file=k", "--trusted-gateway-cn=gw"],
        /--trusted-gateway-cn needs --client-cert-auth/,
      ],
      [["--endpoints=https://127.0.0.1:2380"], /https:\/\/ endpoints need --peer-trusted-ca-file/],
      [
        ["--endpoints=https://127.0.0.1:2380,http://127.0.0.1:3380", "--peer-trusted-ca-file=ca"],
        /mixes http:\/\/ and https:\/\//,
      ],
    ];
    for (const [flags, message] of bad)
      assert.throws(() => parseConfig(["--endpoints=a", ...flags], {}), message, flags.join(" "));
  });
});
