// etcdserverpb.Watch: one WatchStream per gRPC stream. Requests go in as they arrive; responses
// come out in the stream's order, written only while the socket takes them (the WatchStream
// moves watchers of a slow client back to catch-up instead of buffering without bound).
//
// Responses leave as bytes: one event matched by thousands of watchers is encoded once, and so
// is the rest of a revision's event response (header and events): each watcher's response is
// its watch_id field (cached per ID) followed by those shared bytes, framed with the stream's
// other responses of the turn into one buffer (FramedBatch), with no per-watcher encoding,
// buffer, promise or closure. The streams' responses are written once the turn that queued
// them has written its answers (see AfterAnswers).

import { EtcdError, encodeWatchResponse, etcdserverpb } from "@etcd-ts/api";
import type { ServerDuplexStream, UntypedServiceImplementation } from "@grpc/grpc-js";
import { encodeEvent, encodeResponseHeader, type ResponseHeader } from "../mvcc/mod.js";
import type { EtcdServer } from "../server/mod.js";
import { type Event, type WatchResponse, WatchStream } from "../watch/mod.js";
import { callerOf } from "./caller.js";
import { encodedWriter } from "./grpc-adapter.js";
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

/** watch_id fields of the small IDs (streams count their watches from 0), made once each. */
const smallWatchIdFields: Buffer[] = [];
const SMALL_WATCH_IDS = 4096;

/** A response's watch_id field alone (empty for 0: proto3 leaves defaults out). */
function watchIdField(watchId: number): Buffer {
  if (watchId < 0 || watchId >= SMALL_WATCH_IDS)
    return encodeWatchResponse({ headerBytes: undefined, watchId });
  let field = smallWatchIdFields[watchId];
  if (field === undefined) {
    field = encodeWatchResponse({ headerBytes: undefined, watchId });
    smallWatchIdFields[watchId] = field;
  }
  return field;
}

/** An event response without its watch_id: header and events, the same for every watcher given that events array. */
interface SharedBody {
  revision: number;
  term: number;
  bytes: Buffer;
}

/**
 * One member's response encoding, shared by its streams: the header of the latest revision and
 * term, and the shared body of each events array. watch/ hands one array to every watcher a
 * revision reaches with the same events (WatchableStore.notify), so the array identifies the
 * body; the body is checked against the revision and term it was made for.
 */
export class ResponseEncoder {
  private headerRevision = -1;
  private headerTerm = -1;
  private headerBytes: Uint8Array = new Uint8Array();
  private readonly bodies = new WeakMap<readonly Event[], SharedBody>();

  /** `header`: the member's ResponseHeader at a revision (EtcdServer.header). */
  constructor(private readonly header: (revision: number) => ResponseHeader) {}

  /** Adds the response to `batch`. */
  encode(r: WatchResponse, batch: FramedBatch): void {
    const headerBytes = this.headerAt(r.revision);
    if (r.events.length > 0 && !r.created && !r.canceled && !r.fragment && r.compactRevision === 0) {
      // Protobuf fields may come in any order: watch_id goes first so the rest is shared.
      let body = this.bodies.get(r.events);
      if (body === undefined || body.revision !== r.revision || body.term !== this.headerTerm) {
        body = {
          revision: r.revision,
          term: this.headerTerm,
          bytes: encodeWatchResponse({ headerBytes, watchId: 0, events: r.events.map(eventBytes) }),
        };
        this.bodies.set(r.events, body);
      }
      batch.add(watchIdField(r.watchId), body.bytes);
      return;
    }
    batch.add(
      encodeWatchResponse({
        headerBytes,
        watchId: r.watchId,
        created: r.created,
        canceled: r.canceled,
        compactRevision: r.compactRevision,
        cancelReason: r.cancelReason,
        fragment: r.fragment,
        events: r.events.map(eventBytes),
      }),
      EMPTY,
    );
  }

  private headerAt(revision: number): Uint8Array {
    const header = this.header(revision);
    if (revision !== this.headerRevision || header.raftTerm !== this.headerTerm) {
      this.headerBytes = encodeResponseHeader(header);
      this.headerRevision = revision;
      this.headerTerm = header.raftTerm;
    }
    return this.headerBytes;
  }
}

