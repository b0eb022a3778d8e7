// etcd's JSON gateway (grpc-gateway in etcd 3.4): POST /v3/<service>/<rpc> (and the /v3beta/
// aliases 3.4 still serves) with etcd's JSON in, the RPC called with the wire bytes, etcd's JSON
// out. One module for every process that serves it: a member calls its own gRPC server (as
// etcd's gateway does), the api-gateway its forwarder and coalescers; both hand in a
// JsonGatewayBackend. JSON <-> wire is jsonToWire/wireToJson, the project's one JSON codec.
//
// What grpc-gateway does and this follows:
// - errors of unary calls: HTTP status from the gRPC code, body {"error","message","code"};
// - streaming calls answer newline-delimited {"result":...}; an error ends the stream with
//   {"error":{"grpc_code","http_code","message","http_status"}};
// - request bodies are JSON values one after another, each sent as soon as it is complete;
// - the Authorization header becomes the "authorization" metadata etcd's auth reads, and
//   Grpc-Metadata-* headers become metadata without the prefix.

import type http from "node:http";
import grpc from "@grpc/grpc-js";
import { httpStatusForGrpcCode } from "../errors.js";
import { HTTP_ROUTES, type HttpRoute } from "../gen/http-routes.js";
import { jsonToWire, wireToJson } from "../json-wire.js";
import { type AccessControl, ALLOW_ALL_ACCESS } from "./access-control.js";
import { JsonValueSplitter } from "./json-body.js";

/** A failed call, as gRPC reports it. */
export interface GatewayCallError {
  code: number;
  details: string;
}

export type GatewayUnaryOutcome = { response: Buffer; error?: undefined } | { error: GatewayCallError };

/** Where a streaming call's answers go. */
export interface GatewayStreamSink {
  message(response: Buffer): void;
  /** The call ended: with OK (`error` undefined) or with an error. Called at most once. */
  end(error?: GatewayCallError): void;
}

export interface GatewayStream {
  send(request: Buffer): void;
  /** The HTTP client went away: cancel the call. */
  cancel(): void;
}

/** What the gateway calls: the RPCs, by route, with wire bytes. */
export interface JsonGatewayBackend {
  unary(
    route: HttpRoute,
    request: Buffer,
    metadata: grpc.Metadata,
    signal: AbortSignal,
  ): Promise<GatewayUnaryOutcome>;
  /** Server-streaming and bidirectional calls; a server stream is sent exactly one request. */
  openStream(route: HttpRoute, metadata: grpc.Metadata, sink: GatewayStreamSink): GatewayStream;
}

export interface JsonGatewayOptions {
  /** Larger request bodies are refused (grpc-gateway has no limit; the gRPC server's is ~1.5 MiB). */
  maxBodyBytes?: number;
  /**
   * etcd's access controller (Host whitelist, CORS headers, OPTIONS preflight), run on each
   * /v3 request; default etcd's allow-all. null when the caller already ran it on every request.
   */
  access?: AccessControl | null;
}

/** grpc-gateway's error body of a unary call; etcd clients (etcd3gw, curl scripts) read it. */
export function gatewayErrorBody(code: number, message: string): string {
  return JSON.stringify({ error: message, message, code });
}

const ROUTES = new Map(HTTP_ROUTES.map((r) => [r.path, r]));

/** Go's http.StatusText for the statuses httpStatusForGrpcCode gives. */
const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  409: "Conflict",
  412: "Precondition Failed",
  413: "Request Entity Too Large",
  429: "Too Many Requests",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** Answers a streaming client may leave unread before its stream is cut. */
const MAX_BUFFERED_STREAM_BYTES = 64 * 1024 * 1024;

/** A bidirectional stream whose client half-close etcd ignores: the watch lives until the client goes. */
const WATCH_RPC = "etcdserverpb.Watch.Watch";

/**
 * The gateway as a request handler: answers a request under /v3/ or /v3beta/ and returns true,
 * or returns false (the caller serves the path).
 */
