// Server-streaming calls (Snapshot, Election.Observe, RangeStream) relayed message by
// message with backpressure, on the member's channel (upstream-stream.ts). Retried on another member only before the first message:
// after that the client has seen part of one member's answer. With a token gate, a call
// carrying a bad JWT is refused here as every member refuses it (a Snapshot is root's once auth
// is on), and reaches no member.

import type { ServerCall } from "@etcd-ts/api";
import grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { type TokenGate, tokenOf, tokenRefusal } from "../auth/token-gate.js";
import type { MemberDirectory } from "../cluster/member-directory.js";
import { openUpstreamStream } from "../cluster/upstream-stream.js";
import type { GatewayMetrics } from "../observability/gateway-metrics.js";
import { judgeFailure, mayRetry, retryDelayMs } from "../routing/failure-policy.js";
import { type RoundRobin, selectMember } from "../routing/member-selection.js";
import { type MethodRoute, splitMethodPath } from "../routing/method-table.js";
import { forwardableMetadata, targetFor } from "./unary-forwarder.js";

export class StreamForwarder {
  private readonly rr: RoundRobin = { next: 0 };

  constructor(
    private readonly members: MemberDirectory,
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly maxAttempts: number,
    private readonly tokenGate: TokenGate | undefined = undefined,
  ) {}

  async relay(route: MethodRoute, call: ServerCall): Promise<void> {
    const method = splitMethodPath(route.path)[1];
    if (this.tokenGate !== undefined) {
      const judged = this.tokenGate.judge(tokenOf(call.metadata), { method, client: call.remoteAddress });
      const verdict = judged instanceof Promise ? await judged : judged;
      if (!verdict.pass) {
        const refusal = tokenRefusal(route.path);
        this.metrics.answered(method, "gateway", refusal.code, undefined);
        call.finish({ code: refusal.code, details: refusal.details });
        return;
      }
    }
    const request = call.request;
    const { target, idempotent } = targetFor(route, request, call.metadata);
    const metadata = forwardableMetadata(call.metadata);
    const deadline = call.getDeadline();
    const failed = new Set<string>();
    let clientGone = false;
    call.on("cancelled", () => {
      clientGone = true;
    });

    for (let attempt = 1; attempt <= this.maxAttempts && !clientGone; attempt++) {
      const member = selectMember(target, this.members.snapshot(), this.rr, failed);
      const status =
        member === undefined
          ? undefined
          : await this.pipeOnce(member.id, route.path, request, metadata, deadline, call);
      if (member === undefined || status === undefined) {
        failed.clear();
        await this.members.refresh();
        await sleep(retryDelayMs(attempt));
        continue;
      }
      if (status.code === grpc.status.OK || status.sentData) {
        this.finish(call, status, method, member.id);
        return;
      }
      const verdict = judgeFailure(status.code, status.details);
      if (verdict.memberDown) this.members.markDown(member.id);
      if (verdict.refresh) void this.members.refresh();
      if (!mayRetry(verdict, idempotent) || attempt === this.maxAttempts) {
        this.finish(call, status, method, member.id);
        return;
      }
      failed.add(member.id);
      this.metrics.retried(method);
      this.logger.debug({ method, member: member.id, details: status.details }, "stream retry");
      await sleep(retryDelayMs(attempt));
    }
    if (!clientGone) {
      this.finish(
        call,
        {
          code: grpc.status.UNAVAILABLE,
          details: "etcd-ts gateway: no member available",
          metadata: new grpc.Metadata(),
          sentData: false,
        },
        method,
        "none",
      );
    }
  }

  private finish(
    call: ServerCall,
    status: grpc.StatusObject & { sentData: boolean },
    method: string,
    member: string,
  ): void {
    this.metrics.answered(method, member, status.code, undefined);
    call.finish({ code: status.code, details: status.details, metadata: status.metadata });
  }

  /** One attempt on `memberId`; undefined when its channel takes no stream now. */
  private pipeOnce(
    memberId: string,
    path: string,
    request: Buffer,
    metadata: grpc.Metadata,
    deadline: grpc.Deadline,
    call: ServerCall,
  ): Promise<(grpc.StatusObject & { sentData: boolean }) | undefined> {
    return new Promise((resolve) => {
      let sentData = false;
      let paused = false;
      const onCancel = () => upstream?.close();
      const upstream = openUpstreamStream({
        members: this.members,
        memberId,
        path,
        metadata,
        logger: this.logger,
        what: splitMethodPath(path)[1],
        ...(deadline === Number.POSITIVE_INFINITY ? {} : { deadlineMs: Number(deadline) }),
        onMessage: (message) => {
          sentData = true;
          if (!call.sendMessage(message) && !paused) {
            // The client is slow: the member's stream waits (its window is not replenished).
            paused = true;
            upstream?.pause();
            call.once("drain", () => {
              paused = false;
              upstream?.resume();
            });
          }
        },
        onEnd: (status) => {
          call.off("cancelled", onCancel);
          resolve({ ...status, sentData });
        },
      });
      if (upstream === undefined) {
        resolve(undefined);
        return;
      }
      call.once("cancelled", onCancel);
      upstream.send(request);
      upstream.end();
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
