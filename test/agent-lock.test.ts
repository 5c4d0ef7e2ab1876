import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { AGENT_LOCK_FILE, acquireAgentLock } from "../src/node/agent-lock.js";
import { processStartTime } from "../src/config/processes.js";
import { GatehouseError } from "../src/protocol/errors.js";

const homes: string[] = [];
function home(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gh-lock-"));
  homes.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of homes.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function writeLock(dir: string, holder: Record<string, unknown>): void {
  writeFileSync(path.join(dir, AGENT_LOCK_FILE), JSON.stringify(holder));
}

function refusal(dir: string): GatehouseError {
  try {
    acquireAgentLock(dir);
  } catch (error) {
    return error as GatehouseError;
  }
  throw new Error("the lock was taken");
}

describe("the one-agent-per-home lock", () => {
  it("refuses while the holder runs, naming its pid, and is free again once released", () => {
    const dir = home();
    const lock = acquireAgentLock(dir);
    const error = refusal(dir);
    expect(error.code).toBe("already_running");
    expect(error.message).toContain(`pid ${process.pid}`);
    lock.release();
    expect(existsSync(path.join(dir, AGENT_LOCK_FILE))).toBe(false);
    acquireAgentLock(dir).release();
  });

  it("takes a lock whose process is gone", async () => {
    const dir = home();
    const child = spawn("true");
    const pid = child.pid!;
    await new Promise((resolve) => child.on("exit", resolve));
    writeLock(dir, { pid, processStart: "1", startedAt: "2026-01-01T00:00:00.000Z" });
    const lock = acquireAgentLock(dir);
    expect(JSON.parse(readFileSync(lock.file, "utf8"))).toMatchObject({ pid: process.pid });
    lock.release();
  });

  it("takes a lock whose pid now belongs to another process (another start time)", () => {
    const dir = home();
    // The pid of a live process (this one's parent), but not the process that wrote the lock.
    writeLock(dir, { pid: process.ppid, processStart: "0", startedAt: "2026-01-01T00:00:00.000Z" });
    expect(processStartTime(process.ppid)).not.toBe("0");
    acquireAgentLock(dir).release();
  });

  it("refuses when the same process (pid and start time) holds it", () => {
    const dir = home();
    writeLock(dir, {
      pid: process.ppid,
      processStart: processStartTime(process.ppid),
      startedAt: "2026-01-01T00:00:00.000Z",
    });
    expect(refusal(dir).message).toContain(`pid ${process.ppid}, started 2026-01-01T00:00:00.000Z`);
  });

  it("takes a lock file that holds no holder (a torn or foreign file)", () => {
    const dir = home();
    writeFileSync(path.join(dir, AGENT_LOCK_FILE), "");
    acquireAgentLock(dir).release();
  });
});