export function jsonGatewayHandler(
  backend: JsonGatewayBackend,
  options: JsonGatewayOptions = {},
): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const maxBodyBytes = options.maxBodyBytes ?? 64 * 1024 * 1024;
  const access = options.access === undefined ? ALLOW_ALL_ACCESS : options.access;
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    if (!path.startsWith("/v3/") && !path.startsWith("/v3beta/")) return false;
    if (access?.answered(req, res)) return true;
    const route = ROUTES.get(path);
    if (route === undefined) {
      plain(res, 404, "Not Found\n");
      return true;
    }
    if (req.method !== "POST") {
      plain(res, 405, "Method Not Allowed\n");
      return true;
    }
    const metadata = metadataOf(req);
    const method = route.method;
    if (!method.requestStream && !method.responseStream) {
      serveUnary(backend, route, metadata, req, res, maxBodyBytes);
    } else {
      serveStream(backend, route, metadata, req, res, maxBodyBytes);
    }
    return true;
  };
}

function plain(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "x-content-type-options": "nosniff",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

function sendError(res: http.ServerResponse, error: GatewayCallError): void {
  sendJson(res, httpStatusForGrpcCode(error.code), gatewayErrorBody(error.code, error.details));
}

function metadataOf(req: http.IncomingMessage): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    let key: string | undefined;
    if (name === "authorization") key = "authorization";
    else if (name.startsWith("grpc-metadata-")) key = name.slice("grpc-metadata-".length);
    if (key === undefined || key.length === 0 || key.endsWith("-bin")) continue;
    for (const v of Array.isArray(value) ? value : [value]) md.add(key, v);
  }
  return md;
}

/** Reads the body as text, with a size bound; `onChunk` sees it as it arrives. */
function readBody(
  req: http.IncomingMessage,
  maxBodyBytes: number,
  onChunk: (text: string) => void,
  onEnd: () => void,
  onTooLarge: () => void,
): void {
  let bytes = 0;
  let failed = false;
  req.setEncoding("utf8");
  req.on("data", (text: string) => {
    if (failed) return;
    bytes += Buffer.byteLength(text);
    if (bytes > maxBodyBytes) {
      failed = true;
      onTooLarge();
      return;
    }
    onChunk(text);
  });
  req.on("end", () => {
    if (!failed) onEnd();
  });
}

const tooLarge = (maxBodyBytes: number): GatewayCallError => ({
  code: grpc.status.RESOURCE_EXHAUSTED,
  details: `request body larger than ${maxBodyBytes} bytes`,
});

