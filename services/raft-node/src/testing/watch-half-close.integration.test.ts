// A watch stream whose client half-closes (sends END_STREAM after its create request) keeps its
// watches in etcd 3.4: the server's receive loop ends on io.EOF without an error, and the stream
// lives until the client cancels it or goes away. The same session runs against a real etcd and
// against our member: both must deliver a put made after the half-close, and keep the call open.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { etcdserverpb } from "@etcd-ts/api";
import { freePort } from "@etcd-ts/testing";
import { credentials, Metadata } from "@grpc/grpc-js";
import { haveRealEtcd, sideBySide, singleMemberFlags } from "./side-by-side.fixture.js";

interface Session {
  /** The value of the event that arrived after the half-close; undefined if none did. */
  afterHalfClose: string | undefined;
  /** How the call ended within the wait (undefined: still open, as it should be). */
  ended: string | undefined;
}

async function session(endpoint: string): Promise<Session> {
  const channel = endpoint.replace("http://", "");
  const watch = new etcdserverpb.WatchClient(channel, credentials.createInsecure());
  const kv = new etcdserverpb.KVClient(channel, credentials.createInsecure());
  try {
    const call = watch.watch();
    let ended: string | undefined;
    call.on("error", (err: Error) => {
      ended ??= `error: ${err.message}`;
    });
    call.on("end", () => {
      ended ??= "end";
    });
    const events: string[] = [];
    const created = new Promise<void>((resolve) =>
      call.on("data", (r: etcdserverpb.WatchResponse) => {
        if (r.created) resolve();
        for (const e of r.events) events.push(Buffer.from(e.kv?.value ?? []).toString());
      }),
    );
    call.write(etcdserverpb.WatchRequest.fromPartial({ createRequest: { key: Buffer.from("half") } }));
    await created;
    call.end(); // half-close: no more requests from this client
    await new Promise((r) => setTimeout(r, 300));
    await new Promise<void>((resolve, reject) =>
      kv.put(
        etcdserverpb.PutRequest.fromPartial({ key: Buffer.from("half"), value: Buffer.from("after") }),
        new Metadata(),
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    for (let i = 0; i < 40 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const result = { afterHalfClose: events[0], ended };
    call.cancel();
    return result;
  } finally {
    watch.close();
    kv.close();
  }
}

describe("a watch stream the client half-closes", {
  skip: haveRealEtcd ? false : "etcd/etcdctl 3.4 not installed",
}, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "half-close-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("keeps its watches and delivers later events, as etcd does", async () => {
    const clientUrl = `http://127.0.0.1:${await freePort()}`;
    const peerUrl = `http://127.0.0.1:${await freePort()}`;
    const results = await sideBySide(
      (dataDir) => singleMemberFlags("half", dataDir, clientUrl, peerUrl, "half-close"),
      { etcd: join(dir, "etcd"), ours: join(dir, "ours") },
      () => session(clientUrl),
    );
    assert.deepEqual(results.etcd, { afterHalfClose: "after", ended: undefined }, "real etcd");
    assert.deepEqual(results.ours, results.etcd);
  });
});
