import { readFileSync } from "node:fs";

/**
 * Whether a process with this pid exists (signal 0, POSIX kill(2)). EPERM means it exists but
 * belongs to another user, so it counts as alive. Used to judge the pid and lock files a home
 * keeps (`gateway.pid`, `agent.lock`, the agent's state file).
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * The start time of a process, from /proc/PID/stat (field 22, in clock ticks since boot): with the
 * pid it names one process for good, since a pid is reused only by a process that starts later.
 * Null where /proc is not there (macOS): then the pid alone is judged.
 */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}
