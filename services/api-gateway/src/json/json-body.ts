// Request bodies of etcd's JSON gateway: one JSON value for a unary call, several one after
// another for a streaming call, as grpc-gateway reads them. Translating each value to wire
// bytes is @etcd-ts/api's (jsonToWire), the project's one JSON codec.

export class JsonBodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JsonBodyError";
  }
}

/**
 * Splits a body into the JSON values it holds, one after another (grpc-gateway reads a
 * streaming RPC's requests that way); an empty body is one empty message, as in etcd.
 */
export function parseJsonValues(body: string): unknown[] {
  const values: unknown[] = [];
  let i = 0;
  const n = body.length;
  while (i < n) {
    while (i < n && /\s/.test(body[i]!)) i++;
    if (i >= n) break;
    const start = i;
    if (body[i] === "{" || body[i] === "[") {
      let depth = 0;
      let inString = false;
      for (; i < n; i++) {
        const c = body[i]!;
        if (inString) {
          if (c === "\\") i++;
          else if (c === '"') inString = false;
        } else if (c === '"') inString = true;
        else if (c === "{" || c === "[") depth++;
        else if (c === "}" || c === "]") {
          depth--;
          if (depth === 0) {
            i++;
            break;
          }
        }
      }
      if (depth !== 0) throw new JsonBodyError("unexpected EOF");
    } else {
      while (i < n && !/\s/.test(body[i]!)) i++;
    }
    try {
      values.push(JSON.parse(body.slice(start, i)));
    } catch (err) {
      throw new JsonBodyError((err as Error).message);
    }
  }
  if (values.length === 0) values.push({});
  return values;
}
