// A small OTLP trace receiver that keeps the spans it received in memory and shows them on a
// query API: what the trace tests export to, and a stand-in for Jaeger where none can run. One
// port serves both OTLP transports (Jaeger and the collector use 4317 for gRPC and 4318 for
// HTTP; here the first bytes of a connection pick HTTP/1.1 or HTTP/2):
//
//   POST /v1/traces              OTLP/HTTP export (protobuf or JSON, optionally gzip-compressed);
//                                answered with an empty ExportTraceServiceResponse
//   gRPC opentelemetry.proto.collector.trace.v1.TraceService/Export   OTLP/gRPC export
//   GET  /api/spans[?traceId=ID] {"spans": [...]} (ReceivedSpan, oldest first)
//   GET  /api/traces/ID          {"traceId": ID, "spans": [...]}

import type http from "node:http";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { GrpcHttp2Server } from "@etcd-ts/api";
import {
  decodeTraceRequestJson,
  decodeTraceRequestProtobuf,
  type ReceivedSpan,
} from "./otlp-trace-decoding.js";

/** OTLP/gRPC's one trace method. */
const GRPC_EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/** gRPC status codes used here (@grpc/grpc-js's `status`, not a dependency of this package). */
const GRPC_OK = 0;
const GRPC_INVALID_ARGUMENT = 3;

const gunzipAsync = promisify(gunzip);

export interface OtlpReceiverOptions {
  /** Spans kept; the oldest go first. Default 100,000. */
  maxSpans?: number;
  /** Largest request body accepted, in bytes. Default 16 MiB. */
  maxBodyBytes?: number;
  /** Called with every decoded batch (the bin's --print). */
  onSpans?(spans: ReceivedSpan[]): void;
}

export class OtlpReceiver {
  private readonly server: GrpcHttp2Server;
  private spans: ReceivedSpan[] = [];
  private readonly maxSpans: number;
  private readonly maxBodyBytes: number;
  /** Export requests refused as undecodable, for tests of the receiver itself. */
  rejected = 0;

  constructor(private readonly options: OtlpReceiverOptions = {}) {
    this.maxSpans = options.maxSpans ?? 100_000;
    this.maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024;
    this.server = new GrpcHttp2Server({
      maxReceiveBytes: this.maxBodyBytes,
      http1: (req, res) => void this.handle(req, res),
    });
    this.server.register(GRPC_EXPORT_PATH, {
      kind: "unary",
      handle: (call) => {
        let spans: ReceivedSpan[];
        try {
          spans = decodeTraceRequestProtobuf(call.request);
        } catch (err) {
          this.rejected++;
          call.finish({ code: GRPC_INVALID_ARGUMENT, details: `undecodable export request: ${String(err)}` });
          return;
        }
        this.keep(spans);
        // An empty ExportTraceServiceResponse: full success.
        call.finishWith(new Uint8Array(0), { code: GRPC_OK });
      },
    });
  }

  /** Listens on host:port (port 0: any); resolves with the bound port. */
  listen(port: number, host = "127.0.0.1"): Promise<number> {
    return this.server.listen(`${host.includes(":") ? `[${host}]` : host}:${port}`);
  }

  close(): Promise<void> {
    return this.server.close(100);
  }

  received(traceId?: string): ReceivedSpan[] {
    return traceId === undefined ? [...this.spans] : this.spans.filter((s) => s.traceId === traceId);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://receiver");
    try {
      if (req.method === "POST" && url.pathname === "/v1/traces") {
        await this.export(req, res);
        return;
      }
      if (req.method === "GET" && url.pathname === "/api/spans") {
        reply(res, 200, { spans: this.received(url.searchParams.get("traceId") ?? undefined) });
        return;
      }
      const trace = /^\/api\/traces\/([0-9a-f]{32})$/.exec(url.pathname);
      if (req.method === "GET" && trace !== null) {
        reply(res, 200, { traceId: trace[1], spans: this.received(trace[1]) });
        return;
      }
      reply(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
    } catch (err) {
      reply(res, 500, { error: String(err) });
    }
  }

  private async export(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxBodyBytes) {
        reply(res, 413, { error: "export request too large" });
        return;
      }
      chunks.push(chunk);
    }
    let body = Buffer.concat(chunks);
    if (req.headers["content-encoding"] === "gzip") body = await gunzipAsync(body);
    const type = String(req.headers["content-type"] ?? "")
      .split(";")[0]!
      .trim();
    let spans: ReceivedSpan[];
    try {
      if (type === "application/x-protobuf") spans = decodeTraceRequestProtobuf(body);
      else if (type === "application/json") spans = decodeTraceRequestJson(body.toString("utf8"));
      else {
        this.rejected++;
        reply(res, 415, { error: `unsupported content-type ${type}` });
        return;
      }
    } catch (err) {
      this.rejected++;
      reply(res, 400, { error: `undecodable export request: ${String(err)}` });
      return;
    }
    this.keep(spans);
    // An empty ExportTraceServiceResponse: full success, in the request's encoding.
    if (type === "application/json") reply(res, 200, {});
    else {
      res.writeHead(200, { "content-type": "application/x-protobuf", "content-length": 0 });
      res.end();
    }
  }

  private keep(spans: ReceivedSpan[]): void {
    this.spans.push(...spans);
    if (this.spans.length > this.maxSpans) this.spans = this.spans.slice(this.spans.length - this.maxSpans);
    this.options.onSpans?.(spans);
  }
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
