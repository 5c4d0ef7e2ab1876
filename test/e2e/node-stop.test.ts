import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { registeredNode, spawnCli, type Running } from "./harness.js";
import { startAgentAllowing } from "./agents.js";
import { gatewayForFile } from "./file-gateway.js";

const gateway = gatewayForFile();

/** Pids of processes whose command line is exactly `sleep <seconds>`. */
function sleepers(seconds: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", `^sleep ${seconds.replace(/\./g, "\\.")}$`], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** A node that allows `sleep`, running, with a `nodes exec … sleep` in flight on it. */
async function nodeRunningASleep(name: string): Promise<{ node: Running; seconds: string; exec: Running }> {
  const { home } = await registeredNode(gateway, name);
  const node = await startAgentAllowing(home, ["sleep"]);
  // A unique argument, so that only this test's command is found: 300.<random> seconds.
  const seconds = `300.${randomInt(100_000, 999_999)}`;
  const exec = spawnCli([
    "nodes",
    "exec",
    name,
    "--home",
    gateway.home,
    "--timeout",
    "300000",
    "--",
    "sleep",
    seconds,
  ]);
  await node.waitFor(() => sleepers(seconds).length > 0, `sleep ${seconds} to run`);
  return { node, seconds, exec };
}

describe("stopping a node while a command runs", () => {
  it("Ctrl-C ends the running command's process group and the agent exits", async () => {
    const { node, seconds, exec } = await nodeRunningASleep("interrupted");
    node.child.kill("SIGINT");
    const exitCode = await Promise.race([
      node.exited,
      new Promise((resolve) => setTimeout(() => resolve("still running"), 30_000)),
    ]);
    expect(exitCode, node.stdout + node.stderr).toBe(0);
    expect(sleepers(seconds)).toEqual([]);
    const said = node.logLines().map((line) => String(line.msg));
    expect(said.some((msg) => /stopping 1 running command/.test(msg))).toBe(true);
    expect(said).toContain("node stopped: stopped by the operator");
    exec.child.kill("SIGKILL");
  });

  it("a second Ctrl-C does not leave the command behind", async () => {
    const { node, seconds, exec } = await nodeRunningASleep("impatient");
    node.child.kill("SIGINT");
    node.child.kill("SIGINT");
    await Promise.race([node.exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
    // Whatever the agent did with the second Ctrl-C, the command is gone (not orphaned).
    await node.waitFor(() => sleepers(seconds).length === 0, `sleep ${seconds} to end`, 10_000);
    expect(sleepers(seconds)).toEqual([]);
    exec.child.kill("SIGKILL");
  });
});
