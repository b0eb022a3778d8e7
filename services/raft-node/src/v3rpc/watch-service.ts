// etcdserverpb.Watch: one WatchStream per gRPC stream. Requests go in as they arrive; responses
// come out in the stream's order, written only while the socket takes them (the WatchStream
// moves watchers of a slow client back to catch-up instead of buffering without bound).
//
// Responses leave as bytes: one event matched by thousands of watchers is encoded once and
// spliced into each watcher's response (the generated encoder would encode it per watcher,
// which was the largest cost of a fan-out in the profile), and one header is encoded per
// revision per stream.

import { EtcdError, encodeWatchResponse, etcdserverpb } from "@etcd-ts/api";
import type { ServerDuplexStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { encodeEvent, encodeResponseHeader } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { type Event, WatchStream } from "../watch/mod.js";
import { callerOf } from "./caller.js";
import { toStatus } from "./rpc-errors.js";

/** etcd's Watch service with responses written as already-encoded bytes. */
export const WatchServiceWithEncodedResponses = {
  ...etcdserverpb.WatchService,
  watch: { ...etcdserverpb.WatchService.watch, responseSerialize: (bytes: Buffer): Buffer => bytes },
} as const;

const encodedEvents = new WeakMap<Event, Uint8Array>();

/** An event's bytes; watch/ hands the same Event object to every watcher it matches. */
function eventBytes(event: Event): Uint8Array {
  let bytes = encodedEvents.get(event);
  if (bytes === undefined) {
    bytes = encodeEvent(event);
    encodedEvents.set(event, bytes);
  }
  return bytes;
}

/** The stream's last encoded header, reused while revision and term stay the same. */
class HeaderCache {
  private revision = -1;
  private term = -1;
  private bytes: Uint8Array = new Uint8Array();

  constructor(private readonly member: EtcdServer) {}

  get(revision: number): Uint8Array {
    const header = this.member.header(revision);
    if (revision !== this.revision || header.raftTerm !== this.term) {
      this.bytes = encodeResponseHeader(header);
      this.revision = revision;
      this.term = header.raftTerm;
    }
    return this.bytes;
  }
}

/** The auth errors etcd names as a refused watch's cancel reason; any other is "permission denied". */
const WATCH_REFUSALS: ReadonlySet<string> = new Set(["InvalidAuthToken", "AuthOldRevision", "UserEmpty"]);

export function watchService(member: EtcdServer): UntypedServiceImplementation {
  return {
    watch: (call: ServerDuplexStream<etcdserverpb.WatchRequest, Buffer>) => {
      if (member.isLearner()) {
        call.emit("error", toStatus(new EtcdError("LearnerNotSupported")));
        return;
      }
      const stream = new WatchStream(member.watchable, {
        maxResponseBytes: member.flags.maxRequestBytes + 512 * 1024,
        progressIntervalMs: member.flags.watchProgressNotifyIntervalMs,
      });
      let open = true;
      const finish = () => {
        if (!open) return;
        open = false;
        stream.close();
      };
      // Requests are handled in arrival order; a create may wait for its token's entry to be
      // applied here (a simple token from another member), so each waits for the one before.
      const handle = async (req: etcdserverpb.WatchRequest): Promise<void> => {
        if (req.createRequest) {
          const c = req.createRequest;
          // etcd's isWatchPermitted: a bad token or a range the caller may not read refuses the
          // create (watch ID -1, created and canceled, etcd's error as the reason); the stream
          // stays open. (etcd 3.4 checks a from-key watch as its first key only; here the whole
          // range must be readable, as for a Range.)
          try {
            const caller = await callerOf(member, call);
            member.isRangePermitted(caller, c.key, c.rangeEnd);
          } catch (err) {
            const known = err instanceof EtcdError && WATCH_REFUSALS.has(err.kind);
            stream.refuseCreate((known ? err : new EtcdError("PermissionDenied")).details);
            return;
          }
          stream.create({ ...c, startRevision: Number(c.startRevision), watchId: Number(c.watchId) });
        } else if (req.cancelRequest) stream.cancel(Number(req.cancelRequest.watchId));
        else if (req.progressRequest) stream.requestProgress();
      };
      let inOrder: Promise<void> = Promise.resolve();
      call.on("data", (req: etcdserverpb.WatchRequest) => {
        inOrder = inOrder
          .then(() => handle(req))
          .catch((err: unknown) => {
            call.emit("error", toStatus(err));
          });
      });
      // A client that half-closes keeps its watches, as in etcd 3.4 (its receive loop ends on EOF
      // without an error): only cancellation or the client going away ends the stream.
      call.on("error", finish);
      call.on("cancelled", finish);
      call.on("close", finish);
      const headers = new HeaderCache(member);
      void (async () => {
        for await (const r of stream) {
          if (!open) break;
          const ok = call.write(
            encodeWatchResponse({
              headerBytes: headers.get(r.revision),
              watchId: r.watchId,
              created: r.created,
              canceled: r.canceled,
              compactRevision: r.compactRevision,
              cancelReason: r.cancelReason,
              fragment: r.fragment,
              events: r.events.map(eventBytes),
            }),
          );
          if (!ok && open) {
            await new Promise((resolve) => {
              call.once("drain", resolve);
              call.once("close", resolve);
            });
          }
        }
      })();
    },
  };
}