function serveUnary(
  backend: JsonGatewayBackend,
  route: HttpRoute,
  metadata: grpc.Metadata,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  maxBodyBytes: number,
): void {
  const splitter = new JsonValueSplitter();
  let first: unknown;
  let parseError: string | undefined;
  const take = (values: unknown[]) => {
    if (first === undefined && values.length > 0) first = values[0];
  };
  readBody(
    req,
    maxBodyBytes,
    (text) => {
      // grpc-gateway decodes one value and ignores what follows it.
      if (first !== undefined || parseError !== undefined) return;
      try {
        take(splitter.push(text));
      } catch (err) {
        parseError = (err as Error).message;
      }
    },
    () => {
      if (first === undefined && parseError === undefined) {
        try {
          take(splitter.end());
        } catch (err) {
          parseError = (err as Error).message;
        }
      }
      let request: Buffer;
      try {
        if (parseError !== undefined) throw new Error(parseError);
        request = jsonToWire(route.requestType, first ?? {});
      } catch (err) {
        sendError(res, { code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
        return;
      }
      const abort = new AbortController();
      // The response's close before it finished means the client went away.
      res.once("close", () => {
        if (!res.writableFinished) abort.abort();
      });
      backend.unary(route, request, metadata, abort.signal).then(
        (outcome) => {
          if (outcome.error !== undefined) sendError(res, outcome.error);
          else sendJson(res, 200, JSON.stringify(wireToJson(route.responseType, outcome.response)));
        },
        (err: unknown) => sendError(res, { code: grpc.status.INTERNAL, details: String(err) }),
      );
    },
    () => sendError(res, tooLarge(maxBodyBytes)),
  );
}

function serveStream(
  backend: JsonGatewayBackend,
  route: HttpRoute,
  metadata: grpc.Metadata,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  maxBodyBytes: number,
): void {
  const clientStreams = route.method.requestStream === true;
  // etcd answers each keep-alive request once, then ends the stream at the body's end (its
  // LeaseKeepAlive loop answers before it reads the next request); a watch ignores the end.
  const endsWithBody = clientStreams && route.rpc !== WATCH_RPC;
  let sent = 0;
  let answered = 0;
  let bodyDone = false;
  let finished = false;
  const finish = (error?: GatewayCallError) => {
    if (finished) return;
    finished = true;
    if (error === undefined) {
      if (!res.headersSent) openResponse(res, 200);
      res.end();
      return;
    }
    const http = httpStatusForGrpcCode(error.code);
    if (!res.headersSent) openResponse(res, http);
    const body = {
      error: {
        grpc_code: error.code,
        http_code: http,
        message: error.details,
        http_status: STATUS_TEXT[http] ?? "",
      },
    };
    res.end(`${JSON.stringify(body)}\n`);
  };
  const stream = backend.openStream(route, metadata, {
    message: (response) => {
      if (finished) return;
      if (!res.headersSent) openResponse(res, 200);
      if (res.writableLength > MAX_BUFFERED_STREAM_BYTES) {
        // A client that does not read its watch would otherwise hold every event in memory.
        finished = true;
        stream.cancel();
        res.destroy();
        return;
      }
      res.write(`${JSON.stringify({ result: wireToJson(route.responseType, response) })}\n`);
      answered++;
      if (endsWithBody && bodyDone && answered >= sent) {
        stream.cancel();
        finish();
      }
    },
    end: (error) => finish(error),
  });
  res.once("close", () => {
    if (!finished) {
      finished = true;
      stream.cancel();
    }
  });
  const splitter = new JsonValueSplitter();
  const send = (values: unknown[]) => {
    for (const json of values) {
      if (finished) return;
      if (!clientStreams && sent > 0) return;
      stream.send(jsonToWire(route.requestType, json));
      sent++;
    }
  };
  /** The client's side is done: the body ended, or a later request did not decode. */
  const bodyEnded = () => {
    bodyDone = true;
    if (endsWithBody && answered >= sent) {
      stream.cancel();
      finish();
    }
  };
  const fail = (err: unknown) => {
    // grpc-gateway v1 stops sending at a later request it cannot decode (it only logs it) and
    // half-closes the stream, as at the body's end.
    if (sent > 0) {
      bodyEnded();
      return;
    }
    // The first request is decoded before the call starts, so its refusal is the call's error,
    // in the unary error body: InvalidArgument for a server stream; for Watch and
    // LeaseKeepAlive the decoder's error as it is, i.e. Unknown (500), as etcd 3.4 answers.
    finished = true;
    stream.cancel();
    const code = clientStreams ? grpc.status.UNKNOWN : grpc.status.INVALID_ARGUMENT;
    sendError(res, { code, details: (err as Error).message });
  };
  readBody(
    req,
    maxBodyBytes,
    (text) => {
      if (finished || bodyDone) return;
      try {
        send(splitter.push(text));
      } catch (err) {
        fail(err);
      }
    },
    () => {
      if (finished || bodyDone) return;
      try {
        const rest = splitter.end();
        // A server stream's request is one message, empty when the body is.
        send(!clientStreams && sent === 0 && rest.length === 0 ? [{}] : rest);
      } catch (err) {
        fail(err);
        return;
      }
      bodyEnded();
    },
    () => {
      stream.cancel();
      finish(tooLarge(maxBodyBytes));
    },
  );
}

function openResponse(res: http.ServerResponse, status: number): void {
  res.writeHead(status, { "content-type": "application/json" });
  // Each answer goes out as it is written (a watch's events must not wait in a buffer).
  res.flushHeaders();
}
