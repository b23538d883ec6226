/**
 * V8's JSON.parse can decode an escaped object key wrongly: once a key such as `"\\"` has been parsed,
 * a later key written `"\n"` (or `"\""`, `"\r"`, …) in an object of the same shape may come back as a
 * backslash (nodejs/node#63785, V8 bug 521080746; open at the time of writing, and present on every
 * Node 24 and 26 release). Keys without escapes are never affected. A ledger cannot store metadata whose
 * keys may change between the request and a later read, or whose hash may not recompute, so the API
 * refuses JSON bodies with an escaped object key (quotes, backslashes, control characters, any `\u`
 * escape) before they are parsed; nothing with such a key is ever stored, and every JSON the service
 * later parses back (event data, read models) is free of them.
 */

const QUOTE = 34;
const BACKSLASH = 92;
const COLON = 58;
const isJsonSpace = (code: number) => code === 32 || code === 9 || code === 10 || code === 13;

/** Whether the JSON text has an object key written with an escape sequence (exact for valid JSON). */
export function hasEscapedKey(text: string): boolean {
  if (!text.includes('\\')) return false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (text.charCodeAt(i) !== QUOTE) {
      i += 1;
      continue;
    }
    // A string token: outside strings, valid JSON has no quotes.
    let j = i + 1;
    let escaped = false;
    while (j < n) {
      const code = text.charCodeAt(j);
      if (code === BACKSLASH) {
        escaped = true;
        j += 2;
      } else if (code === QUOTE) {
        break;
      } else {
        j += 1;
      }
    }
    if (escaped) {
      let k = j + 1;
      while (k < n && isJsonSpace(text.charCodeAt(k))) k += 1;
      if (text.charCodeAt(k) === COLON) return true;
    }
    i = j + 1;
  }
  return false;
}
