import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { runExecRequest, runningCommands, stopRunningCommands } from "../src/node/executor.js";
import type { ExecRequest } from "../src/protocol/messages.js";

function request(command: string, args: string[] = [], over: Partial<ExecRequest> = {}): ExecRequest {
  return { type: "exec", id: "exe_test", command, args, timeoutMs: 5000, maxOutputBytes: 1024, ...over };
}

const text = (base64: string) => Buffer.from(base64, "base64").toString("utf8");

describe("the node's executor", () => {
  it("refuses what the owner's allow-list does not name, running nothing", async () => {
    const result = await runExecRequest(request("sh", ["-c", "touch /tmp/should-not-exist"]), ["uname"]);
    expect(result).toMatchObject({ outcome: "refused", code: "command_not_allowed", exitCode: null });
    expect(result.message).toContain("exec.allow: uname");
  });

  it("answers the built-in status with an empty allow-list", async () => {
    const result = await runExecRequest(request("status"), []);
    expect(result.outcome).toBe("completed");
    expect(JSON.parse(text(result.stdout))).toMatchObject({
      platform: `${process.platform}-${process.arch}`,
    });
  });

  it("passes argv without a shell: metacharacters stay literal", async () => {
    const result = await runExecRequest(request("echo", ["$HOME", ";", "id", "`whoami`"]), ["echo"]);
    expect(result).toMatchObject({ outcome: "completed", exitCode: 0 });
    expect(text(result.stdout)).toBe("$HOME ; id `whoami`\n");
  });

  it("reports the command's exit code and both streams", async () => {
    const result = await runExecRequest(request("sh", ["-c", "echo out; echo err >&2; exit 7"]), ["sh"]);
    expect(result).toMatchObject({ outcome: "completed", exitCode: 7 });
    expect(text(result.stdout)).toBe("out\n");
    expect(text(result.stderr)).toBe("err\n");
  });

  it("kills a command at its timeout", async () => {
    const result = await runExecRequest(request("sleep", ["30"], { timeoutMs: 200 }), ["sleep"]);
    expect(result).toMatchObject({ outcome: "timeout", code: "exec_timeout", signal: "SIGKILL" });
  });

  it("stops a command at the output cap and keeps exactly the cap", async () => {
    const result = await runExecRequest(request("yes"), ["yes"]);
    expect(result).toMatchObject({ outcome: "truncated", code: "payload_too_large" });
    expect(Buffer.from(result.stdout, "base64").length).toBe(1024);
  });

  it("names a command that is allowed but not installed", async () => {
    const result = await runExecRequest(request("gatehouse-no-such-tool"), ["gatehouse-no-such-tool"]);
    expect(result).toMatchObject({ outcome: "failed", exitCode: 127 });
    expect(result.message).toContain("not found on this node");
  });

  it("answers, and ends the group, when the command leaves a process holding its output", async () => {
    const unique = `${90 + Math.floor(Math.random() * 9)}.${process.pid}`;
    const result = await runExecRequest(request("sh", ["-c", `sleep ${unique} & echo started`]), ["sh"]);
    expect(result).toMatchObject({ outcome: "completed", exitCode: 0 });
    expect(text(result.stdout)).toBe("started\n");
    expect(stillRunning(`sleep ${unique}`)).toEqual([]);
  });

  it("kills what a command started when it times out", async () => {
    const unique = `${90 + Math.floor(Math.random() * 9)}.${process.pid}1`;
    const result = await runExecRequest(
      request("sh", ["-c", `sleep ${unique} & sleep ${unique}`], { timeoutMs: 300 }),
      ["sh"],
    );
    expect(result.outcome).toBe("timeout");
    // Killed processes vanish once the kernel has run them; a loaded machine may take a moment,
    // a process that escaped the kill never does.
    const deadline = Date.now() + 10_000;
    while (stillRunning(`sleep ${unique}`).length > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stillRunning(`sleep ${unique}`)).toEqual([]);
  });
});

describe("stopping the node's running commands", () => {
  it("ends each command's process group: SIGTERM, then SIGKILL for what ignores it", async () => {
    const unique = `${80 + Math.floor(Math.random() * 9)}.${process.pid}2`;
    // A shell that ignores SIGTERM, with a child of its own: only the group's SIGKILL ends both.
    const pending = runExecRequest(
      request("sh", ["-c", `trap '' TERM; sleep ${unique} & wait`], { timeoutMs: 300_000 }),
      ["sh"],
    );
    const deadline = Date.now() + 10_000;
    while (stillRunning(`sleep ${unique}`).length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(runningCommands().map((c) => c.command)).toEqual(["sh"]);
    const ended = await stopRunningCommands(200);
    expect(ended.map((c) => c.command)).toEqual(["sh"]);
    const result = await pending;
    expect(result.signal).toBe("SIGKILL");
    expect(runningCommands()).toEqual([]);
    const gone = Date.now() + 10_000;
    while (stillRunning(`sleep ${unique}`).length > 0 && Date.now() < gone)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stillRunning(`sleep ${unique}`)).toEqual([]);
  });
});

function stillRunning(args: string): string[] {
  return execFileSync("ps", ["-eo", "stat,args"], { encoding: "utf8" })
    .split("\n")
    .filter((line) => line.endsWith(args) && !line.startsWith("Z"));
}
