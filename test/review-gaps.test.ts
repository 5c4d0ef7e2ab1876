import { afterEach, describe, expect, it, vi } from "vitest";
import { lifetimeProblem, SHORT_LIFETIMES_VARIABLE } from "../src/config/duration.js";
import { localFailure, printError } from "../src/cli/output.js";
import { GatehouseError } from "../src/protocol/errors.js";

describe("lifetimeProblem: the one rule for a lifetime in config, API body and flag", () => {
  afterEach(() => vi.unstubAllEnvs());

  it("refuses under a minute, quoting the value; accepts a minute and more", () => {
    vi.stubEnv(SHORT_LIFETIMES_VARIABLE, "");
    expect(lifetimeProblem("5s")).toBe('"5s" is too short: a lifetime must be at least 1m');
    expect(lifetimeProblem("0s")).toContain("too short");
    expect(lifetimeProblem("1m")).toBeUndefined();
    expect(lifetimeProblem("90d")).toBeUndefined();
    expect(lifetimeProblem("soon")).toContain("is not a duration");
  });

  it("takes 0 as 'at once' only where allowed (a rotation's grace), and applies a maximum", () => {
    vi.stubEnv(SHORT_LIFETIMES_VARIABLE, "");
    expect(lifetimeProblem("0s", { allowZero: true })).toBeUndefined();
    expect(lifetimeProblem("5s", { allowZero: true })).toContain("or 0 for at once");
    expect(lifetimeProblem("31d", { maxMs: 30 * 86_400_000 })).toBe('"31d" is too long: at most 30d');
  });
});

describe("an internal_error's hint says where it happened", () => {
  it("a local exception is named as a bug in the CLI, with the command", () => {
    const error = localFailure(new TypeError("x is undefined"), "gatehouse devices list");
    expect(error.code).toBe("internal_error");
    expect(error.message).toBe("x is undefined");
    expect(error.hint).toContain("`gatehouse devices list`");
    expect(error.hint).not.toContain("gateway's log");
  });

  it("printError gives a local exception the local hint, and keeps the gateway's own", () => {
    const lines: string[] = [];
    const write = vi
      .spyOn(process.stdout, "write")
      .mockImplementation((chunk: string | Uint8Array) => lines.push(String(chunk)) > 0);
    try {
      printError(new Error("boom"), true, "gatehouse keys list");
      printError(GatehouseError.fromBody({ error: "internal_error", error_description: "db" }), true);
    } finally {
      write.mockRestore();
    }
    const [local, remote] = lines.map((line) => JSON.parse(line) as { hint: string });
    expect(local?.hint).toContain("gatehouse keys list");
    expect(local?.hint).not.toContain("gateway's log");
    expect(remote?.hint).toContain("gateway's log");
  });
});
