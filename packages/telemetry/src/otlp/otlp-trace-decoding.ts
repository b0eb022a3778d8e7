// OTLP trace export requests (opentelemetry-proto's ExportTraceServiceRequest), decoded from
// their protobuf bytes (OTLP/HTTP's application/x-protobuf) or from OTLP/JSON into one flat span
// shape. Only what a reader of traces looks at is kept; unknown fields are skipped, as protobuf
// requires. Field numbers are those of opentelemetry/proto/trace/v1/trace.proto and
// common/v1/common.proto.

import { WIRE_FIXED64, WIRE_LENGTH_DELIMITED, WireFormatError, WireReader } from "@etcd-ts/api";

export type AttributeValue = string | number | boolean | AttributeValue[] | null;

export interface ReceivedSpan {
  /** The resource's service.name. */
  service: string;
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  /** Nanoseconds since the epoch, as decimal strings (they exceed 2^53). */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: Record<string, AttributeValue>;
  events: { name: string; timeUnixNano: string }[];
  links: { traceId: string; spanId: string }[];
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
}

// ---- protobuf ---------------------------------------------------------------------------------

export function decodeTraceRequestProtobuf(bytes: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  const r = new WireReader(bytes);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      decodeResourceSpans(bytes, r.lengthDelimitedRange(), spans);
    } else r.skip();
  }
  return spans;
}

function decodeResourceSpans(buf: Uint8Array, [start, end]: [number, number], out: ReceivedSpan[]): void {
  let service = "";
  const scopes: [number, number][] = [];
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) {
      // Resource { repeated KeyValue attributes = 1 }
      const [rs, re] = r.lengthDelimitedRange();
      const attributes: Record<string, AttributeValue> = {};
      const rr = new WireReader(buf, rs, re);
      while (rr.next()) {
        if (rr.fieldNumber === 1 && rr.wireType === WIRE_LENGTH_DELIMITED)
          decodeKeyValue(buf, rr.lengthDelimitedRange(), attributes);
        else rr.skip();
      }
      if (typeof attributes["service.name"] === "string") service = attributes["service.name"];
    } else if (r.fieldNumber === 2 && r.wireType === WIRE_LENGTH_DELIMITED) {
      scopes.push(r.lengthDelimitedRange());
    } else r.skip();
  }
  for (const [ss, se] of scopes) {
    // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2 }
    const r2 = new WireReader(buf, ss, se);
    while (r2.next()) {
      if (r2.fieldNumber === 2 && r2.wireType === WIRE_LENGTH_DELIMITED)
        out.push(decodeSpan(buf, r2.lengthDelimitedRange(), service));
      else r2.skip();
    }
  }
}

function decodeSpan(buf: Uint8Array, [start, end]: [number, number], service: string): ReceivedSpan {
  const span: ReceivedSpan = {
    service,
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    startTimeUnixNano: "0",
    endTimeUnixNano: "0",
    attributes: {},
    events: [],
    links: [],
    statusCode: 0,
  };
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    const f = r.fieldNumber;
    if (r.wireType === WIRE_FIXED64 && (f === 7 || f === 8)) {
      const value = fixed64(r);
      if (f === 7) span.startTimeUnixNano = value;
      else span.endTimeUnixNano = value;
      continue;
    }
    if (f === 6) {
      span.kind = r.varint();
      continue;
    }
    if (r.wireType !== WIRE_LENGTH_DELIMITED) {
      r.skip();
      continue;
    }
    switch (f) {
      case 1:
        span.traceId = hex(r.bytes());
        break;
      case 2:
        span.spanId = hex(r.bytes());
        break;
      case 4:
        span.parentSpanId = hex(r.bytes());
        break;
      case 5:
        span.name = utf8(r.bytes());
        break;
      case 9:
        decodeKeyValue(buf, r.lengthDelimitedRange(), span.attributes);
        break;
      case 11: {
        // Event { fixed64 time_unix_nano = 1; string name = 2 }
        const [es, ee] = r.lengthDelimitedRange();
        const event = { name: "", timeUnixNano: "0" };
        const er = new WireReader(buf, es, ee);
        while (er.next()) {
          if (er.fieldNumber === 1 && er.wireType === WIRE_FIXED64) event.timeUnixNano = fixed64(er);
          else if (er.fieldNumber === 2 && er.wireType === WIRE_LENGTH_DELIMITED)
            event.name = utf8(er.bytes());
          else er.skip();
        }
        span.events.push(event);
        break;
      }
      case 13: {
        // Link { bytes trace_id = 1; bytes span_id = 2 }
        const [ls, le] = r.lengthDelimitedRange();
        const link = { traceId: "", spanId: "" };
        const lr = new WireReader(buf, ls, le);
        while (lr.next()) {
          if (lr.fieldNumber === 1 && lr.wireType === WIRE_LENGTH_DELIMITED) link.traceId = hex(lr.bytes());
          else if (lr.fieldNumber === 2 && lr.wireType === WIRE_LENGTH_DELIMITED)
            link.spanId = hex(lr.bytes());
          else lr.skip();
        }
        span.links.push(link);
        break;
      }
      case 15: {
        // Status { string message = 2; StatusCode code = 3 }
        const [ss, se] = r.lengthDelimitedRange();
        const sr = new WireReader(buf, ss, se);
        while (sr.next()) {
          if (sr.fieldNumber === 3) span.statusCode = sr.varint();
          else sr.skip();
        }
        break;
      }
      default:
        r.skip();
    }
  }
  return span;
}

