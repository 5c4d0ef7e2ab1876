import { z } from "zod";
import { GatehouseError } from "./errors.js";

/**
 * Names people give things (devices, enroll tokens, API keys), decided as a person reads them.
 *
 * One normalisation — Unicode NFC (UAX #15), then leading and trailing spaces dropped — and
 * one allow-list, so that what is stored is what an admin sees, and two names that look the same
 * are the same string:
 *   - letters (L), combining marks (M) and numbers (N), a space, and the punctuation in
 *     `NAME_PUNCTUATION`;
 *   - never a default-ignorable code point (invisible: U+3164 HANGUL FILLER is a "letter", U+200B
 *     ZERO WIDTH SPACE, variation selectors), a control or format character (terminal escapes,
 *     bidi overrides), a private-use, unassigned or surrogate code point, other white space, or
 *     U+FFFD (what a decoder puts where bytes were not UTF-8);
 *   - not empty, no two spaces in a row, no combining mark at the start, at most
 *     `MAX_MARKS_IN_A_ROW` marks on one letter, at most `max` characters (code points).
 */

/** The longest device name, in code points (after normalisation). */
export const DEVICE_NAME_MAX_LENGTH = 64;
/** The longest enroll-token name prefix, in code points. */
export const NAME_PREFIX_MAX_LENGTH = 32;
/** Punctuation a name may hold besides letters, marks, numbers and a single space. */
export const NAME_PUNCTUATION = "-_.:'()";
/** Scripts that stack marks use up to three or four; more is "Zalgo" text that overdraws a line. */
const MAX_MARKS_IN_A_ROW = 4;

const ALLOWED = /^[\p{L}\p{M}\p{N} \-_.:'()]$/u;
const CONTROL = /^[\p{Cc}\p{Cf}\u2028\u2029]$/u;
const INVISIBLE = /^\p{Default_Ignorable_Code_Point}$/u;
const MARK = /^\p{M}$/u;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

export interface NameRules {
  /** The field's name in the error description ("name", "namePrefix", …). */
  field?: string;
  /** Longest accepted, in code points; default `DEVICE_NAME_MAX_LENGTH`. */
  max?: number;
}

/** `U+3164` (and the character itself when it is visible, for the admin's sake). */
function describeCodePoint(char: string): string {
  const hex = "U+" + char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(char) && !INVISIBLE.test(char) ? `${hex} "${char}"` : hex;
}

/**
 * Checks a name against the rules above and returns its normal form.
 * @returns `{ name }` (NFC, trimmed) or `{ problem }`, a sentence naming what is wrong.
 */
export function checkName(input: unknown, rules: NameRules = {}): { name: string } | { problem: string } {
  const field = rules.field ?? "name";
  const max = rules.max ?? DEVICE_NAME_MAX_LENGTH;
  if (typeof input !== "string") return { problem: `${field} must be a string` };
  // A lone surrogate cannot be stored as UTF-8 (it would be written as U+FFFD or invalid bytes).
  if (LONE_SURROGATE.test(input)) {
    return { problem: `${field} contains a lone surrogate code point: it is not valid Unicode text` };
  }
  if (input.includes("\uFFFD")) {
    return {
      problem: `${field} contains U+FFFD, the replacement character: the text was not valid UTF-8`,
    };
  }
  // Spaces around a name are dropped; any other white space or control character is refused below.
  const name = input.normalize("NFC").replace(/^ +| +$/g, "");
  if (name.length === 0) {
    return { problem: input.length > 0 ? `${field} is only spaces` : `${field} is empty` };
  }
  const chars = [...name];
  if (chars.length > max) return { problem: `${field} is longer than ${max} characters` };
  let marks = 0;
  for (const [index, char] of chars.entries()) {
    if (CONTROL.test(char)) {
      // Terminal escapes, bidi overrides (which make the admin read another name than the one stored).
      return { problem: `${field} contains control characters (${describeCodePoint(char)})` };
    }
    if (INVISIBLE.test(char)) {
      return { problem: `${field} contains an invisible character (${describeCodePoint(char)})` };
    }
    if (!ALLOWED.test(char)) {
      return {
        problem:
          `${field} contains ${describeCodePoint(char)}: a name holds letters, digits, ` +
          `single spaces and ${NAME_PUNCTUATION.split("").join(" ")}`,
      };
    }
    marks = MARK.test(char) ? marks + 1 : 0;
    if (marks > 0 && index === 0) return { problem: `${field} starts with a combining mark` };
    if (marks > MAX_MARKS_IN_A_ROW) {
      return { problem: `${field} stacks more than ${MAX_MARKS_IN_A_ROW} combining marks on one letter` };
    }
  }
  if (name.includes("  ")) return { problem: `${field} has two spaces in a row` };
  return { name };
}

/**
 * The normal form of a name, or a refusal.
 * @throws GatehouseError `invalid_request` naming what is wrong.
 */
export function normaliseName(input: unknown, rules: NameRules = {}): string {
  const result = checkName(input, rules);
  if ("problem" in result) {
    throw new GatehouseError(
      "invalid_request",
      result.problem,
      `Use letters, digits, single spaces and - _ . : ' ( ), at most ${rules.max ?? DEVICE_NAME_MAX_LENGTH} characters.`,
    );
  }
  return result.name;
}

/**
 * A zod schema for a name field: validates with `checkName` and outputs the normal form, so a
 * parsed body already holds the name as it will be stored.
 */
export function nameSchema(rules: NameRules = {}) {
  return z.string().transform((value, ctx) => {
    const result = checkName(value, rules);
    if ("problem" in result) {
      ctx.addIssue({ code: "custom", message: result.problem });
      return z.NEVER;
    }
    return result.name;
  });
}

/** A device name: `nameSchema` with the device rules. */
export const deviceNameSchema = nameSchema({ field: "name", max: DEVICE_NAME_MAX_LENGTH });

/**
 * An enroll token's name prefix: the same characters as a name, at most 32; it may end with a
 * space or punctuation ("ci-") since a name follows it. Empty means none.
 */
export const namePrefixSchema = z.string().transform((value, ctx) => {
  if (value === "") return value;
  const result = checkName(value, { field: "namePrefix", max: NAME_PREFIX_MAX_LENGTH });
  if ("problem" in result) {
    ctx.addIssue({ code: "custom", message: result.problem });
    return z.NEVER;
  }
  // Keep the trailing space checkName dropped: "Lab " + "laptop" reads "Lab laptop".
  return value.endsWith(" ") ? result.name + " " : result.name;
});

/**
 * The name a device registered through an enroll token gets: the token's prefix, then the name
 * the node asked for (unless it already starts with the prefix), cut to the device maximum by
 * code points — never inside a surrogate pair — and checked again as a whole.
 * @throws GatehouseError `invalid_request` when the result is not a valid name.
 */
export function prefixedDeviceName(prefix: string | null | undefined, name: string): string {
  if (!prefix || name.startsWith(prefix)) return normaliseName(name);
  return normaliseName([...(prefix + name)].slice(0, DEVICE_NAME_MAX_LENGTH).join(""));
}

/**
 * The key under which names are compared when a person names a device ("Laptop", "laptop" and
 * "ｌａｐｔｏｐ" are the same to a reader): NFKC (compatibility forms folded), then lower case.
 */
export function nameKey(name: string): string {
  return name.normalize("NFKC").toLowerCase();
}
