import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import type { ExecRequest, ExecResult } from "../protocol/messages.js";
import { GATEHOUSE_VERSION } from "../protocol/version.js";
import { setLongTimeout } from "../protocol/long-timer.js";

/** Always allowed: what the node is, without running anything. */
export const BUILTIN_STATUS = "status";

/** Whether `command` is answered by the built-in status (no process), not by a program of that name. */
export function isBuiltinStatus(command: string, allow: readonly string[]): boolean {
  return command === BUILTIN_STATUS && !allow.includes(BUILTIN_STATUS);
}

/** How long the status document is reused: its figures are whole seconds and a load average. */
const STATUS_TTL_MS = 1000;
let statusCache: { at: number; stdout: string } | undefined;

/**
 * The built-in status's output (base64 of one JSON line): host name, platform, version, uptime in
 * seconds, load average. Built at most once a second — monitoring may ask many times a second,
 * and each build costs three system calls and an encoding.
 */
function statusOutput(): string {
  const at = performance.now();
  if (statusCache && at - statusCache.at < STATUS_TTL_MS) return statusCache.stdout;
  const status = {
    hostname: os.hostname(),
    platform: `${process.platform}-${process.arch}`,
    version: GATEHOUSE_VERSION,
    uptimeSeconds: Math.round(os.uptime()),
    loadAverage: os.loadavg(),
  };
  statusCache = { at, stdout: Buffer.from(JSON.stringify(status) + "\n").toString("base64") };
  return statusCache.stdout;
}

const MAX_CONCURRENT = 8;
/** After the command exits, how long its output may still arrive from what it left behind. */
const EXIT_GRACE_MS = 500;
let running = 0;
/** The commands that run now, each the leader of its own process group (spawned detached). */
const children = new Set<ChildProcess>();

/** A running command as the agent reports it when it stops: its name and its process group. */
export interface RunningCommand {
  command: string;
  pid: number;
}

/** The commands running now (for the agent's stop message). */
export function runningCommands(): RunningCommand[] {
  return [...children].flatMap((child) =>
    child.pid === undefined ? [] : [{ command: child.spawnfile, pid: child.pid }],
  );
}

/** Sends a signal to a command's whole process group (what it started too); false if it is gone. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): boolean {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
  try {
    process.kill(-child.pid, signal);
    return true;
  } catch {
    return child.kill(signal); // the group is gone already; make sure the child is
  }
}

/**
 * Ends every running command when the agent stops: SIGTERM to each command's process group, then
 * SIGKILL to the groups still there after `graceMs` ms. Resolves (with the commands it ended) once
 * every command has exited, so that nothing the node ran outlives it.
 */
export async function stopRunningCommands(graceMs: number): Promise<RunningCommand[]> {
  const stopping = [...children];
  const ended = runningCommands();
  if (stopping.length === 0) return ended;
  const exited = stopping.map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once("exit", () => resolve());
      }),
  );
  for (const child of stopping) signalGroup(child, "SIGTERM");
  const grace = setLongTimeout(() => {
    for (const child of stopping) signalGroup(child, "SIGKILL");
  }, graceMs);
  await Promise.all(exited);
  grace.cancel();
  // The leader exited; what it left behind in its group goes too.
  for (const child of stopping) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      // nothing left in the group
    }
  }
  return ended;
}

/** Ends every running command's process group at once (a second Ctrl-C: no grace). */
export function killRunningCommands(): void {
  for (const child of children) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }
}

function result(request: ExecRequest, fields: Omit<ExecResult, "type" | "id">): ExecResult {
  return { type: "exec_result", id: request.id, ...fields };
}

/**
 * Runs a command for an operator, on this node's terms: only names in the owner's `exec.allow`
 * (plus the built-in `status`), never through a shell (argv as given), with a timeout and an
 * output cap; the process is killed when either is hit.
 */
export async function runExecRequest(request: ExecRequest, allow: readonly string[]): Promise<ExecResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  if (isBuiltinStatus(request.command, allow)) {
    return result(request, {
      outcome: "completed",
      exitCode: 0,
      signal: null,
      stdout: statusOutput(),
      stderr: "",
      durationMs: elapsed(),
    });
  }
  const refuse = (code: string, message: string) =>
    result(request, {
      outcome: "refused",
      exitCode: null,
      signal: null,
      stdout: "",
      stderr: "",
      durationMs: elapsed(),
      code,
      message,
    });
  if (!allow.includes(request.command))
    return refuse(
      "command_not_allowed",
      `this node does not allow ${JSON.stringify(request.command)} (exec.allow: ${allow.length ? allow.join(", ") : "nothing"})`,
    );
  if (running >= MAX_CONCURRENT)
    return refuse("rate_limited", `this node already runs ${MAX_CONCURRENT} commands`);
  running += 1;
  try {
    return await spawnCapped(request, elapsed);
  } finally {
    running -= 1;
  }
}

function spawnCapped(request: ExecRequest, elapsed: () => number): Promise<ExecResult> {
  return new Promise((resolve) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let bytes = 0;
    let outcome: ExecResult["outcome"] = "completed";
    // Its own process group, so that a timeout or the cap kills what it started too.
    const child = spawn(request.command, request.args, {
      shell: false,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.add(child);
    child.once("exit", () => children.delete(child));
    child.once("error", () => children.delete(child));
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL"); // the group is gone already; make sure the child is
      }
    };
    const kill = (why: ExecResult["outcome"]) => {
      if (outcome === "completed") outcome = why;
      killGroup();
    };
    // A process the command left behind may hold its pipes open: once the command has exited,
    // give its output a moment, then end what is left of its group and answer.
    child.on("exit", () => {
      setTimeout(() => {
        if (child.stdout.readableEnded && child.stderr.readableEnded) return;
        killGroup();
        child.stdout.destroy();
        child.stderr.destroy();
      }, EXIT_GRACE_MS).unref();
    });
    // The timeout comes from the gateway's request: a long timer, whatever its size.
    const timer = setLongTimeout(() => kill("timeout"), request.timeoutMs);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      const room = request.maxOutputBytes - bytes;
      if (room > 0) into.push(chunk.subarray(0, room));
      bytes += chunk.length;
      if (bytes > request.maxOutputBytes) kill("truncated");
    };
    child.stdout.on("data", collect(stdout));
    child.stderr.on("data", collect(stderr));
    child.on("error", (error: NodeJS.ErrnoException) => {
      timer.cancel();
      resolve(
        result(request, {
          outcome: "failed",
          exitCode: error.code === "ENOENT" ? 127 : null,
          signal: null,
          stdout: "",
          stderr: "",
          durationMs: elapsed(),
          code: "invalid_request",
          message: error.code === "ENOENT" ? `${request.command}: not found on this node` : error.message,
        }),
      );
    });
    child.on("close", (exitCode, signal) => {
      timer.cancel();
      const codes = { timeout: "exec_timeout", truncated: "payload_too_large" } as Record<string, string>;
      const code = codes[outcome];
      resolve(
        result(request, {
          outcome,
          exitCode,
          signal,
          stdout: Buffer.concat(stdout).toString("base64"),
          stderr: Buffer.concat(stderr).toString("base64"),
          durationMs: elapsed(),
          ...(code ? { code } : {}),
          ...(outcome === "timeout" ? { message: `killed after ${request.timeoutMs} ms` } : {}),
          ...(outcome === "truncated"
            ? { message: `output passed ${request.maxOutputBytes} bytes; the command was stopped` }
            : {}),
        }),
      );
    });
  });
}
