/**
 * Compares two strings by Unicode code point (the spec's "ordinal" order). JS's `<` compares
 * UTF-16 code units, which puts astral characters (surrogates, 0xD800-0xDFFF) before
 * U+E000-U+FFFF; this fixes that up at the first differing unit.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Length in code points, as VARCHAR(n) counts it; fast path for strings that can't exceed n. */
export function exceedsCodePoints(s: string, max: number): boolean {
  if (s.length <= max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return true;
  return false;
}

/** Quotes a field for CSV output when it needs it (RFC 4180). */
export function csvField(s: string): string {
  return /[",\r\n]/.test(s) || s !== s.trim() ? '"' + s.replace(/"/g, '""') + '"' : s;
}
