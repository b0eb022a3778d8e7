// Which member sent a peer connection, read from the connection's first request: members name
// themselves in etcd's `X-Server-From` header (etcd's rafthttp on its HTTP/1.1 stream, pipeline
// and snapshot requests; our member on every gRPC peer call, an HTTP/2 header). A proxy on a
// member's shared peer port can then tell the senders apart without asking the kernel who owns
// the socket. Pure: bytes in, a decision out.

import {
  completeFrameAt,
  FRAME_HEADER_BYTES,
  FrameFlag,
  FrameType,
  HeaderBlockDecoder,
  HTTP2_PREFACE,
  headersFragment,
} from "@etcd-ts/api";

/** etcd's peer header naming the sending member's ID (hex), lowercased. */
export const SERVER_FROM = "x-server-from";

/** Bytes a proxy buffers looking for the first request's headers before it gives up. */
export const MAX_FIRST_REQUEST_BYTES = 64 * 1024;

export type PeerSender =
  /** The first request is not complete yet: read more. */
  | { kind: "more" }
  /** The first request names its sender (the member ID as sent: lowercase hex). */
  | { kind: "named"; id: string }
  /**
   * The first request names nobody (etcd's probes and version checks, a joining member asking
   * for the membership before it knows its own ID), or is not HTTP at all (TLS).
   */
  | { kind: "anonymous"; why: string };

/** The sender named by the first request at the start of `bytes` (everything the connection sent so far). */
export function peerSender(bytes: Buffer): PeerSender {
  const prefix = bytes.subarray(0, Math.min(bytes.length, HTTP2_PREFACE.length));
  if (prefix.equals(HTTP2_PREFACE.subarray(0, prefix.length))) {
    if (bytes.length < HTTP2_PREFACE.length) return more(bytes);
    return http2Sender(bytes);
  }
  if (/^[A-Z]+ /.test(bytes.subarray(0, 16).toString("latin1"))) return http1Sender(bytes);
  if (bytes.length === 0) return { kind: "more" };
  return { kind: "anonymous", why: bytes[0] === 0x16 ? "TLS (encrypted headers)" : "not HTTP" };
}

function more(bytes: Buffer): PeerSender {
  return bytes.length >= MAX_FIRST_REQUEST_BYTES
    ? { kind: "anonymous", why: `no complete request in ${bytes.length} bytes` }
    : { kind: "more" };
}

function named(value: string | undefined, why: string): PeerSender {
  const id = value?.trim().toLowerCase();
  return id !== undefined && /^[0-9a-f]{1,16}$/.test(id) ? { kind: "named", id } : { kind: "anonymous", why };
}

/** An HTTP/1.x request head (etcd 3.4's rafthttp): its X-Server-From field, if any. */
function http1Sender(bytes: Buffer): PeerSender {
  const end = bytes.indexOf("\r\n\r\n", 0, "latin1");
  if (end < 0) return more(bytes);
  const lines = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const field = lines
    .slice(1)
    .map((line) => line.split(":"))
    .find(([name]) => name?.trim().toLowerCase() === SERVER_FROM);
  return named(field?.slice(1).join(":"), `${lines[0]} names no sender`);
}

/**
 * HTTP/2 (our member's gRPC): the connection preface, then frames; the first HEADERS frame and
 * its CONTINUATIONs hold the first call's header block. It is the connection's first HPACK
 * block, so a fresh decoder reads it whole.
 */
function http2Sender(bytes: Buffer): PeerSender {
  let offset = HTTP2_PREFACE.length;
  const block: Buffer[] = [];
  let streamId: number | undefined;
  for (;;) {
    const frame = completeFrameAt(bytes, offset);
    if (frame === undefined) return more(bytes);
    const payload = bytes.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + frame.length);
    offset += FRAME_HEADER_BYTES + frame.length;
    if (streamId === undefined) {
      if (frame.type !== FrameType.HEADERS) continue; // SETTINGS, WINDOW_UPDATE, PING before the first call
      streamId = frame.streamId;
      try {
        block.push(headersFragment(payload, frame.flags).fragment);
      } catch (err) {
        return { kind: "anonymous", why: (err as Error).message };
      }
    } else if (frame.type === FrameType.CONTINUATION && frame.streamId === streamId) {
      block.push(payload);
    } else {
      return { kind: "anonymous", why: "header block interrupted (not HTTP/2 as RFC 9113 allows)" };
    }
    if ((frame.flags & FrameFlag.END_HEADERS) !== 0) break;
  }
  let fields: { name: string; value: string }[];
  try {
    fields = new HeaderBlockDecoder().decode(Buffer.concat(block));
  } catch (err) {
    return { kind: "anonymous", why: `undecodable header block: ${(err as Error).message}` };
  }
  const path = fields.find((f) => f.name === ":path")?.value ?? "?";
  return named(fields.find((f) => f.name === SERVER_FROM)?.value, `${path} names no sender`);
}