function decodeKeyValue(
  buf: Uint8Array,
  [start, end]: [number, number],
  into: Record<string, AttributeValue>,
): void {
  let key = "";
  let value: AttributeValue = null;
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    if (r.fieldNumber === 1 && r.wireType === WIRE_LENGTH_DELIMITED) key = utf8(r.bytes());
    else if (r.fieldNumber === 2 && r.wireType === WIRE_LENGTH_DELIMITED)
      value = decodeAnyValue(buf, r.lengthDelimitedRange());
    else r.skip();
  }
  into[key] = value;
}

/** AnyValue { string 1; bool 2; int64 3; double 4; ArrayValue 5; KeyValueList 6; bytes 7 }. */
function decodeAnyValue(buf: Uint8Array, [start, end]: [number, number]): AttributeValue {
  let value: AttributeValue = null;
  const r = new WireReader(buf, start, end);
  while (r.next()) {
    switch (r.fieldNumber) {
      case 1:
        value = utf8(r.bytes());
        break;
      case 2:
        value = r.bool();
        break;
      case 3:
        value = r.varintI64();
        break;
      case 4: {
        if (r.wireType !== WIRE_FIXED64) throw new WireFormatError("double_value is not fixed64");
        const at = r.pos;
        r.skip();
        value = new DataView(buf.buffer, buf.byteOffset + at, 8).getFloat64(0, true);
        break;
      }
      case 5: {
        const items: AttributeValue[] = [];
        const [as, ae] = r.lengthDelimitedRange();
        const ar = new WireReader(buf, as, ae);
        while (ar.next()) {
          if (ar.fieldNumber === 1 && ar.wireType === WIRE_LENGTH_DELIMITED)
            items.push(decodeAnyValue(buf, ar.lengthDelimitedRange()));
          else ar.skip();
        }
        value = items;
        break;
      }
      case 7:
        value = hex(r.bytes());
        break;
      default:
        r.skip();
    }
  }
  return value;
}

function fixed64(r: WireReader): string {
  const at = r.pos;
  r.skip();
  return new DataView(r.buf.buffer, r.buf.byteOffset + at, 8).getBigUint64(0, true).toString();
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function utf8(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

// ---- JSON -------------------------------------------------------------------------------------

interface JsonKeyValue {
  key?: string;
  value?: JsonAnyValue;
}
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  bytesValue?: string;
}
interface JsonSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: JsonKeyValue[];
  events?: { name?: string; timeUnixNano?: string | number }[];
  links?: { traceId?: string; spanId?: string }[];
  status?: { code?: number };
}

/** OTLP/JSON: IDs are hex strings, 64-bit integers strings or numbers, enums numbers. */
export function decodeTraceRequestJson(text: string): ReceivedSpan[] {
  const body = JSON.parse(text) as {
    resourceSpans?: {
      resource?: { attributes?: JsonKeyValue[] };
      scopeSpans?: { spans?: JsonSpan[] }[];
    }[];
  };
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    const service = typeof resource["service.name"] === "string" ? resource["service.name"] : "";
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          traceId: (s.traceId ?? "").toLowerCase(),
          spanId: (s.spanId ?? "").toLowerCase(),
          parentSpanId: (s.parentSpanId ?? "").toLowerCase(),
          name: s.name ?? "",
          kind: s.kind ?? 0,
          startTimeUnixNano: String(s.startTimeUnixNano ?? "0"),
          endTimeUnixNano: String(s.endTimeUnixNano ?? "0"),
          attributes: jsonAttributes(s.attributes),
          events: (s.events ?? []).map((e) => ({
            name: e.name ?? "",
            timeUnixNano: String(e.timeUnixNano ?? "0"),
          })),
          links: (s.links ?? []).map((l) => ({
            traceId: (l.traceId ?? "").toLowerCase(),
            spanId: (l.spanId ?? "").toLowerCase(),
          })),
          statusCode: s.status?.code ?? 0,
        });
      }
    }
  }
  return out;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list ?? []) out[kv.key ?? ""] = jsonValue(kv.value);
  return out;
}

function jsonValue(v: JsonAnyValue | undefined): AttributeValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(jsonValue);
  if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue, "base64").toString("hex");
  return null;
}
