import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import type { GatehouseError } from "../protocol/errors.js";
import { isProcessAlive, processStartTime } from "./processes.js";

/** Who holds a home's lock: what the lock file says. */
export interface HomeLockHolder {
  pid: number;
  /** The process's start time as the kernel counts it (/proc/PID/stat field 22), when known. */
  processStart: string | null;
  /** When the process took the lock (ISO 8601). */
  startedAt: string;
}

/** A held lock: `release()` removes the file if it is still this process's. */
export interface HomeLock {
  file: string;
  release(): void;
}

/** What to say when the lock cannot be taken. */
export interface HomeLockRefusals {
  /** A live process holds it. */
  held(holder: HomeLockHolder): GatehouseError;
  /** It changed hands under us three times: another process is starting on this home now. */
  contended(file: string): GatehouseError;
}

/** The holder a lock file names, or undefined when the file is unreadable or half written. */
function readHolder(file: string): HomeLockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as Partial<HomeLockHolder>;
    if (typeof parsed.pid !== "number" || typeof parsed.startedAt !== "string") return undefined;
    return { pid: parsed.pid, processStart: parsed.processStart ?? null, startedAt: parsed.startedAt };
  } catch {
    return undefined;
  }
}

/** True while the process a lock names still runs: the same pid and the same start time. */
export function holderRuns(holder: HomeLockHolder): boolean {
  if (!isProcessAlive(holder.pid)) return false;
  if (holder.processStart === null) return true;
  const now = processStartTime(holder.pid);
  return now === null || now === holder.processStart;
}

/**
 * Takes a one-process-per-home lock: `file`, created exclusively and holding this process's pid
 * and start time. A lock whose process is gone (a crash, kill -9) or whose pid now belongs to
 * another process is stale: it is removed and taken. So a crash cannot leave a home locked:
 * staleness is judged from the process table, not from the file.
 *
 * @throws GatehouseError from `refusals.held` (naming the holder) or `refusals.contended`
 */
export function acquireHomeLock(
  file: string,
  refusals: HomeLockRefusals,
  now: () => Date = () => new Date(),
): HomeLock {
  const mine: HomeLockHolder = {
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
      if (holder && holderRuns(holder)) throw refusals.held(holder);
      if (attempt >= 2) throw refusals.contended(file);
      // Stale (its process is gone, or the pid is another process now) or unreadable: remove it,
      // unless it changed under us (another start took it just now: the next look sees that one).
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
