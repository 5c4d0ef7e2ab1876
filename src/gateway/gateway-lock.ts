import path from "node:path";
import { acquireHomeLock, type HomeLock } from "../config/home-lock.js";
import { GatehouseError } from "../protocol/errors.js";

/** The lock file in a gateway home: present while a gateway runs there. */
export const GATEWAY_LOCK_FILE = "gateway.lock";

/**
 * Takes the one-gateway-per-home lock: `gateway.lock` in the home (config/home-lock.ts: created
 * exclusively with this process's pid and start time; a lock left by a crash or kill -9 is stale
 * and taken over). Taken after the listen address is found free, so a second start on the same
 * address still says `address_in_use` naming this home's gateway.
 *
 * @throws GatehouseError `already_running` naming the pid and start of the gateway that holds it
 */
export function acquireGatewayLock(home: string, now: () => Date = () => new Date()): HomeLock {
  return acquireHomeLock(
    path.join(home, GATEWAY_LOCK_FILE),
    {
      held: (holder) =>
        new GatehouseError(
          "already_running",
          `this home's gateway already runs (pid ${holder.pid}, started ${holder.startedAt}): it serves on another address, or is still stopping; one gateway per home`,
          `If it is stopping, wait until it has exited; otherwise stop it first (\`kill ${holder.pid}\`, or Ctrl-C where it runs), then start this one.`,
        ),
      contended: (file) =>
        new GatehouseError(
          "already_running",
          `could not take ${file}: another gateway is starting on this home`,
          "Wait a moment and try again.",
        ),
    },
    now,
  );
}
