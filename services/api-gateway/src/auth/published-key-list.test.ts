import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { authBackend } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import pino from "pino";
import { bindLoopback } from "../testing/grpc-js-member.js";
import { PublishedKeyList } from "./published-key-list.js";

function es256(kid: string): authBackend.SigningKey {
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" };
  return { kid, jwk: JSON.stringify(jwk), notAfterMs: BigInt(Date.now() + 3_600_000) };
}

/** A logger whose warnings the test reads. */
function recordingLogger(): { logger: pino.Logger; warnings: string[] } {
  const warnings: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) {
        const entry = JSON.parse(line) as { level: number; msg: string };
        if (entry.level >= 40) warnings.push(entry.msg);
      }
      done();
    },
  });
  return { logger: pino({ level: "info" }, sink), warnings };
}

describe("PublishedKeyList", () => {
  const closers: (() => void)[] = [];
  after(() => {
    for (const close of closers) close();
  });

  it("before any member is known: no warning, no back-off; lists at once when one is", async () => {
    const key = es256("k1");
    // A grpc-js server answering ListSigningKeys as a member's AuthBackend does.
    const server = new grpc.Server();
    server.addService(authBackend.AuthBackendService, {
      listSigningKeys: (
        _call: grpc.ServerUnaryCall<unknown, unknown>,
        done: grpc.sendUnaryData<authBackend.SigningKeySet>,
      ) => done(null, { keys: [key] }),
    });
    const address = await bindLoopback(server);
    closers.push(() => server.forceShutdown());

    let peerUrls: string[] = [];
    const { logger, warnings } = recordingLogger();
    const list = new PublishedKeyList(() => peerUrls, undefined, logger, 60_000);
    closers.push(() => list.close());

    // Started beside its members, before any answered: nobody to ask yet.
    await assert.rejects(list.refetch(), /no member peer URL known yet/);
    assert.equal(list.listed, false);

    // The members became known: the next list is read now (not refused as backing off).
    peerUrls = [`http://${address}`];
    await list.refetch();
    assert.equal(list.listed, true);
    assert.ok(list.keys.has("k1"));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
  });

  it("lists on the first member change that names a member, unasked; not again after", async () => {
    let calls = 0;
    const server = new grpc.Server();
    server.addService(authBackend.AuthBackendService, {
      listSigningKeys: (
        _call: grpc.ServerUnaryCall<unknown, unknown>,
        done: grpc.sendUnaryData<authBackend.SigningKeySet>,
      ) => {
        calls++;
        done(null, { keys: [es256("k2")] });
      },
    });
    const address = await bindLoopback(server);
    closers.push(() => server.forceShutdown());

    let peerUrls: string[] = [];
    const listeners: (() => void)[] = [];
    const { logger } = recordingLogger();
    const list = new PublishedKeyList(() => peerUrls, undefined, logger, 60_000);
    closers.push(() => list.close());
    list.listWhenMembersKnown((listener) => listeners.push(listener));
    assert.equal(listeners.length, 1);

    // A change that still names no member (the probe found none yet): nothing to ask.
    for (const listener of listeners) listener();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls, 0);

    // The members answered the probe: their keys are listed before any token names one.
    peerUrls = [`http://${address}`];
    for (const listener of listeners) listener();
    const deadline = Date.now() + 5_000;
    while (!list.listed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(list.listed, true);
    assert.ok(list.keys.has("k2"));
    assert.equal(calls, 1);

    // Later member changes (a leader change, a member added) do not list again: the period does.
    for (const listener of listeners) listener();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(calls, 1);
  });

  it("a list no member answered is reported once and backed off from", async () => {
    // A port nothing listens on: bind a server, note its address, shut it down.
    const server = new grpc.Server();
    const address = await bindLoopback(server);
    server.forceShutdown();

    const { logger, warnings } = recordingLogger();
    const list = new PublishedKeyList(() => [`http://${address}`], undefined, logger, 60_000);
    closers.push(() => list.close());

    await assert.rejects(list.refetch());
    await assert.rejects(list.refetch(), /backing off/);
    assert.equal(list.listed, false);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, ["published JWT keys: no member answered ListSigningKeys"]);
  });
});
