// Request bodies of etcd's JSON gateway: one JSON value for a unary call, several one after
// another for a streaming call, as grpc-gateway reads them (Go's json.Decoder on the body).
// Translating each value to wire bytes is jsonToWire's, the project's one JSON codec.
import { GoJsonSyntaxError, parseGoJson } from "../go-json.js";

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

  /**
   * The end of the body: a value left incomplete is Go's "unexpected EOF", unless Go's decoder
   * would have refused a byte before the end (`{bad` is "invalid character 'b' ...").
   */
  end(): unknown[] {
    if (this.depth !== 0 || this.inString) {
      parseValue(this.text);
      throw new JsonBodyError("unexpected EOF");
    }
    const rest = this.text.trim();
    this.text = "";
    return rest.length === 0 ? [] : [parseValue(rest)];
  }
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/** One value as json.Decoder reads it (numbers keep their literal; Go's error messages). */
function parseValue(text: string): unknown {
  try {
    return parseGoJson(text, "decoder");
  } catch (err) {
    if (err instanceof GoJsonSyntaxError) throw new JsonBodyError(err.message);
    throw err;
  }
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
