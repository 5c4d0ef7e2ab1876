import path from "node:path";
import { GatehouseError } from "../protocol/errors.js";
import { acquireHomeLock, holderRuns, type HomeLock, type HomeLockHolder } from "../config/home-lock.js";

/** The lock file in a node home: present while an agent runs there. */
export const AGENT_LOCK_FILE = "agent.lock";

/** Who holds a node home: what the lock file says. */
export type AgentLockHolder = HomeLockHolder;
export type AgentLock = HomeLock;
export { holderRuns };

/**
 * Takes the one-agent-per-home lock: `agent.lock` in the home (config/home-lock.ts: created
 * exclusively with this process's pid and start time; a lock left by a crash or kill -9 is
 * recognised as stale and taken over).
 *
 * @throws GatehouseError `already_running` naming the pid and start of the agent that holds it
 */
export function acquireAgentLock(home: string, now: () => Date = () => new Date()): AgentLock {
  return acquireHomeLock(
    path.join(home, AGENT_LOCK_FILE),
    {
      held: (holder) =>
        new GatehouseError(
          "already_running",
          `a node agent already runs on this home (pid ${holder.pid}, started ${holder.startedAt}); one agent per home`,
          `Stop it first (\`kill ${holder.pid}\`), or run this one with another --home.`,
        ),
      contended: (file) =>
        new GatehouseError(
          "already_running",
          `could not take ${file}: another node agent is starting on this home`,
          "Wait a moment and run `gatehouse node status`.",
        ),
    },
    now,
  );
}
