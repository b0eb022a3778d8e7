// One bidirectional stream from the gateway to a member, as the watch and keep-alive hubs use
// it: raw message bytes both ways, the stream's end reported once with its status (logged; an
// UNAVAILABLE member is marked down and the directory refreshed, so the hub's next pick avoids
// it), and timers that never keep the process alive.
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { MemberDirectory } from "./member-directory.js";
import { passThrough } from "./upstream-client.js";

export interface UpstreamStream {
  /** Writes one request (ignored once the stream has ended). */
  send(request: Buffer): void;
  /** Cancels the stream; its end is then not reported. */
  close(): void;
}

export interface UpstreamStreamOptions {
  members: MemberDirectory;
  memberId: string;
  /** The gRPC method, e.g. "/etcdserverpb.Watch/Watch". */
  path: string;
  metadata: grpc.Metadata;
  logger: Logger;
  /** Names the stream in the log line: "upstream <what> stream ended". */
  what: string;
  onMessage(message: Buffer): void;
  onEnd(status: grpc.StatusObject): void;
  /** Each request written (metrics). */
  onSend?: () => void;
}

/** The stream, or undefined when the directory has no client for the member. */
export function openUpstreamStream(options: UpstreamStreamOptions): UpstreamStream | undefined {
  const { members, memberId, logger } = options;
  const client = members.clientFor(memberId);
  if (client === undefined) return undefined;
  const call = client.makeBidiStreamRequest(options.path, passThrough, passThrough, options.metadata, {});
  let ended = false;
  call.on("data", options.onMessage);
  // Errors also arrive as a status, which is where the end is handled.
  call.on("error", () => {});
  call.on("status", (status: grpc.StatusObject) => {
    if (ended) return;
    ended = true;
    logger.warn(
      { member: memberId, code: status.code, details: status.details },
      `upstream ${options.what} stream ended`,
    );
    if (status.code === grpc.status.UNAVAILABLE) members.markDown(memberId);
    void members.refresh();
    options.onEnd(status);
  });
  return {
    send: (request) => {
      if (ended) return;
      options.onSend?.();
      call.write(request);
    },
    close: () => {
      ended = true;
      call.cancel();
    },
  };
}

/** Runs `fn` after `delayMs` without holding the process open; returns the cancel. */
export function unrefTimer(delayMs: number, fn: () => void): () => void {
  const timer = setTimeout(fn, delayMs);
  timer.unref();
  return () => clearTimeout(timer);
}
