/**
 * Text from nodes and registrations, made safe to show. Both ends use this one definition: the
 * gateway when it repeats a node's words in an error description (which API clients and pages
 * show), the CLI for everything it prints.
 *
 * Unsafe are the characters a terminal (or a page) may act on rather than show: C0 and C1
 * controls (ESC starts the escape sequences that recolour, move the cursor, set the title or write
 * to the clipboard), DEL, format characters (bidi overrides U+202A–U+202E and isolates
 * U+2066–U+2069, zero-width characters), line and paragraph separators, and lone surrogates.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const UNSAFE_BUT_LINES = /(?![\n\t])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

function escapeChar(char: string): string {
  const code = char.codePointAt(0)!;
  if (code < 0x100) return `\\x${code.toString(16).padStart(2, "0")}`;
  return code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Text with every unsafe character shown as a visible escape such as `\x1b` or `\u202e`, so the
 * reader sees that something was there and nothing acts on the terminal. `multiline` keeps
 * newlines and tabs; without it a value stays on one line (a table cell, a name).
 */
export function escapeUnsafe(text: string, options: { multiline?: boolean } = {}): string {
  return text.replace(options.multiline ? UNSAFE_BUT_LINES : UNSAFE, escapeChar);
}

/**
 * JSON.stringify, with what it leaves raw (C1 controls, format characters such as bidi
 * overrides, U+2028/U+2029, lone surrogates) written as `\uXXXX` escapes too: the parsed value is
 * the same, but the text shows nothing a terminal would act on (RFC 8259 §7 allows any escape).
 */
export function safeJson(value: unknown, indent?: number): string {
  // Raw newlines in the output are the indentation's own (strings hold theirs as \n), so they stay.
  return JSON.stringify(value, null, indent).replace(UNSAFE_BUT_LINES, (char) =>
    // Per UTF-16 unit: an astral format character becomes a valid surrogate-pair escape.
    char.replace(/[\s\S]/g, (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`),
  );
}
