// JSON read as etcd 3.4's gateway reads it: Go's encoding/json (json.Decoder on the body, then
// golang/protobuf's jsonpb per field), so a malformed body is refused with the message etcd
// gives. Numbers keep their literal text (JsonNumber): Go decides per target type whether a
// literal fits (strconv on the text: "1e3" is no int64, 2^63 overflows), and a 64-bit lease ID
// written as a number must not be rounded through a double. Our own because JSON.parse's errors
// and number handling differ from Go's; nothing on npm reproduces encoding/json's messages.

/** A JSON number as written. */
export class JsonNumber {
  constructor(readonly literal: string) {}
}

/** A body that is not JSON: the message is encoding/json's for it. */
export class GoJsonSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GoJsonSyntaxError";
  }
}

/** How the text ends: json.Decoder says "unexpected EOF", json.Unmarshal another message. */
export type GoJsonMode = "decoder" | "unmarshal";

/**
 * The first JSON value of `text` (leading whitespace allowed), as Go reads it: objects (the
 * last of duplicate keys wins, as in a Go map), arrays, strings, JsonNumbers, booleans, null.
 * "unmarshal" mode refuses anything but whitespace after the value ("after top-level value"),
 * as json.Unmarshal does; "decoder" mode leaves it (json.Decoder reads one value at a time).
 */
export function parseGoJson(text: string, mode: GoJsonMode): unknown {
  const p = new Parser(Buffer.from(text, "utf8"), mode);
  p.skipSpace();
  const value = p.value();
  if (mode === "unmarshal") {
    p.skipSpace();
    if (p.pos < p.bytes.length) p.fail("after top-level value");
  }
  return value;
}

/** The Go value names encoding/json's UnmarshalTypeError uses for a JSON value. */
export function goValueName(value: unknown): string {
  if (value instanceof JsonNumber || typeof value === "number") return "number";
  if (typeof value === "string") return "string";
  if (typeof value === "boolean") return "bool";
  if (Array.isArray(value)) return "array";
  return "object";
}

/** encoding/json's UnmarshalTypeError message (a value unmarshalled on its own, not a struct field). */
export function goTypeError(valueName: string, goType: string): string {
  return `json: cannot unmarshal ${valueName} into Go value of type ${goType}`;
}

const SPACE = new Set([0x20, 0x09, 0x0a, 0x0d]);
/** The bytes a backslash may escape besides u: b f n r t, backslash, slash, quote. */
const ESCAPES = new Set([0x62, 0x66, 0x6e, 0x72, 0x74, 0x5c, 0x2f, 0x22]);
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

class Parser {
  pos = 0;

  constructor(
    readonly bytes: Buffer,
    private readonly mode: GoJsonMode,
  ) {}

  skipSpace(): void {
    while (this.pos < this.bytes.length && SPACE.has(this.bytes[this.pos]!)) this.pos++;
  }

  /** The byte at pos, or the end-of-input error. */
  private peek(): number {
    if (this.pos >= this.bytes.length) {
      throw new GoJsonSyntaxError(
        this.mode === "decoder" ? "unexpected EOF" : "unexpected end of JSON input",
      );
    }
    return this.bytes[this.pos]!;
  }

  fail(context: string): never {
    throw new GoJsonSyntaxError(`invalid character ${quoteChar(this.bytes[this.pos]!)} ${context}`);
  }

  value(): unknown {
    const c = this.peek();
    if (c === 0x7b) return this.object();
    if (c === 0x5b) return this.array();
    if (c === 0x22) return this.string();
    if (c === 0x2d || isDigit(c)) return this.number();
    if (c === 0x74) return this.literal("true", true);
    if (c === 0x66) return this.literal("false", false);
    if (c === 0x6e) return this.literal("null", null);
    return this.fail("looking for beginning of value");
  }

  private object(): Record<string, unknown> {
    const out: Record<string, unknown> = Object.create(null);
    this.pos++;
    this.skipSpace();
    if (this.peek() === 0x7d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      if (this.peek() !== 0x22) this.fail("looking for beginning of object key string");
      const key = this.string();
      this.skipSpace();
      if (this.peek() !== 0x3a) this.fail("after object key");
      this.pos++;
      this.skipSpace();
      out[key] = this.value();
      this.skipSpace();
      const next = this.peek();
      this.pos++;
      if (next === 0x7d) return out;
      if (next !== 0x2c) {
        this.pos--;
        this.fail("after object key:value pair");
      }
    }
  }

