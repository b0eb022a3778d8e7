// Request bodies of etcd's JSON gateway: one JSON value for a unary call, several one after
// another for a streaming call, as grpc-gateway reads them (Go's json.Decoder on the body).
// Translating each value to wire bytes is jsonToWire's, the project's one JSON codec.

export class JsonBodyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JsonBodyError";
  }
}

/**
 * Splits text that arrives in pieces into the JSON values it holds, each as soon as it is
 * complete: a watch's requests are sent while the body is still open, as grpc-gateway does.
 */
export class JsonValueSplitter {
  private text = "";
  /** Where the value being read starts in `text`, and how far it has been scanned. */
  private scanned = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;

  /** Adds text; returns the values it completed. */
  push(chunk: string): unknown[] {
    this.text += chunk;
    const values: unknown[] = [];
    let i = this.scanned;
    const n = this.text.length;
    for (;;) {
      if (this.depth === 0 && !this.inString) {
        while (i < n && isSpace(this.text.charCodeAt(i))) i++;
        this.text = this.text.slice(i);
        i = 0;
        if (this.text.length === 0) break;
        const first = this.text[0];
        if (first !== "{" && first !== "[") {
          // A scalar ends at whitespace; only a complete one is taken before the end of the body.
          let end = 0;
          while (end < this.text.length && !isSpace(this.text.charCodeAt(end))) end++;
          if (end === this.text.length) break;
          values.push(parseValue(this.text.slice(0, end)));
          this.text = this.text.slice(end);
          continue;
        }
      }
      const len = this.text.length;
      let closed = -1;
      for (; i < len; i++) {
        const c = this.text[i]!;
        if (this.inString) {
          if (this.escaped) this.escaped = false;
          else if (c === "\\") this.escaped = true;
          else if (c === '"') this.inString = false;
        } else if (c === '"') this.inString = true;
        else if (c === "{" || c === "[") this.depth++;
        else if (c === "}" || c === "]") {
          this.depth--;
          if (this.depth === 0) {
            closed = i + 1;
            break;
          }
        }
      }
      if (closed < 0) {
        this.scanned = i;
        return values;
      }
      values.push(parseValue(this.text.slice(0, closed)));
      this.text = this.text.slice(closed);
      i = 0;
    }
    this.scanned = 0;
    return values;
  }

  /** The end of the body: a value left incomplete is Go's "unexpected EOF". */
  end(): unknown[] {
    if (this.depth !== 0 || this.inString) throw new JsonBodyError("unexpected EOF");
    const rest = this.text.trim();
    this.text = "";
    return rest.length === 0 ? [] : [parseValue(rest)];
  }
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(/\d{16}/.test(text) ? quoteUnsafeIntegers(text) : text);
  } catch (err) {
    throw new JsonBodyError((err as Error).message);
  }
}

/**
 * Integer literals beyond 2^53 as strings: Go clients write int64s as JSON numbers (json.Marshal
 * of a lease ID, a revision), which JSON.parse would round. protojson takes an int64 given as a
 * string as it takes a number, so the codec reads the exact value.
 */
export function quoteUnsafeIntegers(text: string): string {
  let out = "";
  let copied = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      continue;
    }
    if (c !== "-" && (c < "0" || c > "9")) continue;
    let end = i + 1;
    while (end < text.length && /[0-9.eE+-]/.test(text[end]!)) end++;
    const token = text.slice(i, end);
    if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
      out += `${text.slice(copied, i)}"${token}"`;
      copied = end;
    }
    i = end - 1;
  }
  return copied === 0 ? text : out + text.slice(copied);
}

/**
 * Every JSON value of a complete body, one after another; an empty body is one empty
 * message, as grpc-gateway decodes a unary call's empty body.
 */
export function parseJsonValues(body: string): unknown[] {
  const splitter = new JsonValueSplitter();
  const values = [...splitter.push(body), ...splitter.end()];
  if (values.length === 0) values.push({});
  return values;
}
