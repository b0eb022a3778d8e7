// etcdserverpb.Watch: one WatchStream per gRPC stream. Requests go in as they arrive; responses
// come out in the stream's order, written only while the socket takes them (the WatchStream
// moves watchers of a slow client back to catch-up instead of buffering without bound).

import { EtcdError, type etcdserverpb } from "@etcd-ts/api";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { Member } from "../server/member.js";
import { WatchStream } from "../watch/mod.js";
import { toStatus } from "./rpc-errors.js";

export function watchService(member: Member): etcdserverpb.WatchServer {
  return {
    watch: (call: ServerDuplexStream<etcdserverpb.WatchRequest, etcdserverpb.WatchResponse>) => {
      if (member.isLearner()) {
        call.emit("error", toStatus(new EtcdError("LearnerNotSupported")));
        return;
      }
      const stream = new WatchStream(member.watchable, {
        maxResponseBytes: member.config.maxRequestBytes + 512 * 1024,
      });
      let open = true;
      const finish = () => {
        if (!open) return;
        open = false;
        stream.close();
      };
      call.on("data", (req: etcdserverpb.WatchRequest) => {
        if (req.createRequest) stream.create(req.createRequest);
        else if (req.cancelRequest) stream.cancel(req.cancelRequest.watchId);
        else if (req.progressRequest) stream.requestProgress();
      });
      call.on("end", () => {
        finish();
        call.end();
      });
      call.on("error", finish);
      call.on("cancelled", finish);
      call.on("close", finish);
      void (async () => {
        for await (const r of stream) {
          if (!open) break;
          const ok = call.write({
            header: member.header(r.revision),
            watchId: r.watchId,
            created: r.created,
            canceled: r.canceled,
            compactRevision: r.compactRevision,
            cancelReason: r.cancelReason,
            fragment: r.fragment,
            events: r.events,
          });
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
