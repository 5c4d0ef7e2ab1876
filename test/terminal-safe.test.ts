/* eslint-disable no-control-regex -- these tests look for control characters on purpose */
import { describe, expect, it } from "vitest";
import { fields, table } from "../src/cli/output.js";
import { escapeUnsafe, safeJson } from "../src/protocol/safe-text.js";
import { MAX_NODE_TEXT_CHARS, judgeExecAnswer } from "../src/gateway/exec-answer.js";
import type { ExecResult } from "../src/protocol/messages.js";

const TERMINAL_CONTROLS =
  /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\u200b-\u200f\ufeff]/;
const HOSTILE = "a\x1b[31mb\x07c\u009b2Jd\u202ee\u2067f\u200bg\rh\u2028i\ud800j\u{e0041}k\x7fl";

describe("escapeUnsafe: what the CLI prints from nodes and registrations", () => {
  it("shows every control, format and separator character as a visible escape", () => {
    const safe = escapeUnsafe(HOSTILE);
    expect(safe).not.toMatch(TERMINAL_CONTROLS);
    expect(safe).toBe(
      "a\\x1b[31mb\\x07c\\x9b2Jd\\u202ee\\u2067f\\u200bg\\x0dh\\u2028i\\ud800j\\u{e0041}k\\x7fl",
    );
  });

  it("keeps a value on one line unless it is a block this CLI composed", () => {
    expect(escapeUnsafe("one\ntwo\tthree")).toBe("one\\x0atwo\\x09three");
    expect(escapeUnsafe("one\ntwo\tthree\x1b", { multiline: true })).toBe("one\ntwo\tthree\\x1b");
  });

  it("leaves ordinary text alone, accents and emoji included", () => {
    expect(escapeUnsafe("Zoë's laptop 🖥 — ok")).toBe("Zoë's laptop 🖥 — ok");
  });

  it("filters table cells and field values", () => {
    expect(table(["NAME"], [[HOSTILE]])).not.toMatch(TERMINAL_CONTROLS);
    expect(fields([["name", "x\ny"]])).toBe("name             x\\x0ay\n");
  });
});

describe("safeJson: --json output", () => {
  it("escapes what JSON.stringify leaves raw, and parses back to the same value", () => {
    const value = { name: HOSTILE, nested: [{ s: "\u0085\u202a" }] };
    const text = safeJson(value, 2);
    expect(text).not.toMatch(TERMINAL_CONTROLS);
    expect(JSON.parse(text)).toEqual(value);
    expect(JSON.parse(safeJson(value))).toEqual(value);
  });
});

describe("judgeExecAnswer: a node's answer is data", () => {
  const answer = (patch: Partial<ExecResult>): ExecResult => ({
    type: "exec_result",
    id: "exe_1",
    outcome: "completed",
    exitCode: 0,
    signal: null,
    stdout: "",
    stderr: "",
    durationMs: 1,
    ...patch,
  });

  it("maps every refusal to command_not_allowed whatever code the node names", () => {
    for (const code of ["device_revoked", "insufficient_scope", "internal_error", "nonsense", undefined]) {
      const verdict = judgeExecAnswer(answer({ outcome: "refused", exitCode: null, code, message: "no" }));
      expect(verdict.code).toBe("command_not_allowed");
      expect(verdict.error?.code).toBe("command_not_allowed");
    }
  });

  it("picks the code from the outcome only", () => {
    expect(judgeExecAnswer(answer({ outcome: "timeout", code: "device_revoked" })).code).toBe("exec_timeout");
    expect(judgeExecAnswer(answer({ outcome: "failed", code: "device_revoked" })).code).toBe(
      "invalid_request",
    );
    expect(judgeExecAnswer(answer({ outcome: "truncated", code: "device_revoked" }))).toEqual({
      code: "payload_too_large",
    });
    expect(judgeExecAnswer(answer({ code: "device_revoked" }))).toEqual({ code: null });
  });

  it("quotes the node's message, bounded, with its control characters escaped", () => {
    const verdict = judgeExecAnswer(answer({ outcome: "refused", message: "\x1b[2J" + "x".repeat(1000) }));
    const description = verdict.error!.message;
    expect(description).toContain('the node says "\\u001b[2J');
    expect(description).not.toMatch(TERMINAL_CONTROLS);
    expect(description.length).toBeLessThan(MAX_NODE_TEXT_CHARS + 100);
  });

  it("escapes C1 codes, bidi overrides and lone surrogates too, for API clients and pages", () => {
    // JSON.stringify alone leaves these raw in the error_description an API client shows.
    const verdict = judgeExecAnswer(answer({ outcome: "failed", message: HOSTILE }));
    const description = verdict.error!.message;
    expect(description).not.toMatch(TERMINAL_CONTROLS);
    expect(description).not.toMatch(/[\ud800-\udfff]/);
    expect(JSON.parse(description.slice(description.indexOf('"')))).toBe(HOSTILE);
  });
});