  private array(): unknown[] {
    const out: unknown[] = [];
    this.pos++;
    this.skipSpace();
    if (this.peek() === 0x5d) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipSpace();
      out.push(this.value());
      this.skipSpace();
      const next = this.peek();
      this.pos++;
      if (next === 0x5d) return out;
      if (next !== 0x2c) {
        this.pos--;
        this.fail("after array element");
      }
    }
  }

  private string(): string {
    const start = this.pos;
    this.pos++;
    let escapes = false;
    for (;;) {
      const c = this.peek();
      if (c === 0x22) break;
      if (c < 0x20) this.fail("in string literal");
      this.pos++;
      if (c !== 0x5c) continue;
      escapes = true;
      const e = this.peek();
      if (e === 0x75) {
        this.pos++;
        for (let i = 0; i < 4; i++) {
          if (!isHex(this.peek())) this.fail("in \\u hexadecimal character escape");
          this.pos++;
        }
      } else if (ESCAPES.has(e)) {
        this.pos++;
      } else {
        this.fail("in string escape code");
      }
    }
    this.pos++;
    if (!escapes) return this.bytes.toString("utf8", start + 1, this.pos - 1);
    // Valid JSON by now: JSON.parse decodes its escapes (a lone surrogate becomes U+FFFD in
    // Go; JS keeps it: no etcd field cares).
    return JSON.parse(this.bytes.toString("utf8", start, this.pos)) as string;
  }

  private number(): JsonNumber {
    const start = this.pos;
    if (this.peek() === 0x2d) {
      this.pos++;
      if (!isDigit(this.peek())) this.fail("in numeric literal");
    }
    // A leading 0 stands alone ("01" ends the number at 1: Go's "after top-level value" and kin).
    if (this.peek() === 0x30) this.pos++;
    else this.digits();
    if (this.more() === 0x2e) {
      this.pos++;
      if (!isDigit(this.peek())) this.fail("after decimal point in numeric literal");
      this.digits();
    }
    const e = this.more();
    if (e === 0x65 || e === 0x45) {
      this.pos++;
      const sign = this.peek();
      if (sign === 0x2b || sign === 0x2d) this.pos++;
      if (!isDigit(this.peek())) this.fail("in exponent of numeric literal");
      this.digits();
    }
    return new JsonNumber(this.bytes.toString("latin1", start, this.pos));
  }

  /** The byte at pos, or -1 at the end (a number may end the input). */
  private more(): number {
    return this.pos < this.bytes.length ? this.bytes[this.pos]! : -1;
  }

  private digits(): void {
    while (isDigit(this.more())) this.pos++;
  }

  private literal<T>(word: string, value: T): T {
    this.pos++;
    for (let i = 1; i < word.length; i++) {
      if (this.peek() !== word.charCodeAt(i)) this.fail(`in literal ${word} (expecting '${word[i]}')`);
      this.pos++;
    }
    return value;
  }
}

/** strconv.Quote's escapes for the bytes it writes as a letter. */
const QUOTE_ESCAPES: Record<number, string> = {
  7: "\\a",
  8: "\\b",
  12: "\\f",
  10: "\\n",
  13: "\\r",
  9: "\\t",
  11: "\\v",
  92: "\\\\",
};

/**
 * strconv.Quote (Go's %q) of a string of printable text: what grpc-go prints of a path or a
 * header. Control characters and the runes Go does not print are escaped as Go escapes them.
 */
export function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c === 0x22) out += '\\"';
    else if (QUOTE_ESCAPES[c] !== undefined) out += QUOTE_ESCAPES[c];
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if ((c >= 0x80 && c <= 0xa0) || c === 0xad) out += `\\u00${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/** encoding/json's quoteChar: a byte as Go's strconv.Quote prints its rune, in single quotes. */
export function quoteChar(c: number): string {
  if (c === 0x27) return "'\\''";
  if (c === 0x22) return "'\"'";
  const escaped = QUOTE_ESCAPES[c];
  if (escaped !== undefined) return `'${escaped}'`;
  if (c < 0x20 || c === 0x7f) return `'\\x${c.toString(16).padStart(2, "0")}'`;
  // Go converts the byte to the rune of the same number: U+0080-U+00A0 and U+00AD do not print.
  if ((c >= 0x80 && c <= 0xa0) || c === 0xad) return `'\\u00${c.toString(16).padStart(2, "0")}'`;
  return `'${String.fromCharCode(c)}'`;
}
