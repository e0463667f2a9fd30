/**
 * A strict JSON parser for untrusted headers (safetensors): JSON.parse keeps the last of duplicate keys
 * silently and turns 1e2 into an integer, so headers get their own tokenizer. Objects become Maps (no
 * prototype keys); numbers keep their source text so integer fields can refuse fractions and exponents.
 * Every rejection is an AutoencoderKLError naming the source, the rule and the character position.
 */
import { AutoencoderKLError } from "../errors.js";

/** Names are attacker-controlled: keep messages short and printable. */
export function quoteName(name: string): string {
  const s = name.length > 120 ? `${name.slice(0, 120)}…` : name;
  return JSON.stringify(s);
}
const q = quoteName;

export class JsonNumber {
  constructor(
    readonly raw: string,
    readonly value: number,
  ) {}
}
export type Json = null | boolean | string | JsonNumber | Json[] | Map<string, Json>;

const MAX_JSON_DEPTH = 64;

class JsonParser {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly source: string,
    private readonly what: string,
  ) {}

  private fail(rule: string): never {
    throw new AutoencoderKLError(this.source, `${this.what} is not valid JSON: ${rule} at character ${this.pos}`);
  }

  private ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) p++;
      else break;
    }
    this.pos = p;
  }

  parseDocument(): Json {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.text.length) this.fail("trailing characters after the JSON value");
    return v;
  }

  private value(depth: number): Json {
    if (depth > MAX_JSON_DEPTH) this.fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    const c = this.text.charCodeAt(this.pos);
    if (c === 0x7b) return this.object(depth);
    if (c === 0x5b) return this.array(depth);
    if (c === 0x22) return this.string();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    if (this.text.startsWith("true", this.pos)) {
      this.pos += 4;
      return true;
    }
    if (this.text.startsWith("false", this.pos)) {
      this.pos += 5;
      return false;
    }
    if (this.text.startsWith("null", this.pos)) {
      this.pos += 4;
      return null;
    }
    return this.fail(this.pos >= this.text.length ? "unexpected end" : "unexpected character");
  }

  private object(depth: number): Map<string, Json> {
    const map = new Map<string, Json>();
    this.pos++; // {
    this.ws();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return map;
    }
    for (;;) {
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 0x22) this.fail("expected a string key");
      const keyPos = this.pos;
      const key = this.string();
      if (map.has(key)) {
        this.pos = keyPos;
        this.fail(`duplicate key ${q(key)}`);
      }
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail("expected ':'");
      this.pos++;
      this.ws();
      map.set(key, this.value(depth + 1));
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x2c) continue;
      if (c === 0x7d) return map;
      this.pos--;
      this.fail("expected ',' or '}'");
    }
  }

  private array(depth: number): Json[] {
    const arr: Json[] = [];
    this.pos++; // [
    this.ws();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return arr;
    }
    for (;;) {
      this.ws();
      arr.push(this.value(depth + 1));
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x2c) continue;
      if (c === 0x5d) return arr;
      this.pos--;
      this.fail("expected ',' or ']'");
    }
  }

  private string(): string {
    const t = this.text;
    let p = this.pos + 1;
    let out = "";
    let runStart = p;
    for (;;) {
      if (p >= t.length) {
        this.pos = p;
        this.fail("unterminated string");
      }
      const c = t.charCodeAt(p);
      if (c === 0x22) {
        out += t.slice(runStart, p);
        this.pos = p + 1;
        return out;
      }
      if (c < 0x20) {
        this.pos = p;
        this.fail("control character in string");
      }
      if (c === 0x5c) {
        out += t.slice(runStart, p);
        const e = t.charCodeAt(p + 1);
        p += 2;
        switch (e) {
          case 0x22:
            out += '"';
            break;
          case 0x5c:
            out += "\\";
            break;
          case 0x2f:
            out += "/";
            break;
          case 0x62:
            out += "\b";
            break;
          case 0x66:
            out += "\f";
            break;
          case 0x6e:
            out += "\n";
            break;
          case 0x72:
            out += "\r";
            break;
          case 0x74:
            out += "\t";
            break;
          case 0x75: {
            const u = this.hex4(p);
            p += 4;
            if (u >= 0xd800 && u <= 0xdbff) {
              // A high surrogate must be followed by an escaped low one (as serde_json requires).
              if (t.charCodeAt(p) !== 0x5c || t.charCodeAt(p + 1) !== 0x75) {
                this.pos = p;
                this.fail("lone surrogate in \\u escape");
              }
              const lo = this.hex4(p + 2);
              if (lo < 0xdc00 || lo > 0xdfff) {
                this.pos = p;
                this.fail("lone surrogate in \\u escape");
              }
              p += 6;
              out += String.fromCharCode(u, lo);
            } else if (u >= 0xdc00 && u <= 0xdfff) {
              this.pos = p;
              this.fail("lone surrogate in \\u escape");
            } else {
              out += String.fromCharCode(u);
            }
            break;
          }
          default:
            this.pos = p - 1;
            this.fail("invalid escape");
        }
        runStart = p;
        continue;
      }
      p++;
    }
  }

  private hex4(p: number): number {
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.text.charCodeAt(p + i);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else {
        this.pos = p + i;
        return this.fail("invalid \\u escape");
      }
      v = v * 16 + d;
    }
    return v;
  }

  private number(): JsonNumber {
    const t = this.text;
    const start = this.pos;
    let p = start;
    const digits = (): number => {
      const s = p;
      while (p < t.length && t.charCodeAt(p) >= 0x30 && t.charCodeAt(p) <= 0x39) p++;
      return p - s;
    };
    if (t.charCodeAt(p) === 0x2d) p++;
    if (t.charCodeAt(p) === 0x30) p++;
    else if (digits() === 0) {
      this.pos = p;
      this.fail("invalid number");
    }
    if (t.charCodeAt(p) === 0x2e) {
      p++;
      if (digits() === 0) {
        this.pos = p;
        this.fail("invalid number");
      }
    }
    if (t.charCodeAt(p) === 0x65 || t.charCodeAt(p) === 0x45) {
      p++;
      if (t.charCodeAt(p) === 0x2b || t.charCodeAt(p) === 0x2d) p++;
      if (digits() === 0) {
        this.pos = p;
        this.fail("invalid number");
      }
    }
    this.pos = p;
    const raw = t.slice(start, p);
    return new JsonNumber(raw, Number(raw));
  }
}

/**
 * Parses one JSON document (surrounding whitespace allowed). `what` names the text in messages
 * ("header" → "header is not valid JSON: duplicate key "a" at character 54").
 */
export function parseStrictJson(text: string, source: string, what = "JSON"): Json {
  return new JsonParser(text, source, what).parseDocument();
}
