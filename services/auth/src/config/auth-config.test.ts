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
  });
});
