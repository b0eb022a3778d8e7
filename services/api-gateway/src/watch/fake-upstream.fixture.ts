// A scripted UpstreamTransport for WatchHub tests: streams the test pushes responses into
// and fails at will, members marked down, retries run by hand.
import assert from "node:assert/strict";
import { etcdserverpb } from "@etcd-ts/api";
import type { AuthMetadata, UpstreamFailure, UpstreamTransport } from "./watch-hub.js";

const { WatchResponse } = etcdserverpb;

export interface FakeStream {
  memberId: string;
  auth: AuthMetadata;
  sent: etcdserverpb.WatchRequest[];
  push(response: Parameters<typeof WatchResponse.fromPartial>[0]): void;
  fail(failure: UpstreamFailure): void;
  closed: boolean;
}

export class FakeTransport implements UpstreamTransport {
  streams: FakeStream[] = [];
  members = ["m1", "m2", "m3"];
  down = new Set<string>();
  scheduled: (() => void)[] = [];

  pickMember(exclude: ReadonlySet<string>, load: ReadonlyMap<string, number>): string | undefined {
    const usable = this.members.filter((m) => !exclude.has(m) && !this.down.has(m));
    usable.sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0));
    return usable[0];
  }

  open(
    memberId: string,
    auth: AuthMetadata,
    onMessage: (r: Buffer) => void,
    onClose: (f: UpstreamFailure) => void,
  ) {
    const stream: FakeStream = {
      memberId,
      auth,
      sent: [],
      closed: false,
      push: (response) =>
        onMessage(Buffer.from(WatchResponse.encode(WatchResponse.fromPartial(response)).finish())),
      fail: (failure) => {
        stream.closed = true;
        onClose(failure);
      },
    };
    this.streams.push(stream);
    return {
      send: (request: Buffer) => stream.sent.push(etcdserverpb.WatchRequest.decode(request)),
      close: () => {
        stream.closed = true;
      },
    };
  }

  get allSent(): etcdserverpb.WatchRequest[] {
    return this.streams.flatMap((s) => s.sent);
  }

  schedule(_delayMs: number, fn: () => void) {
    this.scheduled.push(fn);
    return () => {};
  }

  /** The most recently opened stream. */
  get last(): FakeStream {
    const stream = this.streams[this.streams.length - 1];
    assert.ok(stream, "an upstream stream");
    return stream;
  }
}
