import { describe, expect, it } from "vitest";
import { checkName, nameKey, normaliseName, prefixedDeviceName } from "../src/protocol/device-name.js";
import { enrollRequestSchema } from "../src/protocol/messages.js";
import { GatehouseError } from "../src/protocol/errors.js";

function problem(input: string): string | undefined {
  const result = checkName(input);
  return "problem" in result ? result.problem : undefined;
}

describe("names as a person reads them", () => {
  it.each([
    ["all spaces", "     ", /only spaces/],
    ["an empty name", "", /empty/],
    ["U+3164 HANGUL FILLER (a 'letter' that draws nothing)", "\u3164", /invisible character \(U\+3164\)/],
    ["U+3164 inside a name", "lap\u3164top", /invisible character \(U\+3164\)/],
    ["U+2800 BRAILLE PATTERN BLANK", "\u2800", /U\+2800/],
    ["a zero-width space", "lap\u200btop", /U\+200B/],
    ["a lone surrogate", "laptop\ud800", /lone surrogate/],
    ["U+FFFD, where a decoder met bytes that were not UTF-8", "lap\ufffdtop", /not valid UTF-8/],
    ["a terminal escape", "bad\u001b[2Jname", /control characters/],
    ["a bidi override", "laptop\u202egpj.exe", /control characters/],
    ["a no-break space", "lap\u00a0top", /U\+00A0/],
    ["a private-use character", "lap\ue000top", /U\+E000/],
    ["an unassigned code point", "lap\u{50000}top", /U\+50000/],
    ["two spaces in a row", "my  laptop", /two spaces/],
    ["a leading combining mark", "\u0301laptop", /starts with a combining mark/],
    ["stacked marks", "a\u0334\u0335\u0336\u0337\u0338", /combining marks/],
    ["65 characters", "x".repeat(65), /longer than 64/],
    ["a variation selector", "lap\ufe0ftop", /invisible/],
  ])("refuses %s", (_what, input, expected) => {
    expect(problem(input)).toMatch(expected);
  });

  it("stores one form: NFC, spaces around dropped; ordinary names of many scripts pass", () => {
    expect(normaliseName("Cafe\u0301")).toBe("Caf\u00e9");
    expect(normaliseName("  build box 2  ")).toBe("build box 2");
    for (const name of [
      "laptop",
      "ci-runner_1.local",
      "Jane's MacBook (work)",
      "Ноутбук",
      "家のサーバー",
      "नमस्ते",
    ])
      expect(normaliseName(name)).toBe(name);
    // 64 characters counted as a person counts them, not in UTF-16 units.
    expect([...normaliseName("\u{20000}".repeat(64))]).toHaveLength(64);
  });

  it("refuses with invalid_request and says what is wrong", () => {
    let error: unknown;
    try {
      normaliseName("\u2800");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(GatehouseError);
    expect((error as GatehouseError).code).toBe("invalid_request");
    expect((error as GatehouseError).message).toContain("U+2800");
  });

  it("applies the same rules to the enroll body, whose parsed name is the normal form", () => {
    const parsed = enrollRequestSchema.safeParse({ csr: "x", name: "  Cafe\u0301 " });
    expect(parsed.success && parsed.data.name).toBe("Caf\u00e9");
    const refused = enrollRequestSchema.safeParse({ csr: "x", name: "\u3164" });
    expect(refused.success).toBe(false);
  });

  it("joins an enroll token's prefix without splitting a character and checks the whole", () => {
    // U+20000, a CJK ideograph outside the BMP: two UTF-16 units, one character.
    const name = prefixedDeviceName("ci-", "\u{20000}".repeat(70));
    expect([...name]).toHaveLength(64);
    expect(name.startsWith("ci-")).toBe(true);
    expect(checkName(name)).toEqual({ name });
    expect(prefixedDeviceName("ci-", "ci-runner")).toBe("ci-runner");
  });

  it("compares names the way a reader does", () => {
    expect(nameKey("Laptop")).toBe(nameKey("laptop"));
    expect(nameKey("ｌａｐｔｏｐ")).toBe(nameKey("laptop"));
  });
});
