import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { GatehouseError } from "../protocol/errors.js";
import { isProcessAlive, processStartTime } from "../config/processes.js";

/** The lock file in a node home: present while an agent runs there. */
export const AGENT_LOCK_FILE = "agent.lock";

/** Who holds a home: what the lock file says. */
export interface AgentLockHolder {
  pid: number;
  /** The process's start time as the kernel counts it (/proc/PID/stat field 22), when known. */
  processStart: string | null;
  /** When the agent took the lock (ISO 8601). */
  startedAt: string;
}

/** The holder a lock file names, or undefined when the file is unreadable or half written. */
function readHolder(file: string): AgentLockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<AgentLockHolder>;
    if (typeof parsed.pid !== "number" || typeof parsed.startedAt !== "string") return undefined;
    return { pid: parsed.pid, processStart: parsed.processStart ?? null, startedAt: parsed.startedAt };
  } catch {
    return undefined;
  }
}

/** True while the process a lock names still runs: the same pid and the same start time. */
export function holderRuns(holder: AgentLockHolder): boolean {
  if (!isProcessAlive(holder.pid)) return false;
  if (holder.processStart === null) return true;
  const now = processStartTime(holder.pid);
  return now === null || now === holder.processStart;
}

/** A held lock: `release()` removes the file if it is still this process's. */
export interface AgentLock {
  file: string;
  release(): void;
}

/**
 * Takes the one-agent-per-home lock: `agent.lock` in the home, created exclusively and holding
 * this process's pid and start time. A lock whose process is gone (a crash, kill -9) or whose pid
 * now belongs to another process is stale: it is removed and taken. So a crash (kill -9) cannot
 * leave a home locked: staleness is judged from the process table, not from the file.
 *
 * @throws GatehouseError `already_running` naming the pid and start of the agent that holds it
 */
export function acquireAgentLock(home: string, now: () => Date = () => new Date()): AgentLock {
  const file = path.join(home, AGENT_LOCK_FILE);
  const mine: AgentLockHolder = {
    pid: process.pid,
    processStart: processStartTime(process.pid),
    startedAt: now().toISOString(),
  };
  // The lock is written whole to a file of its own, then linked into place: link() fails if the
  // lock exists (as O_EXCL does), and a lock is never seen half written.
  const draft = `${file}.${process.pid}.tmp`;
  writeFileSync(draft, JSON.stringify(mine) + "\n", { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(draft, file);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const holder = readHolder(file);
      if (holder && holderRuns(holder)) {
        throw new GatehouseError(
          "already_running",
          `a node agent already runs on this home (pid ${holder.pid}, started ${holder.startedAt}); one agent per home`,
          `Stop it first (\`kill ${holder.pid}\`), or run this one with another --home.`,
        );
      }
      if (attempt >= 2)
        throw new GatehouseError(
          "already_running",
          `could not take ${file}: another node agent is starting on this home`,
          "Wait a moment and run `gatehouse node status`.",
        );
      // Stale (its process is gone, or the pid is another process now) or unreadable: remove it,
      // unless it changed under us (another start took it just now: the next look sees that agent).
      const seen = JSON.stringify(holder);
      if (JSON.stringify(readHolder(file)) === seen) {
        try {
          unlinkSync(file);
        } catch {
          // gone already
        }
      }
    }
  } finally {
    try {
      unlinkSync(draft);
    } catch {
      // gone already
    }
  }
  return {
    file,
    release() {
      const holder = existsSync(file) ? readHolder(file) : undefined;
      if (holder?.pid === process.pid && holder.startedAt === mine.startedAt) {
        try {
          unlinkSync(file);
        } catch {
          // gone already
        }
      }
    },
  };
}