const EMPTY = new Uint8Array(0);

/**
 * A stream's responses of a turn, framed as gRPC messages back to back into one buffer: one
 * allocation and one copy per batch, none per response (a fan-out's per-message buffers and
 * their garbage collection were a large share of a member's CPU per event).
 */
export class FramedBatch {
  /** Each message's two pieces: a head and a body (EMPTY when the head is all of it). */
  private readonly pieces: Uint8Array[] = [];
  readonly lengths: number[] = [];
  bytes = 0;

  add(head: Uint8Array, body: Uint8Array): void {
    this.pieces.push(head, body);
    const length = head.length + body.length;
    this.lengths.push(length);
    this.bytes += 5 + length;
  }

  /** The framed messages. */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes);
    let at = 0;
    for (let i = 0; i < this.lengths.length; i++) {
      out[at] = 0;
      out.writeUInt32BE(this.lengths[i]!, at + 1);
      at += 5;
      const head = this.pieces[2 * i]!;
      const body = this.pieces[2 * i + 1]!;
      out.set(head, at);
      at += head.length;
      if (body.length > 0) {
        out.set(body, at);
        at += body.length;
      }
    }
    return out;
  }
}

/** A batch is sent once it holds this much, so a burst of large responses is never one huge copy. */
const BATCH_MAX_BYTES = 1024 * 1024;

/**
 * Streams' writes run after the turn that queued their responses, in one callback per turn.
 * An applied put queues its watchers' events (WatchableStore.notify, on the apply path) before
 * its answer is sent; writing them in the same turn put thousands of events ahead of the
 * answer on a shared connection (the answer waited ~30 ms at 10,000 watchers). The answer needs
 * only its entry applied, and etcd too sends events from its own goroutines, unordered with the
 * answer. What this relies on: a stream's responses still leave in its queue's order (events
 * in revision order per watcher), and a watch created after the answer is registered against
 * the store's notified revision, which notify has already advanced, so only bytes wait here,
 * never matching. setImmediate: the check phase, after this turn's nextTick socket writes.
 */
class AfterAnswers {
  private pending: (() => void)[] = [];

  schedule(write: () => void): void {
    if (this.pending.push(write) === 1) setImmediate(() => this.run());
  }

  private run(): void {
    const writes = this.pending;
    this.pending = [];
    for (const write of writes) {
      try {
        write();
      } catch (err) {
        // A bug in one stream's write must not leave the others' responses unwritten.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/** The auth errors etcd names as a refused watch's cancel reason; any other is "permission denied". */
const WATCH_REFUSALS: ReadonlySet<string> = new Set(["InvalidAuthToken", "AuthOldRevision", "UserEmpty"]);

export function watchService(member: EtcdServer): UntypedServiceImplementation {
  const encoder = new ResponseEncoder((revision) => member.header(revision));
  const afterAnswers = new AfterAnswers();
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
      // Writes what the stream has queued until it is empty or the call's buffer is full; then
      // waits for 'drain' (new responses meanwhile only queue: the stream bounds them).
      const out = encodedWriter(call);
      let scheduled = false;
      let blocked = false;
      const write = () => {
        scheduled = false;
        let ok = true;
        let batch = new FramedBatch();
        for (let r = stream.poll(); r !== undefined && open; r = stream.poll()) {
          encoder.encode(r, batch);
          if (batch.bytes >= BATCH_MAX_BYTES) {
            ok = out.writeFramed(batch.finish(), batch.lengths);
            batch = new FramedBatch();
            if (!ok) break;
          }
        }
        if (batch.lengths.length > 0 && open) ok = out.writeFramed(batch.finish(), batch.lengths);
        if (!ok && open) {
          blocked = true;
          call.once("drain", resume);
        }
      };
      const resume = () => {
        blocked = false;
        if (open) write();
      };
      stream.onReadable(() => {
        if (scheduled || blocked) return;
        scheduled = true;
        afterAnswers.schedule(write);
      });
    },
  };
}
