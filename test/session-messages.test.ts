import { describe, expect, it } from "vitest";
import { nodeMessageSchema } from "../src/protocol/messages.js";
import { localExitStatus } from "../src/cli/devices-commands.js";

/** What a node may say on its session: text people will read is printable, numbers are sane. */

const hello = {
  type: "hello",
  version: "0.1.0",
  platform: "linux x64",
  hostname: "laptop",
  uptimeSeconds: 3600,
};
const result = {
  type: "exec_result",
  id: "x1",
  outcome: "completed",
  exitCode: 0,
  signal: null,
  stdout: "",
  stderr: "",
  durationMs: 12,
};

describe("the node session's messages", () => {
  it("take an ordinary hello and exec result", () => {
    expect(nodeMessageSchema.safeParse(hello).success).toBe(true);
    expect(nodeMessageSchema.safeParse(result).success).toBe(true);
    expect(nodeMessageSchema.safeParse({ ...hello, hostname: "Zoë's Mac — café" }).success).toBe(true);
  });

  it.each([
    ["a version padded with invisible HANGUL FILLERs", { ...hello, version: "1.0\u3164\u3164\u3164" }],
    ["a platform with a lone surrogate", { ...hello, platform: "linux\ud800" }],
    ["a hostname with 25 stacked combining marks", { ...hello, hostname: "h" + "\u0301".repeat(25) }],
    ["a platform with a private-use character", { ...hello, platform: "linux\ue000" }],
    ["a version holding U+FFFD", { ...hello, version: "1.\ufffd" }],
    ["a negative uptime", { ...hello, uptimeSeconds: -1e308 }],
    ["an infinite uptime", { ...hello, uptimeSeconds: Infinity }],
  ])("refuse a hello with %s", (_what, message) => {
    expect(nodeMessageSchema.safeParse(message).success).toBe(false);
  });

  it.each([
    ["a negative duration", { ...result, durationMs: -1e308 }],
    ["a duration of a year", { ...result, durationMs: 3.2e10 }],
    ["a signal holding an escape sequence", { ...result, signal: "\u001b]0;PWNED\u0007" }],
    ["a fractional exit code", { ...result, exitCode: 0.5 }],
  ])("refuse an exec result with %s", (_what, message) => {
    expect(nodeMessageSchema.safeParse(message).success).toBe(false);
  });
});

describe("nodes exec's own exit status", () => {
  it("is the remote exit code when a process can exit with it, else 1", () => {
    expect(localExitStatus(0)).toBe(0);
    expect(localExitStatus(3)).toBe(3);
    expect(localExitStatus(255)).toBe(255);
    // A process status keeps the low 8 bits: 256 would exit 0 and read as success.
    expect(localExitStatus(256)).toBe(1);
    expect(localExitStatus(-1)).toBe(1);
    expect(localExitStatus(3221225477)).toBe(1);
    expect(localExitStatus(null)).toBe(1);
  });
});
