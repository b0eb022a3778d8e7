// A small OTLP/HTTP trace receiver (the OTLP specification's /v1/traces, protobuf or JSON,
// optionally gzip-compressed) that keeps the spans it received in memory and shows them on
// a query API: what the trace tests export to, and a stand-in for Jaeger where none can run.
//
//   POST /v1/traces              OTLP export; answered with an empty ExportTraceServiceResponse
//   GET  /api/spans[?traceId=ID] {"spans": [...]} (ReceivedSpan, oldest first)
//   GET  /api/traces/ID          {"traceId": ID, "spans": [...]}

import http from "node:http";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import {
  decodeTraceRequestJson,
  decodeTraceRequestProtobuf,
  type ReceivedSpan,
} from "./otlp-trace-decoding.js";

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
  private readonly server: http.Server;
  private spans: ReceivedSpan[] = [];
  private readonly maxSpans: number;
  private readonly maxBodyBytes: number;
  /** Export requests refused as undecodable, for tests of the receiver itself. */
  rejected = 0;

  constructor(private readonly options: OtlpReceiverOptions = {}) {
    this.maxSpans = options.maxSpans ?? 100_000;
    this.maxBodyBytes = options.maxBodyBytes ?? 16 * 1024 * 1024;
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  /** Listens on host:port (port 0: any); resolves with the bound port. */
  listen(port: number, host = "127.0.0.1"): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        const address = this.server.address();
        resolve(typeof address === "object" && address !== null ? address.port : port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
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
    this.spans.push(...spans);
    if (this.spans.length > this.maxSpans) this.spans = this.spans.slice(this.spans.length - this.maxSpans);
    this.options.onSpans?.(spans);
    // An empty ExportTraceServiceResponse: full success, in the request's encoding.
    if (type === "application/json") reply(res, 200, {});
    else {
      res.writeHead(200, { "content-type": "application/x-protobuf", "content-length": 0 });
      res.end();
    }
  }
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
