import { describe, expect, it } from "vitest";
import { chooseLogFormat, formatLogLine } from "../src/cli/logger.js";

describe("readable log lines", () => {
  const time = new Date(2026, 10, 29, 19, 53, 12, 345).getTime();

  it("shows local time, level, message and fields, without the base fields", () => {
    const line = JSON.stringify({
      level: 30,
      time,
      pid: 1,
      hostname: "h",
      gatewayId: "gw_x",
      url: "https://127.0.0.1:1",
      msg: "gateway listening",
    });
    expect(formatLogLine(line, new Set(["gatewayId"]))).toBe(
      "2026-11-29 19:53:12.345 INFO  gateway listening url=https://127.0.0.1:1\n",
    );
  });

  it("escapes what a node sent: nothing in a line acts on the terminal", () => {
    const line = JSON.stringify({
      level: 40,
      time,
      msg: "refused to run \x1b]0;owned\x07ls",
      reason: "a\u202eb",
      nested: { name: "\x1b[2J" },
      err: { type: "Error", message: "x", stack: "Error: \x1b[31mred\n    at here" },
    });
    const text = formatLogLine(line, new Set(), false);
    for (const raw of ["\x1b", "\x07", "\u202e"]) expect(text).not.toContain(raw);
    expect(text).toContain("refused to run \\x1b]0;owned\\x07ls");
    expect(text).toContain("reason=");
    expect(text).toContain("\\u202e");
    expect(text).toContain("    Error: \\x1b[31mred\n        at here");
  });

  it("colours only the level, with codes of its own", () => {
    const text = formatLogLine(JSON.stringify({ level: 50, time, msg: "x" }), new Set(), true);
    expect(text).toContain("\x1b[31mERROR\x1b[0m x");
  });

  it("JSON unless standard output is a terminal, or as the flag says", () => {
    expect(chooseLogFormat(undefined, { isTTY: true })).toBe("pretty");
    expect(chooseLogFormat(undefined, { isTTY: false })).toBe("json");
    expect(chooseLogFormat("json", { isTTY: true })).toBe("json");
    expect(chooseLogFormat("pretty", {})).toBe("pretty");
    expect(() => chooseLogFormat("yaml", {})).toThrow(/neither json nor pretty/);
  });
});
